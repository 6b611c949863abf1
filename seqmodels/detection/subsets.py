"""Which annotated videos a detector trains on and which it is scored on, as the datasets name them.

- ActivityNet 1.3 names training / validation / testing (testing without ground truth): train on training, score
  validation.
- THUMOS14 (ActionFormer's thumos14.json, or the original per-class text files) names validation and test only:
  the convention every paper follows is to train on validation and score test. Such a file is *THUMOS-shaped*,
  and its results are reported at THUMOS's tIoUs (0.3:0.1:0.7) instead of ActivityNet's (0.5:0.05:0.95).
- A file that names no pair: a seeded random share of its non-test videos is held out for scoring. Videos of a
  test subset never reach training unless the user names that subset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featx.errors import FeatxError
from seqmodels.detection.annotations import SUBSETS, Annotations
from seqmodels.detection.map import ACTIVITYNET_TIOU, THUMOS_TIOU

TRAINING, VALIDATION, TESTING = "training", "validation", "testing"


@dataclass(frozen=True)
class Split:
    train: list[str]  # video ids
    eval: list[str]
    train_subset: str | None  # the subset names used (None: a random share of the videos)
    eval_subset: str | None

    def describe(self) -> str:
        """'trained on validation (200 videos), scored on testing (213 videos)'."""
        held = (f"{len(self.eval)} held-out videos (a random --val-fraction share)" if self.eval_subset is None
                else f"{self.eval_subset} ({len(self.eval)} videos)")
        return f"trained on {self.train_subset or 'the annotated videos'} ({len(self.train)} videos), scored on {held}"


def subset_name(name: str | None, option: str = "--subset") -> str | None:
    """A user's subset name in any case ('Test', 'val', 'VALIDATION') as the loader normalises subsets."""
    if name is None:
        return None
    key = name.strip().lower()
    if key not in SUBSETS:
        raise FeatxError(f"{option} must be training, validation or testing (any case), not {name!r}")
    return SUBSETS[key]


def thumos_shaped(annotations: Annotations) -> bool:
    """The file names validation and test subsets and no training one (THUMOS14's layout)."""
    named = {v.subset for v in annotations.videos.values()}
    return {VALIDATION, TESTING} <= named and TRAINING not in named


def default_tiou(annotations: Annotations) -> tuple[float, ...]:
    return THUMOS_TIOU if thumos_shaped(annotations) else ACTIVITYNET_TIOU


def named_pair(annotations: Annotations, ids=None) -> tuple[str, str] | None:
    """The (train, evaluation) subsets the file's own names imply for these videos (all when None), or None."""
    named = {annotations.videos[v].subset for v in (annotations.videos if ids is None else ids)}
    if {TRAINING, VALIDATION} <= named:
        return TRAINING, VALIDATION
    if thumos_shaped(annotations) and {VALIDATION, TESTING} <= named:
        return VALIDATION, TESTING
    return None


def choose_split(annotations: Annotations, ids: list[str], train_subset: str | None, eval_subset: str | None,
                 val_fraction: float, seed: int) -> Split:
    """The videos of `ids` (annotated and in the store) to train on and to score, by the subsets named (any
    case) or the file's own (module docstring)."""
    train_subset = subset_name(train_subset, "--train-subset")
    eval_subset = subset_name(eval_subset, "--eval-subset")
    if train_subset is None and eval_subset is None:
        train_subset, eval_subset = named_pair(annotations, ids) or (None, None)
    if train_subset is not None and eval_subset is not None:
        if train_subset == eval_subset:
            raise FeatxError(f"--train-subset and --eval-subset are both {train_subset}: a run is never scored on "
                             "the videos it trained on")
        return Split(_of(annotations, ids, train_subset), _of(annotations, ids, eval_subset), train_subset, eval_subset)
    # one side named, or nothing: a random share of the named (or of every non-test) subset is scored
    pool = (_of(annotations, ids, train_subset) if train_subset is not None
            else [v for v in ids if annotations.videos[v].subset not in {TESTING, eval_subset} - {None}])
    if eval_subset is not None:
        return Split(pool, _of(annotations, ids, eval_subset), None, eval_subset)
    order = np.random.default_rng(seed).permutation(len(pool))
    n_val = max(1, round(len(pool) * val_fraction)) if len(pool) > 1 else 0
    held = set(order[:n_val].tolist())
    return Split([v for i, v in enumerate(pool) if i not in held], [v for i, v in enumerate(pool) if i in held],
                 train_subset, None)


def _of(annotations: Annotations, ids: list[str], subset: str) -> list[str]:
    return [v for v in ids if annotations.videos[v].subset == subset]


def export_splits(annotations: Annotations, train_subset: str | None, eval_subset: str | None) -> tuple[str, str]:
    """The subsets a tool trains and evaluates on (`featx export --for`): as named, else the file's own pair."""
    pair = named_pair(annotations) or (None, None)
    train = subset_name(train_subset, "--train-subset") or pair[0]
    held = subset_name(eval_subset, "--eval-subset") or pair[1]
    if train is None or held is None:
        raise FeatxError(f"{annotations.source} names no training / validation (or validation / test) subsets: "
                         "give --train-subset and --eval-subset")
    if train == held:
        raise FeatxError(f"--train-subset and --eval-subset are both {train}")
    return train, held
