"""The stage-2 tasks behind one interface: classification, multi-label and detection each train, evaluate and
predict, and each gives its own epoch lines and report. `featx train-head`, `evaluate` and `predict` look the
task up (`task_named`, `task_of_run`) and print what it returns: no command branches on the task.

Each method returns the report as text lines; epoch lines go to `show` as training runs.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from featx.errors import FeatxError

Show = Callable[[str], None]


@dataclass(frozen=True)
class Targets:
    """What the user gave to learn from or score against."""

    labels: Path | None = None
    annotations: Path | None = None


@dataclass(frozen=True)
class EvaluateOptions:
    split: str = "val"  # classification / multilabel: val, train or all
    clip_steps: int | None = None  # classification: also score clips of this many steps
    clips: int = 10
    subset: str | None = None  # detection: the annotations' subset scored (None: the run's own)
    tiou: tuple[float, ...] | None = None  # detection: thresholds (None: the run's own)
    ignore_missing: bool = False


@dataclass(frozen=True)
class PredictOptions:
    top_k: int = 5
    adaptive: bool = False
    device: str = "auto"
    subset: str | None = None  # detection with annotations
    annotations: Path | None = None
    progress: bool = False  # of the extraction, when predicting from videos


# -- shared report pieces ------------------------------------------------------------------------------------
def heading(row: dict) -> str:
    """The line before a head's first epoch when one head per stream trains (late fusion)."""
    return f"{row['stream']} head:\n" if "stream" in row and row["epoch"] == 1 else ""


def trained(run) -> str:
    """'trained 30 epochs on rgb features', or per head of a late fusion."""
    counts: dict = {}
    for row in run.history:
        counts[row.get("stream")] = counts.get(row.get("stream"), 0) + 1
    epochs = ", ".join(f"{n} epochs ({s} head)" if s else f"{n} epochs" for s, n in counts.items())
    fusion = f", {run.config.fusion} fusion" if run.config.fusion else ""
    return f"trained {epochs} on {run.config.stream} features{fusion}"


def _shown(row: dict, epochs: int) -> bool:
    return row["epoch"] <= 3 or row["epoch"] % 10 == 0 or row["epoch"] == epochs


def _skip(config) -> bool:
    from seqmodels.registry import find_head

    return find_head(config.task, config.head).skip


@contextlib.contextmanager
def _store_of(run: Path, sources: list, options: PredictOptions):
    """(the store to predict on, lines about it): `sources` itself when it is one store; videos, folders and list
    files are first extracted as the run's store was, into a temporary store (seqmodels.from_videos)."""
    from seqmodels.from_videos import extract_for_run, is_store
    from seqmodels.runs import read_meta

    stores = [s for s in sources if is_store(s)]
    if stores and len(sources) > 1:
        raise FeatxError("predict takes one store, or video files, folders and list files: not both")
    if stores:
        yield sources[0], []
        return
    with tempfile.TemporaryDirectory(prefix="featx-predict-") as tmp:
        summary = extract_for_run(read_meta(run).get("store_config"), sources, Path(tmp) / "store", options.device,
                                  options.progress)
        lines = [f"extracted {summary.ok} videos as the run's store was ({summary.frames} {summary.unit})"]
        lines += [f"  failed {video_id}: {reason}" for video_id, reason in summary.failures]
        yield Path(tmp) / "store", lines


def _videos_only(sources: list) -> list:
    """--adaptive decodes the videos themselves: a store is refused in one line."""
    from seqmodels.from_videos import is_store

    if any(is_store(s) for s in sources):
        raise FeatxError("--adaptive reads the videos themselves: give video files, folders or list files, not a store")
    return sources


def _detection_only(options) -> None:
    if options.annotations is not None or options.subset is not None:
        raise FeatxError("--annotations and --subset choose a detection run's videos; this run is not a detector")


def _some_read(result, predicted: int) -> None:
    """An adaptive run that read no video at all is an error, as a store with no video is."""
    if result.failures and not predicted:
        raise FeatxError(f"no video could be read: {result.failures[0][0]}: {result.failures[0][1]}")


def _adaptive_lines(result) -> list[str]:
    share = result.backbone_calls / max(1, result.frames)
    return [f"backbone calls {result.backbone_calls} of {result.frames} frames sampled ({share:.1%}); "
            f"{result.seconds:.1f} s", *(f"  failed {video_id}: {reason}" for video_id, reason in result.failures)]


def metrics_lines(metrics: dict, per_class: bool = False) -> list[str]:
    """A classifier's metrics as text lines (with a per-class table on request) and notes on the sample."""
    keys = ["accuracy", "macro_f1", "hit@1", "hit@5", "clip_hit@1", "video_hit@1", "video_hit@5", "update_fraction"]
    lines = [f"{key:<16} {metrics[key]:.4f}" + (f"  ({metrics['macro_f1_over']})" if key == "macro_f1" and "macro_f1_over" in metrics else "")
             for key in keys if key in metrics] + [f"{'videos':<16} {metrics['videos']}"]
    if per_class and "per_class" in metrics:
        width = max(len(c) for c in metrics["per_class"])
        lines.append(f"{'class':<{width}} | precision | recall |    F1 | videos")
        lines += [f"{c:<{width}} | {m['precision']:>9.3f} | {m['recall']:>6.3f} | {m['f1']:>5.3f} | {m['support']:>6}"
                  for c, m in metrics["per_class"].items()]
    return lines + [f"note: {note}" for note in metrics.get("notes", [])]


