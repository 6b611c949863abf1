"""The Python interface to stage 2, what `featx train-head`, `evaluate` and `predict` call:
`seqmodels.train(store, out, labels=... | annotations=..., head=...)` and `seqmodels.load_run(path)`, whose
`.evaluate(store, ...)` gives the metrics and `.predict(store)` the predictions (docs/python.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from featx.errors import FeatxError
from seqmodels.tasks import TASKS, EvaluateOptions, PredictOptions, Targets, task_named


@dataclass
class TrainedRun:
    """A run folder written by `train` (or `featx train-head`), ready to score and predict."""

    path: Path
    task: str  # classification, multilabel or detection
    head: str
    classes: list[str]
    report: list[str] = field(default_factory=list)  # the lines training ended with (empty when loaded)

    @property
    def metrics(self) -> dict:
        """The validation metrics written when it trained (metrics.json)."""
        return json.loads((self.path / "metrics.json").read_text())

    def evaluate(self, store, labels=None, annotations=None, **options) -> dict:
        """Metrics on `store`'s videos: classification and multilabel runs score `labels` (split: val, train or
        all; clip_steps, clips), detection runs `annotations` (subset, tiou: a tuple of thresholds)."""
        return TASKS[self.task].metrics(self.path, store, Targets(labels, annotations), EvaluateOptions(**options))

    def predict(self, store, **options):
        """Predictions for every video of `store`: a top-k table (classification: top_k), step probabilities
        (multilabel), or ActivityNet results (detection: subset and annotations restrict them to a subset)."""
        predictions, _ = TASKS[self.task].predictions(self.path, [store], PredictOptions(**options))
        return predictions

    def __fspath__(self) -> str:
        return str(self.path)


def load_run(path: str | Path) -> TrainedRun:
    """The run folder `path`; one FeatxError line when it is not one."""
    from seqmodels.runs import read_meta

    path = Path(path)
    meta = read_meta(path)
    train = meta.get("train") if isinstance(meta.get("train"), dict) else {}
    return TrainedRun(path, meta.get("task", "classification"), train.get("head", ""), list(meta.get("classes") or []))


def train(store, out: str | Path, labels=None, annotations=None, task: str = "auto", head: str | None = None,
          head_options: dict | None = None, overwrite: bool = False, ignore_missing: bool = False,
          progress: bool = False, show: Callable[[str], None] | None = None, **settings) -> TrainedRun:
    """Train a head on `store` and write the run folder `out`; returns it. `labels` (a CSV) make a classifier
    (or a multi-label one when a video has several), `annotations` a detector. settings: the training options
    of `featx train-head` as keywords (epochs, batch_size, lr, weight_decay, warmup_epochs, ema_decay, holdout,
    patience, budget, gate_warmup, max_steps, val_fraction, seed, device, background_weight, smooth,
    threshold, stream, fusion, train_subset, eval_subset, tiou); unset ones take the head's defaults. An
    earlier run in `out` is refused unless `overwrite` (then replaced once the new one is complete). `show`
    receives each epoch line (None: quiet)."""
    from featx.store import refuse_output_in_store
    from seqmodels.runs import TrainConfig, check_run_folder, staged_run_folder

    out = Path(out)
    refuse_output_in_store(out, folder=True)
    check_run_folder(out, overwrite)  # before training, not after
    targets = Targets(Path(labels) if labels is not None else None, Path(annotations) if annotations is not None else None)
    task, trainer = task_named(task, targets)
    tiou = settings.pop("tiou", None)
    if isinstance(tiou, str):
        from seqmodels.detection.map import parse_tiou

        tiou = parse_tiou(tiou)
    unknown = sorted(set(settings) - set(TrainConfig.__dataclass_fields__) - {"task", "head", "head_options"})
    if unknown:
        raise FeatxError(f"seqmodels.train: unknown setting(s) {', '.join(unknown)}")
    config = TrainConfig.with_defaults(task, head, head_options=head_options or {}, tiou=tiou, **settings)
    if (config.train_subset or config.eval_subset or config.tiou) and task != "detection":
        raise FeatxError("--train-subset, --eval-subset and --tiou apply to detection (--annotations) only")
    with staged_run_folder(out, overwrite) as stage:  # an earlier run is replaced only by a finished one
        lines = trainer.train(store, targets, config, stage, ignore_missing, progress, show=show or (lambda line: None))
    run = load_run(out)
    run.report = [line.replace(str(stage), str(out)) for line in lines]
    return run
