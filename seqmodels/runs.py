"""The run layer of stage 2, one for every task: the training config, the run folder (config.json +
checkpoint.pt, versioned), loading it back with one-line errors, and the check that a store matches the run.

A run folder holds config.json (readable metadata) and checkpoint.pt (the same metadata, the EMA weights and
the history: it alone rebuilds the model). Tasks add their own files (metrics.json, plots, ...).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from featx.backbones.weights import file_sha256, safe_torch_load
from featx.errors import FeatxError
from featx.interrupts import held_interrupts
from featx.store import Store
from featx.store.lease import remove_left_by_dead
from seqmodels import registry, streams
from seqmodels.protocol import Protocol
from seqmodels.registry import TASKS

RUN_FORMAT_VERSION = 2  # 2: one config for every task, EMA weights, the shared protocol


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run was asked for; saved in the run, rebuilt from it (unknown keys refused)."""

    task: str = "classification"
    head: str = "lstm"
    head_options: dict = field(default_factory=dict)  # passed to the head's constructor
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 1e-2  # on weight matrices and kernels only
    warmup_epochs: float = 2
    grad_clip: float = 1.0  # gradient norm clipping
    ema_decay: float = 0.999  # the saved weights are this EMA of the trained ones
    holdout: float = 0.0  # > 0: early stopping on this share of the training videos; 0: fixed epochs
    patience: int = 10  # with holdout
    max_steps: int | None = None  # classification: uniform subsampling; detection: training crop length
    val_fraction: float = 0.2  # reported split's share when the labels / annotations name none
    seed: int = 0
    device: str = "auto"
    budget: float = 0.0  # skip heads: cost per updated step
    gate_warmup: float = 0.25  # skip heads: share of the epochs (from the start) that update every step (never the last)
    background_weight: float = 0.3  # step detection heads: loss weight of background steps (Montes et al.)
    smooth: int = 5  # step detection heads: mean-filter window (steps)
    threshold: float = 0.5  # step detection heads: a step is active when 1 - P(background) reaches this
    stream: str | None = None  # rgb, flow or both (seqmodels.streams); None: the store's own, set when training
    fusion: str | None = None  # with both: early (one head on the concatenation) or late (one per stream); None: late
    train_subset: str | None = None  # detection: the annotations' subset trained on (None: chosen from the file)
    eval_subset: str | None = None  # detection: the subset scored (None: chosen; a random share has none)
    tiou: tuple[float, ...] | None = None  # detection: the tIoU thresholds reported (None: from the file's shape)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise FeatxError(f"--task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if not (isinstance(self.seed, int) and 0 <= self.seed < 2**32):
            raise FeatxError(f"--seed must be an integer from 0 to 2**32 - 1, not {self.seed}")
        if not 0 < self.val_fraction < 1:
            raise FeatxError(f"--val-fraction must be between 0 and 1, not {self.val_fraction}")
        if self.max_steps is not None and self.max_steps < 1:
            raise FeatxError(f"--max-steps must be >= 1, not {self.max_steps}")
        if not (math.isfinite(self.budget) and self.budget >= 0):
            raise FeatxError(f"--budget must be >= 0, not {self.budget}")
        if not (math.isfinite(self.gate_warmup) and 0 <= self.gate_warmup < 1):
            raise FeatxError(f"--gate-warmup must be in [0, 1), not {self.gate_warmup}")
        if not 0 <= self.background_weight <= 1 or not 0 < self.threshold < 1 or self.smooth < 1:
            raise FeatxError("--background-weight must be in [0, 1], --threshold in (0, 1), --smooth >= 1")
        streams.check_choice(self.stream, self.fusion)
        if self.tiou is not None:
            object.__setattr__(self, "tiou", tuple(float(t) for t in self.tiou))  # JSON gives a list back
            if not self.tiou or not all(0 < t <= 1 for t in self.tiou):
                raise FeatxError(f"--tiou thresholds must lie in (0, 1], not {list(self.tiou)}")
        self.protocol  # validates the protocol's fields

    @classmethod
    def with_defaults(cls, task: str, head: str | None = None, **given) -> "TrainConfig":
        """The config for `head` (the task's default head when None): options left None take the head's
        defaults (seqmodels.registry); an unset warm-up is at most a fifth of the epochs."""
        found = registry.find_head(task, head)
        values = {**found.defaults, **{k: v for k, v in given.items() if v is not None}}
        if given.get("warmup_epochs") is None and "warmup_epochs" in values:  # a short run warms up for a fifth of it
            values["warmup_epochs"] = min(values["warmup_epochs"], values.get("epochs", cls.epochs) / 5)
        return cls(task=task, head=found.name, **values)

    @property
    def protocol(self) -> Protocol:
        return Protocol(self.epochs, self.batch_size, self.lr, self.weight_decay, self.warmup_epochs, self.grad_clip,
                        self.ema_decay, self.holdout, self.patience, self.seed,
                        gate_warmup=min(round(self.gate_warmup * self.epochs), self.epochs - 1))  # gates learn at last

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise FeatxError(f"unknown training config keys {unknown}: written by a newer featx?")
        return cls(**data)