def _write_json(data: dict, target: Path) -> None:
    target.write_text(json.dumps(data, indent=1))


# -- the tasks -----------------------------------------------------------------------------------------------
class Classification:
    name = "classification"

    def train(self, store, targets: Targets, config, out: Path, ignore_missing: bool, progress: bool, show: Show) -> list[str]:
        from seqmodels.classify import train_on_store

        if targets.labels is None:
            raise FeatxError("classification needs --labels CSV (or --annotations for detection)")
        header = ("epoch | train loss | train acc | val loss | val acc" + (" | updates" if _skip(config) else "")
                  + " |     s")

        def epoch(row: dict) -> None:
            line = (f"{row['epoch']:>5} | {row['train_loss']:>10.4f} | {row['train_accuracy']:>9.3f} | "
                    f"{row['val_loss']:>8.4f} | {row['val_accuracy']:>7.3f}")
            if "val_update_fraction" in row:
                line += f" | {row['val_update_fraction']:>7.3f}"
            show(heading(row) + (header + "\n" if row["epoch"] == 1 else "") + line + f" | {row['seconds']:>5.1f}")

        run, metrics = train_on_store(store, targets.labels, config, out, ignore_missing, progress=progress, on_epoch=epoch)
        return [f"{trained(run)} (saved: the weights' moving average); validation:", *metrics_lines(metrics),
                f"wrote {out}/ (config.json, checkpoint.pt, metrics.json, curves.png, confusion.png"
                + (", skips.png)" if "update_fraction" in metrics else ")")]

    def metrics(self, run: Path, store, targets: Targets, options: EvaluateOptions) -> dict:
        from seqmodels.classify import evaluate_run

        if targets.labels is None:
            raise FeatxError("a classification run is evaluated with --labels")
        return evaluate_run(run, store, targets.labels, options.split, options.clip_steps, options.clips,
                            options.ignore_missing)

    def evaluate(self, run: Path, store, targets: Targets, options: EvaluateOptions, target: Path) -> list[str]:
        metrics = self.metrics(run, store, targets, options)
        _write_json(metrics, target)
        return [*metrics_lines(metrics, per_class=True),
                f"wrote {target} (with the confusion matrix: rows true class, columns predicted)"]

    def predictions(self, run: Path, sources: list, options: PredictOptions):
        """(the top-k table, lines on an adaptive run's backbone calls)."""
        from seqmodels.classify import predict_store

        _detection_only(options)
        if options.adaptive:
            from featx.inputs import collect_inputs
            from seqmodels.adaptive import adaptive_predict

            result = adaptive_predict(run, collect_inputs(_videos_only(sources)), options.top_k, options.device)
            _some_read(result, len(result.table))
            return result.table, _adaptive_lines(result)
        with _store_of(run, sources, options) as (store, lines):
            return predict_store(run, store, options.top_k), lines

    def predict(self, run: Path, sources: list[str], out: Path, options: PredictOptions) -> list[str]:
        from seqmodels.classify import write_table

        table, extra = self.predictions(run, sources, options)
        write_table(table, out)
        return [f"wrote {len(table)} predictions to {out}", *extra]


class MultiLabel:
    name = "multilabel"

    def train(self, store, targets: Targets, config, out: Path, ignore_missing: bool, progress: bool, show: Show) -> list[str]:
        from seqmodels.multilabel import metric_lines, train_multilabel

        header = "epoch | train loss | val loss | val mAP" + (" | updates" if _skip(config) else "") + " |     s"

        def epoch(r: dict) -> None:
            if _shown(r, config.epochs):
                updates = f" | {r['val_update_fraction']:>7.1%}" if "val_update_fraction" in r else ""
                show(heading(r) + (header + "\n" if r["epoch"] == 1 else "")
                     + f"{r['epoch']:>5} | {r['train_loss']:>10.4f} | {r['val_loss']:>8.4f} | {r['val_mAP']:>7.3f}"
                     + updates + f" | {r['seconds']:>5.1f}")

        run, metrics = train_multilabel(store, config, out, targets.labels, targets.annotations, ignore_missing,
                                        on_epoch=epoch, progress=progress)
        return [f"{config.head}: {trained(run)} (saved: the weights' moving average); "
                f"validation ({metrics['videos']} videos, never used for training decisions):", *metric_lines(metrics),
                f"wrote {out}/ (config.json, checkpoint.pt, metrics.json, history.json, curves.png)"]

    def metrics(self, run: Path, store, targets: Targets, options: EvaluateOptions) -> dict:
        from seqmodels.multilabel import evaluate_multilabel

        return evaluate_multilabel(run, store, targets.labels, targets.annotations, options.split, options.ignore_missing)

    def evaluate(self, run: Path, store, targets: Targets, options: EvaluateOptions, target: Path) -> list[str]:
        from seqmodels.multilabel import metric_lines

        metrics = self.metrics(run, store, targets, options)
        _write_json(metrics, target)
        return [*metric_lines(metrics), f"wrote {target}"]

    def predictions(self, run: Path, sources: list, options: PredictOptions):
        """(one row per video, step and class with its probability, no extra lines)."""
        from seqmodels.multilabel import predict_multilabel

        _detection_only(options)
        if options.adaptive:
            raise FeatxError("a multilabel run has no --adaptive prediction: give a store, or the videos")
        with _store_of(run, sources, options) as (store, lines):
            return predict_multilabel(run, store), lines

    def predict(self, run: Path, sources: list[str], out: Path, options: PredictOptions) -> list[str]:
        from seqmodels.classify import write_table

        table, extra = self.predictions(run, sources, options)
        write_table(table, out)
        return [*extra, f"wrote {len(table)} step probabilities ({table.video_id.nunique()} videos) to {out}"]


