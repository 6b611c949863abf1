"""Zero-shot classification of a store extracted with an image-text backbone (featx.backbones.image_text): class
prompts go through the text tower the store's config names, and every row and video is scored by cosine
similarity in the joint space. No training.

Scores: a step's score for a class is the cosine of its feature with the class's text embedding; a video's score
is the mean of its steps' scores (every frame counts once, whatever it looks like; with the unit-length rows the
store holds this is the dot product of the mean frame embedding with the unit text embedding). The prediction of
a video is its highest-scoring class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from featx.errors import FeatxError
from featx.store import Store, open_store

COLUMNS = ["video_id", "step", "t_start", "t_end", "class", "score"]  # step is null on a video's own rows
OUT_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class ZeroShotReport:
    """What `featx zero-shot` wrote and measured."""

    out: Path | None
    videos: int
    steps: int
    classes: list[str]
    accuracy: dict[str, tuple[int, int]]  # "all" (and each split) -> (correct, labelled videos scored)
    unscored: list[str]  # labelled videos the store does not hold

    def lines(self) -> list[str]:
        where = f" to {self.out}" if self.out is not None else ""
        lines = [f"scored {self.videos} videos ({self.steps} steps) against {len(self.classes)} classes{where}"]
        for part, (right, total) in self.accuracy.items():
            name = "top-1 accuracy" if part == "all" else f"  split {part}"
            share = f"{right / total:.4f}" if total else "-"
            lines.append(f"{name} {share} ({right}/{total} labelled videos)")
        if self.unscored:
            lines.append(f"note: {len(self.unscored)} labelled videos are not in the store and were left out "
                         f"(e.g. {self.unscored[0]!r})")
        return lines


def check_out(out: str | Path, labels) -> Path:
    """Refuse, before any work, an output that is not .parquet / .csv, lies in a store, or is an input."""
    from featx.inputs import refuse_writing_over
    from featx.store import refuse_output_in_store

    out = Path(out)
    if out.suffix not in OUT_SUFFIXES:
        raise FeatxError(f"--out {out}: use a .parquet or .csv file name")
    if out.is_dir():
        raise FeatxError(f"--out {out}: is a folder; give a file name")
    refuse_output_in_store(out)
    refuse_writing_over(out, [labels] if labels is not None else [])
    return out


def check_classes(classes: list[str]) -> list[str]:
    names = [c.strip() for c in classes or []]
    if not names or any(not n for n in names):
        raise FeatxError("--classes: give at least one non-empty prompt, e.g. --classes \"a person jumping\" \"a dog running\"")
    seen = [n for i, n in enumerate(names) if n in names[:i]]
    if seen:
        raise FeatxError(f"--classes: {seen[0]!r} is given twice")
    return names


def text_tower_of(store: Store) -> dict:
    tower = store.config.text_tower
    if not tower:
        raise FeatxError(f"{store}: its backbone {store.config.backbone!r} has no text tower; zero-shot needs a store "
                         "extracted with an image-text backbone (--backbone clip:<org>/<name>, docs/backbones.md)")
    return tower


def read_targets(labels, classes: list[str], store: Store) -> pd.DataFrame:
    """The labels table (video_id, label[, split]) on the store's ids; every label must be one of `classes`."""
    from seqmodels.data import match_store_ids, read_labels

    table = match_store_ids(read_labels(labels), store.ok_ids())
    unknown = sorted(set(table.label) - set(classes))
    if unknown:
        raise FeatxError(f"--labels {labels}: label {unknown[0]!r} is not among --classes ({len(unknown)} labels are "
                         "not); give each label's prompt exactly as in the CSV")
    return table


def score_rows(rows: pd.DataFrame, text: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """The long score table: one row per (video, class) with a null step, and one per (step, class)."""
    feats = np.stack(rows["feature"].to_numpy()).astype(np.float32)  # (N, D)
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    cosines = feats @ text.T  # (N, K)
    k, n = len(classes), len(rows)
    steps = pd.DataFrame({
        "video_id": np.repeat(rows["video_id"].to_numpy(), k), "step": np.repeat(rows["step"].to_numpy(), k),
        "t_start": np.repeat(rows["t_start"].to_numpy(), k), "t_end": np.repeat(rows["t_end"].to_numpy(), k),
        "class": np.tile(np.array(classes, dtype=object), n), "score": cosines.reshape(-1),
    })
    videos = steps.groupby(["video_id", "class"], sort=False).agg(
        t_start=("t_start", "min"), t_end=("t_end", "max"), score=("score", "mean")).reset_index()
    videos["step"] = pd.NA
    table = pd.concat([videos[COLUMNS], steps[COLUMNS]], ignore_index=True)
    table["step"] = table["step"].astype("Int64")
    order = {c: i for i, c in enumerate(classes)}
    table["_class"] = table["class"].map(order)
    table = table.sort_values(["video_id", "step", "_class"], na_position="first", kind="stable")
    return table.drop(columns="_class").reset_index(drop=True)


def accuracy(table: pd.DataFrame, targets: pd.DataFrame) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Top-1 accuracy of the videos' predictions (their highest-scoring class) on the labelled videos the table
    holds, overall and per split; and the labelled videos it does not hold."""
    videos = table[table["step"].isna()]
    best = videos.loc[videos.groupby("video_id", sort=True)["score"].idxmax(), ["video_id", "class"]]
    predicted = dict(zip(best["video_id"], best["class"]))
    scored = targets[targets.video_id.isin(predicted)]
    right = scored.label.to_numpy() == scored.video_id.map(predicted).to_numpy()
    result = {"all": (int(right.sum()), len(scored))}
    if "split" in scored.columns:
        for split in sorted(set(scored.split)):
            mask = (scored.split == split).to_numpy()
            result[split] = (int(right[mask].sum()), int(mask.sum()))
    return result, sorted(set(targets.video_id) - set(predicted))


def zero_shot(store, classes: list[str], out: str | Path | None = None, labels=None,
              device: str = "auto") -> tuple[pd.DataFrame, ZeroShotReport]:
    """Score every video and step of `store` against the text prompts `classes` (the long table of COLUMNS),
    write it to `out` (.parquet or .csv) when given, and with `labels` (video_id,label[,split]) measure top-1
    accuracy. Returns (table, report)."""
    from featx.backbones import resolve_device
    from featx.backbones.image_text import embed_texts
    from seqmodels.classify import write_table

    out = check_out(out, labels) if out is not None else None
    classes = check_classes(classes)
    store = open_store(store)
    tower = text_tower_of(store)
    targets = read_targets(labels, classes, store) if labels is not None else None
    text = embed_texts(tower, classes, resolve_device(device), str(store)).numpy()  # (K, D)
    if text.shape[1] != store.config.feature_dim:
        raise FeatxError(f"{store}: its features have {store.config.feature_dim} dimensions, its text tower's "
                         f"{text.shape[1]}; the store's text tower is not the one its features came from")
    rows = store.rows(["video_id", "step", "t_start", "t_end", "feature"]).sort_values(["video_id", "step"])
    table = score_rows(rows, text, classes)
    if out is not None:
        write_table(table, out)
    measured, unscored = accuracy(table, targets) if targets is not None else ({}, [])
    report = ZeroShotReport(out, rows["video_id"].nunique(), len(rows), classes, measured, unscored)
    return table, report