@dataclass
class Run:
    """A trained head with everything needed to use it again."""

    model: torch.nn.Module
    config: TrainConfig
    classes: list[str]
    in_dim: int
    store_config: dict | None  # the extraction config of the store it was trained on
    history: list[dict] = field(default_factory=list)
    train_videos: list[str] | None = None  # the videos it trained on (None: not recorded, older runs)

    @property
    def task(self) -> str:
        return self.config.task


def _meta(run: Run) -> dict:
    return {"format_version": RUN_FORMAT_VERSION, "task": run.task, "train": dataclasses.asdict(run.config),
            "classes": run.classes, "in_dim": run.in_dim, "store_config": run.store_config,
            "train_videos": run.train_videos}


# Every file a run folder may hold: training again into a run folder replaces all of them, so a folder never
# mixes two runs (an avgpool checkpoint beside a skip head's skips.png).
RUN_FILES = ("config.json", "checkpoint.pt", "metrics.json", "history.json", "curves.png", "confusion.png",
             "skips.png", "timeline.png", "evaluation.json")


def refuse_output_in_run(out: str | Path, run: str | Path, allowed: tuple[str, ...] = ()) -> None:
    """Before any work: refuse to write `out` inside the run folder `run` (its config, checkpoint and metrics are
    what the command reads, and retraining replaces the folder whole), except the names `allowed`."""
    target, folder = Path(out).resolve(), Path(run).resolve()
    if not (folder / "config.json").is_file():
        return  # not a run: the command says so itself
    if target.is_relative_to(folder) and not (target.parent == folder and target.name in allowed):
        raise FeatxError(f"--out {out} is inside the run {run}; write it elsewhere")


def check_run_folder(folder: str | Path, overwrite: bool = False) -> None:
    """Before training: --out is new or empty, or (with `overwrite`) an earlier run, which the new one replaces
    only once it is complete (`staged_run_folder`); any other folder is refused, so nothing of the user's is
    mixed into or overwritten by a run."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FeatxError(f"--out {folder} exists and is not a folder; choose a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / "config.json").is_file():
            raise FeatxError(f"--out {folder} is a non-empty folder but not a featx run; choose a new folder")
        if not overwrite:
            raise FeatxError(f"--out {folder} holds a run already; choose a new folder, or --overwrite to replace it")


@contextlib.contextmanager
def staged_run_folder(folder: str | Path, overwrite: bool = False):
    """Yields a fresh hidden folder beside `folder` to write a run into; when the block succeeds it becomes
    `folder` (an earlier run there is swapped out and removed only then), when it fails it is removed and
    `folder` is as it was: a full disk or Ctrl-C never loses the earlier run."""
    folder = Path(folder)
    check_run_folder(folder, overwrite)
    stage = folder.parent / f".{folder.name}.featx-run-{os.getpid()}.tmp"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        remove_left_by_dead(folder.parent, f".{folder.name}.featx-*-*.tmp")  # stages of killed trainings
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
    except OSError as exc:
        raise FeatxError(f"cannot write the run beside {folder}: {exc.strerror or exc}") from None
    try:
        yield stage
        old = folder.parent / f".{folder.name}.featx-old-{os.getpid()}.tmp"
        try:
            with held_interrupts():  # the old run or the new one, never neither
                if folder.is_dir() and any(folder.iterdir()):
                    os.replace(folder, old)
                    os.replace(stage, folder)
                else:
                    if folder.is_dir():
                        folder.rmdir()
                    os.replace(stage, folder)
        finally:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise FeatxError(f"cannot write the run to {folder}: {exc.strerror or exc}; an earlier run there is "
                         "unchanged") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def save_run(run: Run, folder: str | Path) -> None:
    """config.json and checkpoint.pt, each written to a temporary name and renamed (never half-written); the
    files of an earlier run in `folder` are removed first."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            (folder / name).unlink(missing_ok=True)
        meta = _meta(run)
        tmp = folder / ".checkpoint.pt.tmp"
        torch.save({**meta, "state_dict": run.model.state_dict(), "history": run.history}, tmp)
        os.replace(tmp, folder / "checkpoint.pt")
        tmp = folder / ".config.json.tmp"
        # the checkpoint's digest: a damaged or swapped checkpoint.pt is an error, never other predictions
        tmp.write_text(json.dumps({**meta, "checkpoint_sha256": file_sha256(folder / "checkpoint.pt")}, indent=1))
        os.replace(tmp, folder / "config.json")
    except OSError as exc:
        raise FeatxError(f"cannot write the run to {folder}: {exc.strerror or exc}") from None