class Detection:
    name = "detection"

    def train(self, store, targets: Targets, config, out: Path, ignore_missing: bool, progress: bool, show: Show) -> list[str]:
        from seqmodels.detection.map import map_table
        from seqmodels.detection.run import train_detection

        if targets.annotations is None:
            raise FeatxError("--task detection needs --annotations (ActivityNet JSON or CSV video_id,start,end,label)")

        def epoch(r: dict) -> None:
            if _shown(r, config.epochs):
                held = f" | {r['holdout_loss']:>12.4f}" if "holdout_loss" in r else ""
                show(heading(r) + ("epoch | train loss" + (" | holdout loss" if held else "") + "\n" if r["epoch"] == 1 else "")
                     + f"{r['epoch']:>5} | {r['train_loss']:>10.4f}{held}")

        run, metrics = train_detection(store, targets.annotations, config, out, ignore_missing, on_epoch=epoch,
                                       progress=progress)
        return [f"{config.head}: {trained(run)} (saved: the weights' moving average); {metrics['split']} "
                "(never used for training decisions):", *map_table(metrics),
                f"wrote {out}/ (config.json, checkpoint.pt, metrics.json, history.json, timeline.png)"]

    def metrics(self, run: Path, store, targets: Targets, options: EvaluateOptions) -> dict:
        from seqmodels.detection.run import evaluate_detection

        if targets.annotations is None:
            raise FeatxError("a detection run is evaluated with --annotations")
        return evaluate_detection(run, store, targets.annotations, options.subset, options.tiou,
                                  options.ignore_missing).to_dict()

    def evaluate(self, run: Path, store, targets: Targets, options: EvaluateOptions, target: Path) -> list[str]:
        from seqmodels.detection.map import map_table

        report = self.metrics(run, store, targets, options)
        _write_json(report, target)
        return [f"scored {report['videos']} videos ({options.subset or 'the ones the run was scored on'})",
                *map_table(report), f"wrote {target}"]

    def predictions(self, run: Path, sources: list, options: PredictOptions):
        """(ActivityNet results: {"results": {video_id: [segments]}, ...}, lines on an adaptive run)."""
        from seqmodels.detection.run import predict_detection

        if options.adaptive:
            from featx.inputs import collect_inputs
            from seqmodels.adaptive import adaptive_detect

            results, result = adaptive_detect(run, collect_inputs(_videos_only(sources)), options.device)
            _some_read(result, len(results["results"]))
            return results, _adaptive_lines(result)
        with _store_of(run, sources, options) as (store, lines):
            return predict_detection(run, store, options.subset, options.annotations), lines

    def predict(self, run: Path, sources: list[str], out: Path, options: PredictOptions) -> list[str]:
        if out.suffix.lower() != ".json":
            raise FeatxError(f"--out {out}: detection results are written as .json (ActivityNet format)")
        results, extra = self.predictions(run, sources, options)
        _write_json(results, out)
        count = sum(len(v) for v in results["results"].values())
        return [f"wrote {count} segments for {len(results['results'])} videos to {out}", *extra]


TASKS = {task.name: task for task in (Classification(), MultiLabel(), Detection())}


def task_named(name: str, targets: Targets) -> tuple[str, object]:
    """(name, task) for `name`, or for "auto" the task the targets imply: detection with annotations,
    multilabel with labels naming several classes for a video, else classification."""
    if name == "auto":
        from seqmodels.multilabel import has_several_labels

        several = targets.labels is not None and has_several_labels(targets.labels)
        name = "detection" if targets.annotations is not None else "multilabel" if several else "classification"
    if name not in TASKS:
        raise FeatxError(f"--task must be one of {', '.join(TASKS)}, not {name!r}")
    return name, TASKS[name]


def task_of_run(run: str | Path):
    """The task a run folder was trained for."""
    from seqmodels.runs import run_task

    return TASKS[run_task(run)]
