"""Temporal activity detection on a store, end to end: train a head under the shared protocol, predict
ActivityNet results, evaluate mAP. The CLI's train-head / predict / evaluate call these for detection runs.

A detection run folder (seqmodels.runs) also holds metrics.json (mAP per tIoU on the validation videos, which
no training decision ever looked at), history.json and timeline.png.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from featx.errors import FeatxError
from featx.store import open_store
from seqmodels import registry, streams
from seqmodels.detection.annotations import Annotations, check_videos, load_annotations, step_targets
from seqmodels.detection.map import Detection, DetectionMAP, detection_map
from seqmodels.detection.postprocess import segments_from_probs
from seqmodels.detection.step_data import StepData, load_steps
from seqmodels.detection.subsets import choose_split, default_tiou, subset_name
from seqmodels.detection.step_training import predict_steps, step_loss
from seqmodels.data import pad
from seqmodels.protocol import fit
from seqmodels.runs import Run, TrainConfig, load_run, run_columns, save_run

RESULTS_VERSION = "featx detection results 1"
MAX_LEN = 2304  # training crop length when --max-steps is not given (ActionFormer's THUMOS14 max_seq_len)
CROP_RATIO = (0.9, 1.0)  # segment heads: each epoch sees a random 90-100 % window of every video
TRUNC_THRESH = 0.5  # a cropped segment is kept when this share of it stays inside the window


def single_head(config: TrainConfig, in_dim: int, classes: list[str]) -> torch.nn.Module:
    """One head: step heads output K + 1 classes (0: background); segment heads K (seqmodels.registry)."""
    return registry.build_head(config.head, in_dim, len(classes), task="detection", **config.head_options)


def build_head(config: TrainConfig, in_dim: int, classes: list[str]) -> torch.nn.Module:
    """The model of a run: one head, or with late fusion of two streams one per stream (seqmodels.streams)."""
    return streams.build(config, in_dim, lambda width: single_head(config, width, classes))


def _check_inside(annotations: Annotations, data: StepData) -> None:
    """A segment must lie within its video as the store saw it (one step of slack): annotations without a
    duration are otherwise never checked."""
    for vid, grid in zip(data.ids, data.grids):
        for seg in annotations.videos[vid].segments:
            if seg.end > grid.end + grid.period:
                raise FeatxError(f"{annotations.source}: segment [{seg.start}, {seg.end}] of {vid!r} ends after the "
                                 f"video ({grid.end:.2f} s in the store)")


def segment_targets(data: StepData, annotations: Annotations, classes: list[str]) -> list[np.ndarray]:
    """Per video (n, 3): start, end on the step grid, class index."""
    out = []
    for vid, grid in zip(data.ids, data.grids):
        segs = annotations.videos[vid].segments
        rows = [[*grid.to_grid([s.start, s.end]), classes.index(s.label)] for s in segs]
        out.append(np.array(rows, float).reshape(-1, 3))
    return out


def cell_targets(data: StepData, annotations: Annotations, classes: list[str]) -> list[np.ndarray]:
    """Per video (T,) step classes (0 background) of the rows' cells (half-cell rule)."""
    return [step_targets(*grid.cells(), annotations.videos[vid].segments, classes) for vid, grid in zip(data.ids, data.grids)]


def crop_window(length: int, max_len: int, ratio: tuple[float, float] | None, rng: np.random.Generator) -> tuple[int, int]:
    """A random [start, stop) of at most max_len steps; with `ratio`, of a random share of the length in it."""
    size = min(length, max_len)
    if ratio is not None:
        size = min(size, int(rng.integers(max(1, int(np.ceil(ratio[0] * length))), int(ratio[1] * length) + 1)))
    start = int(rng.integers(0, length - size + 1))
    return start, start + size


def crop_segments(segments: np.ndarray, start: int, stop: int, offset: float = 0.5) -> np.ndarray:
    """Segments clipped to the rows [start, stop) widened by `offset` steps on each side (grid units, shifted to
    the window), kept when at least TRUNC_THRESH of their length stays inside. This is ActionFormer's truncation
    (libs/datasets/data_utils.py truncate_feats: [st - offset, ed + offset] with ed = st + length, exclusive;
    offset = half a row's window, 0.5 * num_frames / feat_stride)."""
    if len(segments) == 0:
        return segments
    s = np.clip(segments[:, 0], start - offset, stop + offset)
    e = np.clip(segments[:, 1], start - offset, stop + offset)
    keep = (e - s) >= TRUNC_THRESH * np.maximum(segments[:, 1] - segments[:, 0], 1e-9)
    return np.stack([s - start, e - start, segments[:, 2]], 1)[keep]