def read_meta(folder: str | Path) -> dict:
    """A run folder's config.json; one-line errors when it is missing or malformed."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FeatxError(f"{folder} is not a training run (no config.json); train one with `featx train-head`")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FeatxError(f"{path} is not valid JSON ({exc}); train the run again") from None
    if not isinstance(meta, dict):
        raise FeatxError(f"{path} is not a featx run config")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or version > RUN_FORMAT_VERSION:
        raise FeatxError(f"{path} was written by a newer featx (run format {version!r}); upgrade featx")
    return meta



def run_task(folder: str | Path) -> str:
    """'classification', 'detection' or 'multilabel', from a run folder's config.json."""
    return read_meta(folder).get("task", "classification")


def load_checkpoint(folder: str | Path) -> dict:
    """checkpoint.pt, loaded without executing anything (weights_only); one-line errors."""
    path = Path(folder) / "checkpoint.pt"
    if not path.is_file():
        raise FeatxError(f"{folder} is not a training run (no checkpoint.pt); train one with `featx train-head`")
    expected = read_meta(folder).get("checkpoint_sha256") if (Path(folder) / "config.json").is_file() else None
    if expected is not None and file_sha256(path) != expected:
        raise FeatxError(f"{path} does not match the checksum in config.json (damaged or replaced); train the run again")
    ckpt = safe_torch_load(path, f"{path} cannot be read safely (train the run again)")  # truncated, or code
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise FeatxError(f"{path} is not a featx checkpoint")
    version = ckpt.get("format_version", 0)
    if version > RUN_FORMAT_VERSION:
        raise FeatxError(f"{path} was written by a newer featx (run format {version})")
    if version < RUN_FORMAT_VERSION:
        raise FeatxError(f"{path} was written by an older featx (run format {version}); train the run again")
    return ckpt


def load_run(folder: str | Path, build, device: str = "cpu") -> Run:
    """Rebuild a run: `build(config, in_dim, classes)` makes the head, the checkpoint's weights fill it."""
    from featx.backbones import resolve_device

    ckpt = load_checkpoint(folder)
    fields = {"train": dict, "classes": list, "in_dim": int}
    for key, kind in fields.items():
        if not isinstance(ckpt.get(key), kind) or isinstance(ckpt.get(key), bool):
            raise FeatxError(f"{folder}/checkpoint.pt: '{key}' is missing or not a {kind.__name__}; train the run again")
    if not isinstance(ckpt.get("store_config"), (dict, type(None))) or not all(isinstance(c, str) for c in ckpt["classes"]):
        raise FeatxError(f"{folder}/checkpoint.pt: 'classes' or 'store_config' has the wrong type; train the run again")
    train = ckpt["train"]
    if "stream" not in train:  # a run from before streams read `feature`: the stream its store holds there
        store_stream = (ckpt["store_config"] or {}).get("stream")
        train = {**train, "stream": "flow" if store_stream == "flow" else "rgb"}
    config = TrainConfig.from_dict(train)
    model = build(config, ckpt["in_dim"], ckpt["classes"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise FeatxError(f"{folder}: the weights do not fit the head ({str(exc).splitlines()[0]})") from None
    model.to(resolve_device(device)).eval()
    return Run(model, config, ckpt["classes"], ckpt["in_dim"], ckpt["store_config"], ckpt.get("history", []),
               ckpt.get("train_videos"))


def run_columns(run: Run, store: Store) -> list[str]:
    """The store columns the run reads (its stream), once the store is refused if its features are not those
    the run was trained on (another backbone, weights, fps, dimension, streams...)."""
    from featx.config import ExtractConfig

    config = store.config
    stream = run.config.stream or config.stream  # unset (a head trained on arrays, not on a store): the store's own
    per_stream = run.in_dim // len(streams.stream_names(stream))
    if config.feature_dim != per_stream:
        raise FeatxError(f"{store} has {config.feature_dim}-d features; the run was trained on {per_stream}-d ones")
    if run.store_config is not None:
        diff = ExtractConfig.from_dict(run.store_config).differences(config)
        if diff:
            raise FeatxError(f"{store} was extracted differently from the run's training store: {'; '.join(diff)}")
    return streams.columns(stream, config.stream, store)
