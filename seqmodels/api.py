"""The Python interface to stage 2, what `featx train-head`, `evaluate` and `predict` call:
`seqmodels.train(store, out, labels=... | annotations=..., head=...)` and `seqmodels.load_run(path)`, whose
`.evaluate(store, ...)` gives the metrics and `.predict(store)` the predictions (docs/python.md)."""

from __future__ import annotations

import dataclasses
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
        all; clip_steps, clips), detection runs `annotations` (subset, tiou: "thumos", "0.3,0.5" or a tuple)."""
        options = _options(EvaluateOptions, options, "evaluate")
        if options.tiou is not None:
            options = dataclasses.replace(options, tiou=_tiou(options.tiou))
        if options.clip_steps is not None and options.clip_steps < 1 or options.clips < 1:
            raise FeatxError(f"evaluate: clip_steps and clips must be >= 1, not {options.clip_steps} and {options.clips}")
        return TASKS[self.task].metrics(self.path, store, Targets(labels, annotations), options)

    def predict(self, store, **options):
        """Predictions for every video of `store` (or of videos: a path or a list of video files, folders and
        list files, extracted as the run's store was): a top-k table (classification: top_k), step
        probabilities (multilabel), or ActivityNet results (detection: subset and annotations restrict them)."""
        options = _options(PredictOptions, options, "predict")
        if options.top_k < 1:
            raise FeatxError(f"predict: top_k must be >= 1, not {options.top_k}")
        sources = list(store) if isinstance(store, (list, tuple)) else [store]
        predictions, _ = TASKS[self.task].predictions(self.path, sources, options)
        return predictions

    def __fspath__(self) -> str:
        return str(self.path)


def _options(kind, given: dict, where: str):
    """`kind` (EvaluateOptions or PredictOptions) from keywords, each of its field's type; one error line."""
    from featx.inputs import check_option_types

    fields = {f.name: f for f in dataclasses.fields(kind)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise FeatxError(f"{where}: unknown option(s) {', '.join(unknown)} (options: {', '.join(fields)})")
    types = {"split": str, "clip_steps": int, "clips": int, "subset": str, "ignore_missing": bool, "top_k": int,
             "adaptive": bool, "device": str, "annotations": Path}
    check_option_types(given, types, where)
    return kind(**given)


def _tiou(value) -> tuple[float, ...]:
    from seqmodels.detection.map import parse_tiou

    if isinstance(value, str):
        return parse_tiou(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(t, (int, float)) and 0 < t <= 1 for t in value):
        return tuple(float(t) for t in value)
    raise FeatxError(f"tiou must be thumos, activitynet, a list like '0.3,0.5', or thresholds in (0, 1], not {value!r}")


def load_run(path: str | Path) -> TrainedRun:
    """The run folder `path`; one FeatxError line when it is not one."""
    from featx.inputs import path_argument
    from seqmodels.runs import read_meta

    path = path_argument(path, "load_run: path")
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
    from featx.inputs import check_option_types, path_argument
    from featx.store import refuse_output_in_store
    from seqmodels.runs import TrainConfig, check_run_folder, staged_run_folder

    out = path_argument(out, "seqmodels.train: out")
    labels = None if labels is None else path_argument(labels, "seqmodels.train: labels")
    annotations = None if annotations is None else path_argument(annotations, "seqmodels.train: annotations")
    if head is not None and not isinstance(head, str) or head_options is not None and not isinstance(head_options, dict):
        raise FeatxError(f"seqmodels.train: head is a name and head_options a dict, not {head!r} and {head_options!r}")
    kinds = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig) if type(f.default) in (int, float, str, bool)}
    kinds.update(epochs=int, batch_size=int, lr=float, weight_decay=float, warmup_epochs=float, max_steps=int,
                 stream=str, fusion=str, train_subset=str, eval_subset=str)
    check_option_types({k: v for k, v in settings.items() if k != "tiou"}, kinds, "seqmodels.train")
    refuse_output_in_store(out, folder=True)
    check_run_folder(out, overwrite)  # before training, not after
    targets = Targets(labels, annotations)
    task, trainer = task_named(task, targets)
    tiou = settings.pop("tiou", None)
    tiou = None if tiou is None else _tiou(tiou)
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