def detection_loss(model: torch.nn.Module, features: list[np.ndarray], targets: list[np.ndarray], config: TrainConfig,
                   offsets: list[float] | None = None):
    """loss(model, items, rng, train) for seqmodels.protocol.fit: random crops while training. offsets: per video,
    half a row's window in steps (segment targets are cropped to the window widened by it; default 0.5)."""
    max_len = config.max_steps or MAX_LEN
    segment_head = model.kind == "segments"
    offsets = offsets or [0.5] * len(features)

    def loss(model, items, rng, train):
        xs, ys = [], []
        for i in items:
            length = len(features[i])
            start, stop = crop_window(length, max_len, CROP_RATIO if segment_head else None, rng) if train else (0, length)
            if segment_head and train:  # up to 10 draws for a window that keeps a segment (as the reference)
                for _ in range(9):
                    if len(crop_segments(targets[i], start, stop, offsets[i])) or not len(targets[i]):
                        break
                    start, stop = crop_window(length, max_len, CROP_RATIO, rng)
            xs.append(features[i][start:stop])
            ys.append(crop_segments(targets[i], start, stop, offsets[i]) if segment_head else targets[i][start:stop])
        device = next(model.parameters()).device
        x, mask = pad(xs)
        x, mask = x.to(device), mask.to(device)
        if segment_head:
            return model.loss(x, mask, ys)
        y, _ = pad([t[:, None] for t in ys])
        return step_loss(model(x, mask), y[..., 0].long().to(device), mask, config.background_weight, config.budget)

    return loss


def detect(run: Run, data: StepData, updates: list | None = None) -> list[Detection]:
    """Scored segments in seconds for every video of `data`: post-processing of per-step probabilities
    (step heads) or decoding and soft-NMS (segment heads). Skip heads' per-step 0/1 updates are appended to
    `updates` when given."""
    out = []
    if run.model.kind == "steps":
        for vid, probs, grid in zip(data.ids, predict_steps(run.model, data.features, updates=updates), data.grids):
            for start, end, label, score in segments_from_probs(probs, *grid.cells(), run.config.smooth, run.config.threshold):
                out.append(Detection(vid, start, end, run.classes[label - 1], score))
        return out
    run.model.eval()
    device = next(run.model.parameters()).device
    for at in range(0, len(data.ids), 8):
        x, mask = pad(data.features[at : at + 8])
        for k, found in enumerate(run.model.detect(x.to(device), mask.to(device))):
            grid = data.grids[at + k]
            for start, end, label, score in found:
                s, e = grid.to_seconds([start, end])
                if e > s:
                    out.append(Detection(data.ids[at + k], float(s), float(e), run.classes[label], score))
    return out


def ground_truth(annotations: Annotations, ids: list[str]) -> list[Detection]:
    return [Detection(v, s.start, s.end, s.label) for v in ids for s in annotations.videos[v].segments]


def train_detection(
    store: str | Path, annotations_path: str | Path, config: TrainConfig, out: str | Path,
    ignore_missing: bool = False, on_epoch=None, progress: bool = False,
) -> tuple[Run, dict]:
    """Train on the annotated videos of `store` for the protocol's epochs and score the EMA weights on others:
    the subsets `config` names, else the file's own (seqmodels.detection.subsets: training / validation, or
    THUMOS's validation / test), else a random share; write the run folder. The saved config records the subsets
    and the tIoU thresholds used (THUMOS's for a THUMOS-shaped file unless `config.tiou` says), the run the ids
    of its training videos."""
    from featx.backbones import resolve_device

    store = open_store(store)
    config, columns = streams.resolve(config, store.config.stream, store)
    annotations = load_annotations(annotations_path)
    ids = check_videos(annotations, store.ok_ids(), ignore_missing)
    classes = annotations.classes
    if not classes:
        raise FeatxError(f"{annotations.source}: no annotated segments to learn from")
    split = choose_split(annotations, ids, config.train_subset, config.eval_subset, config.val_fraction, config.seed)
    train_ids, val_ids = split.train, split.eval
    if not train_ids or not val_ids:
        raise FeatxError(f"need videos to train and to score on; got {len(train_ids)} ({split.train_subset or 'random'}) "
                         f"and {len(val_ids)} ({split.eval_subset or 'random'}): name them with --train-subset / --eval-subset")
    _require_segments(annotations, val_ids, split.eval_subset or "held-out")
    config = dataclasses.replace(config, train_subset=split.train_subset, eval_subset=split.eval_subset,
                                 tiou=config.tiou or default_tiou(annotations))
    data = load_steps(store, ids, columns)
    _check_inside(annotations, data)
    train_set, val_set = data.subset(train_ids), data.subset(val_ids)
    in_dim = train_set.features[0].shape[1]

    def fit_one(cols: slice, on_epoch, desc: str):
        features = train_set.columns(cols).features
        torch.manual_seed(config.seed)
        model = single_head(config, features[0].shape[1], classes).to(resolve_device(config.device))
        targets = (segment_targets if model.kind == "segments" else cell_targets)(train_set, annotations, classes)
        loss = detection_loss(model, features, targets, config, [g.half_window_steps for g in train_set.grids])
        return fit(model, list(range(len(train_ids))), loss, config.protocol, on_epoch=on_epoch, progress=progress, desc=desc)

    model, history = streams.fit_streams(config, in_dim, fit_one, on_epoch)
    run = Run(model, config, classes, in_dim, store.config.to_dict(), history, train_ids)
    updates = []
    detections = detect(run, val_set, updates)
    result = detection_map(ground_truth(annotations, val_ids), detections, config.tiou, classes,
                           ignore=annotations.ignore_regions(val_ids))
    metrics = {"videos": len(val_ids), "train_videos": len(train_ids), "train_subset": split.train_subset,
               "eval_subset": split.eval_subset, "split": split.describe(), **result.to_dict(),
               "notes": sample_notes(annotations, val_ids, classes)}
    if updates:
        metrics["update_fraction"] = float(np.concatenate(updates).mean())
    save_run(run, out)
    out = Path(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "history.json").write_text(json.dumps(history, indent=1))
    shown = val_ids[:4]
    timeline(annotations, [d for d in detections if d.video_id in set(shown)], shown, out / "timeline.png")
    return run, metrics


FEW_VIDEOS = 5  # fewer scored videos than this: a mAP that moves by whole segments


def sample_notes(annotations: Annotations, scored: list[str], classes: list[str]) -> list[str]:
    """What makes a mAP on these videos less than it seems, one line each: very few videos, classes absent."""
    notes = []
    if len(scored) < FEW_VIDEOS:
        notes.append(f"scored on only {len(scored)} videos: one segment more or less moves the mAP a lot")
    shown = {s.label for v in scored for s in annotations.videos[v].segments}
    absent = [c for c in classes if c not in shown]
    if absent:
        notes.append(f"{len(absent)} of {len(classes)} classes have no segment in the scored videos "
                     f"({', '.join(absent[:3])}{'...' if len(absent) > 3 else ''}): the mAP averages the other "
                     f"{len(classes) - len(absent)}")
    return notes


def load_detection_run(folder: str | Path, device: str = "cpu") -> Run:
    return load_run(folder, build_head, device)


def results_json(detections: list[Detection], ids: list[str]) -> dict:
    """The ActivityNet results format that the official evaluation reads."""
    results = {v: [] for v in ids}
    for d in detections:
        results[d.video_id].append({"label": d.label, "score": d.score, "segment": [d.start, d.end]})
    return {"version": RESULTS_VERSION, "results": results, "external_data": {}}


def read_results(path: str | Path) -> list[Detection]:
    data = json.loads(Path(path).read_text())
    return [Detection(v, float(r["segment"][0]), float(r["segment"][1]), r["label"], float(r["score"]))
            for v, rows in data["results"].items() for r in rows]


def _require_segments(annotations: Annotations, ids: list[str], name: str) -> None:
    """mAP needs ground truth: refuse a scored set of videos without any annotated segment."""
    if not any(annotations.videos[v].segments for v in ids):
        raise FeatxError(f"{annotations.source}: the {name} videos have no annotated segments to score against")


ALL = "all"  # --subset all: every annotated video


def _subset_ids(annotations: Annotations, store_ids: set[str], subset: str | None, ignore_missing: bool,
                run: Run | None = None) -> list[str]:
    """The annotated videos of `subset` ('all': every one); None: the run's scored subset, or for a run scored on
    a random share, the annotated videos it did not train on."""
    ids = check_videos(annotations, store_ids, ignore_missing)
    if subset is None and run is not None and run.config.eval_subset is None and run.train_videos is not None:
        trained = set(run.train_videos)
        chosen = [v for v in ids if v not in trained]
        if not chosen:
            raise FeatxError(f"{annotations.source}: every annotated video was used in training; name --subset")
        return chosen
    if subset is None:
        subset = (run.config.eval_subset if run is not None else None) or "validation"
    name = None if subset == ALL else subset_name(subset)
    chosen = [v for v in ids if name is None or annotations.videos[v].subset == name]
    if not chosen:
        raise FeatxError(f"{annotations.source}: no annotated videos in subset {subset!r} (use --subset all?)")
    return chosen


def predict_detection(run_dir: str | Path, store: str | Path, subset: str | None = None,
                      annotations_path: str | Path | None = None) -> dict:
    """ActivityNet results for every video of `store`, or with `annotations_path` only for the videos of one
    annotation subset (`subset`; None: the one the run was scored on) and the classes its ground truth has (all
    classes when it has none, e.g. a testing subset), so the official evaluator scores the file exactly as
    `evaluate` does."""
    run, store = load_detection_run(run_dir), open_store(store)
    columns = run_columns(run, store)
    store_ids = store.ok_ids()
    if annotations_path is None:
        if subset is not None:
            raise FeatxError("--subset needs --annotations (the file that names the subsets)")
        data = load_steps(store, sorted(store_ids), columns)
        return results_json(detect(run, data), data.ids)
    annotations = load_annotations(annotations_path)
    data = load_steps(store, _subset_ids(annotations, store_ids, subset, True, run), columns)
    # classes the subset's ground truth never shows count in no AP (evaluate); the official code fails on them
    shown = {s.label for v in data.ids for s in annotations.videos[v].segments}
    detections = detect(run, data)
    return results_json([d for d in detections if d.label in shown] if shown else detections, data.ids)


def evaluate_detection(
    run_dir: str | Path, store: str | Path, annotations_path: str | Path, subset: str | None = None,
    thresholds=None, ignore_missing: bool = False,
) -> "Evaluation":
    """mAP of the run on the annotated videos of `subset` ('all': every annotated video; None: those the run was
    scored on) at `thresholds` (None: the run's own tIoUs), with the videos scored and notes on the sample."""
    run, store = load_detection_run(run_dir), open_store(store)
    columns = run_columns(run, store)
    annotations = load_annotations(annotations_path)
    chosen = _subset_ids(annotations, store.ok_ids(), subset, ignore_missing, run)
    _require_segments(annotations, chosen, subset or run.config.eval_subset or "held-out")
    detections = detect(run, load_steps(store, chosen, columns))
    thresholds = thresholds or run.config.tiou or default_tiou(annotations)
    result = detection_map(ground_truth(annotations, chosen), detections, thresholds, annotations.classes,
                           ignore=annotations.ignore_regions(chosen))
    return Evaluation(result, chosen, subset, sample_notes(annotations, chosen, run.classes))


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """`evaluate_detection`'s report."""

    map: DetectionMAP
    videos: list[str]  # the videos scored
    subset: str | None  # as asked (None: the run's own scored videos)
    notes: list[str]  # sample_notes

    def to_dict(self) -> dict:
        return {"videos": len(self.videos), "subset": self.subset, **self.map.to_dict(), "notes": self.notes}


def shown_predictions(detections: list[Detection], truth_count: int) -> list[Detection]:
    """The predictions a timeline shows: the best `truth_count` (about as many as the ground truth has)."""
    return sorted(detections, key=lambda d: -d.score)[: max(truth_count, 1)]


def timeline(annotations: Annotations, detections: list[Detection], ids: list[str], path: str | Path) -> None:
    """Ground truth (top bar) against the best-scored predictions (bottom bar, as many as the ground truth
    has segments, shaded by score) per video, coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = annotations.classes
    colours = plt.get_cmap("tab10")
    truth = sum(len(annotations.videos[v].segments) for v in ids)
    shown = shown_predictions(detections, truth)
    fig, axes = plt.subplots(len(ids), 1, figsize=(10, 1.2 * len(ids) + 0.8), squeeze=False)
    for ax, vid in zip(axes[:, 0], ids):
        for s in annotations.videos[vid].segments:
            ax.broken_barh([(s.start, s.end - s.start)], (1, 0.8), color=colours(classes.index(s.label) % 10))
        for d in (d for d in shown if d.video_id == vid):
            ax.broken_barh([(d.start, d.end - d.start)], (0, 0.8), color=colours(classes.index(d.label) % 10),
                           alpha=float(np.clip(0.25 + 0.75 * d.score, 0, 1)), edgecolor="black", linewidth=0.4)
        ax.set_yticks([0.4, 1.4], ["predicted", "truth"])
        ax.set_title(vid, fontsize=8, loc="left")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(k % 10)) for k in range(len(classes))]
    fig.legend(handles, classes, loc="lower center", ncol=min(len(classes), 6), fontsize=8)
    lowest = min((d.score for d in shown), default=0.0)
    fig.suptitle(f"the {len(shown)} best-scored predictions (score >= {lowest:.2f}; darker = higher)", fontsize=9)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
