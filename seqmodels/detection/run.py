"""Temporal activity detection on a store, end to end: train a per-step head, predict ActivityNet results,
evaluate mAP. The CLI's train-head / predict / evaluate call these when the task is detection.

A detection run folder holds config.json and checkpoint.pt (with "task": "detection"), metrics.json (mAP
per tIoU threshold on the validation videos), history.json and timeline.png.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from featx.backbones import resolve_device
from featx.errors import FeatxError
from featx.store import load_features, load_sequences, ok_video_ids
from seqmodels.detection.annotations import Annotations, check_videos, load_annotations, step_targets
from seqmodels.detection.actionformer import ActionFormerHead
from seqmodels.detection.heads import MontesLSTM, StepLinear
from seqmodels.detection.map import ACTIVITYNET_TIOU, Detection, DetectionMAP, detection_map
from seqmodels.detection.postprocess import segments_from_probs
from seqmodels.detection.train import evaluate_loss, montes_loss, predict_steps, segment_loss, train_epoch

RUN_FORMAT_VERSION = 1
DETECTION_HEADS = {"montes-lstm": MontesLSTM, "actionformer": ActionFormerHead, "linear": StepLinear}
RESULTS_VERSION = "featx detection results 1"


@dataclass(frozen=True)
class DetectionConfig:
    head: str = "montes-lstm"
    head_options: dict = field(default_factory=dict)  # hidden=, layers=, dropout=
    epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    background_weight: float = 0.3  # loss weight of background steps (Montes et al.)
    smooth: int = 5  # mean-filter window (steps) before thresholding
    threshold: float = 0.5  # a step is active when 1 - P(background) reaches this
    val_fraction: float = 0.25  # when the annotations name no subsets
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.head not in DETECTION_HEADS:
            raise FeatxError(f"--head {self.head!r} is not a detection head; choose from {', '.join(DETECTION_HEADS)}")


@dataclass
class DetectionRun:
    model: torch.nn.Module
    config: DetectionConfig
    classes: list[str]  # action classes; step class k + 1 is classes[k], 0 is background
    in_dim: int
    store_config: dict | None
    history: list[dict] = field(default_factory=list)


@dataclass
class StepData:
    """Per-step features and times of some videos of a store."""

    ids: list[str]
    features: list[np.ndarray]  # (T, D)
    t_start: list[np.ndarray]  # (T,)
    t_end: list[np.ndarray]

    def subset(self, keep: list[str]) -> "StepData":
        pos = {v: i for i, v in enumerate(self.ids)}
        idx = [pos[v] for v in keep]
        return StepData([self.ids[i] for i in idx], [self.features[i] for i in idx],
                        [self.t_start[i] for i in idx], [self.t_end[i] for i in idx])


def load_steps(store: str | Path, video_ids: list[str] | None = None) -> StepData:
    """Features and step times of `video_ids` (all the store's videos when None), in that order."""
    feats = load_sequences(store, video_ids)
    times = load_features(store, columns=["video_id", "step", "t_start", "t_end"], video_ids=video_ids)
    times = times.sort_values(["video_id", "step"], kind="stable")
    grouped = {vid: g for vid, g in times.groupby("video_id", sort=False)}
    ids = list(video_ids) if video_ids is not None else sorted(feats)
    return StepData(ids, [feats[v] for v in ids], [grouped[v].t_start.to_numpy() for v in ids],
                    [grouped[v].t_end.to_numpy() for v in ids])


def _split(annotations: Annotations, ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    subsets = {annotations.videos[v].subset for v in ids}
    if {"training", "validation"} <= subsets:
        return ([v for v in ids if annotations.videos[v].subset == "training"],
                [v for v in ids if annotations.videos[v].subset == "validation"])
    order = np.random.default_rng(seed).permutation(len(ids))
    n_val = max(1, round(len(ids) * val_fraction))
    return [ids[i] for i in sorted(order[n_val:])], [ids[i] for i in sorted(order[:n_val])]


def _step_clock(t_start: np.ndarray, t_end: np.ndarray) -> tuple[float, float]:
    """(time of step 0's start, seconds per step): steps are uniform at a store's --fps."""
    return float(t_start[0]), float(np.median(t_end - t_start))


def _targets(model, data: StepData, annotations: Annotations, classes: list[str]) -> list[np.ndarray]:
    """Per-step classes (0 background) for step heads; (n, 3) start, end (in steps), class for segment heads."""
    if model.kind == "steps":
        return [step_targets(s, e, annotations.videos[v].segments, classes) for v, s, e in zip(data.ids, data.t_start, data.t_end)]
    out = []
    for v, s, e in zip(data.ids, data.t_start, data.t_end):
        t0, dt = _step_clock(s, e)
        segs = annotations.videos[v].segments
        out.append(np.array([[(g.start - t0) / dt, (g.end - t0) / dt, classes.index(g.label)] for g in segs], float).reshape(-1, 3))
    return out


def _loss_fn(model, config: DetectionConfig):
    return montes_loss(config.background_weight) if model.kind == "steps" else segment_loss


def detect(run: DetectionRun, data: StepData) -> list[Detection]:
    """Scored segments for every video of `data`, after the run's post-processing (step heads) or decoding
    and soft-NMS (segment heads)."""
    out = []
    if run.model.kind == "steps":
        for vid, probs, s, e in zip(data.ids, predict_steps(run.model, data.features), data.t_start, data.t_end):
            for start, end, label, score in segments_from_probs(probs, s, e, run.config.smooth, run.config.threshold):
                out.append(Detection(vid, start, end, run.classes[label - 1], score))
        return out
    from seqmodels.data import pad

    run.model.eval()
    device = next(run.model.parameters()).device
    for at in range(0, len(data.ids), 16):
        x, mask = pad(data.features[at : at + 16])
        for k, found in enumerate(run.model.detect(x.to(device), mask.to(device))):
            i = at + k
            t0, dt = _step_clock(data.t_start[i], data.t_end[i])
            for start, end, label, score in found:
                out.append(Detection(data.ids[i], t0 + start * dt, t0 + end * dt, run.classes[label], score))
    return out


def ground_truth(annotations: Annotations, ids: list[str]) -> list[Detection]:
    return [Detection(v, s.start, s.end, s.label) for v in ids for s in annotations.videos[v].segments]


def train_detection(
    store: str | Path, annotations_path: str | Path, config: DetectionConfig, out: str | Path,
    ignore_missing: bool = False, on_epoch=None, store_config: dict | None = None,
) -> tuple[DetectionRun, dict]:
    """Train on the annotated videos of `store` ('training' subset, or all but a validation share), keep the
    epoch of lowest validation loss, and write the run folder with the validation mAP."""
    annotations = load_annotations(annotations_path)
    ids = check_videos(annotations, ok_video_ids(store), ignore_missing)
    classes = annotations.classes
    if not classes:
        raise FeatxError(f"{annotations.source}: no annotated segments to learn from")
    train_ids, val_ids = _split(annotations, ids, config.val_fraction, config.seed)
    if not train_ids or not val_ids:
        raise FeatxError(f"need videos to train and to validate on; got {len(train_ids)} and {len(val_ids)}")
    data = load_steps(store, ids)
    train_set, val_set = data.subset(train_ids), data.subset(val_ids)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    in_dim = train_set.features[0].shape[1]
    model = _build(config, in_dim, len(classes)).to(device)
    train_y, val_y = _targets(model, train_set, annotations, classes), _targets(model, val_set, annotations, classes)
    loss_fn = _loss_fn(model, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    best, best_state, history = None, None, []
    for epoch in range(1, config.epochs + 1):
        fit = train_epoch(model, optimizer, train_set.features, train_y, config.batch_size, loss_fn, rng)
        val = evaluate_loss(model, val_set.features, val_y, loss_fn)
        history.append({"epoch": epoch, "train_loss": fit, "val_loss": val})
        if on_epoch:
            on_epoch(history[-1])
        if best is None or val < best:
            best, best_state = val, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    run = DetectionRun(model.eval(), config, classes, in_dim, store_config, history)
    result = detection_map(ground_truth(annotations, val_ids), detect(run, val_set), known=classes)
    metrics = {"videos": len(val_ids), **result.to_dict()}
    save_detection_run(run, out)
    out = Path(out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "history.json").write_text(json.dumps(history, indent=1))
    timeline(annotations, detect(run, val_set.subset(val_ids[:4])), val_ids[:4], out / "timeline.png")
    return run, metrics


def _build(config: DetectionConfig, in_dim: int, actions: int) -> torch.nn.Module:
    """Step heads output K + 1 classes (0: background); segment heads K."""
    head = DETECTION_HEADS[config.head]
    return head(in_dim, actions + (1 if head.kind == "steps" else 0), **config.head_options)


def save_detection_run(run: DetectionRun, folder: str | Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": RUN_FORMAT_VERSION, "task": "detection", "train": dataclasses.asdict(run.config),
            "classes": run.classes, "in_dim": run.in_dim, "store_config": run.store_config}
    (folder / "config.json").write_text(json.dumps(meta, indent=1))
    torch.save({**meta, "state_dict": run.model.state_dict(), "history": run.history}, folder / "checkpoint.pt")


def run_task(folder: str | Path) -> str:
    """'detection' or 'classification', from a run folder's config.json."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FeatxError(f"{folder} is not a training run (no config.json); train one with `featx train-head`")
    return json.loads(path.read_text()).get("task", "classification")


def load_detection_run(folder: str | Path, device: str = "cpu") -> DetectionRun:
    ckpt = torch.load(Path(folder) / "checkpoint.pt", map_location="cpu", weights_only=True)
    if ckpt.get("format_version", 0) > RUN_FORMAT_VERSION:
        raise FeatxError(f"{folder} was written by a newer featx (run format {ckpt['format_version']})")
    config = DetectionConfig(**ckpt["train"])
    model = _build(config, ckpt["in_dim"], len(ckpt["classes"]))
    model.load_state_dict(ckpt["state_dict"])
    model.to(resolve_device(device)).eval()
    return DetectionRun(model, config, ckpt["classes"], ckpt["in_dim"], ckpt["store_config"], ckpt.get("history", []))


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


def predict_detection(run_dir: str | Path, store: str | Path) -> dict:
    """ActivityNet results for every video of `store`."""
    from seqmodels.classify import check_store_matches

    run = load_detection_run(run_dir)
    check_store_matches(run, store)
    data = load_steps(store, sorted(ok_video_ids(store)))
    return results_json(detect(run, data), data.ids)


def evaluate_detection(
    run_dir: str | Path, store: str | Path, annotations_path: str | Path, subset: str | None = "validation",
    thresholds=ACTIVITYNET_TIOU, ignore_missing: bool = False,
) -> DetectionMAP:
    """mAP of the run on the annotated videos of `subset` (all annotated videos when None)."""
    from seqmodels.classify import check_store_matches

    run = load_detection_run(run_dir)
    check_store_matches(run, store)
    annotations = load_annotations(annotations_path)
    ids = check_videos(annotations, ok_video_ids(store), ignore_missing)
    chosen = [v for v in ids if subset is None or annotations.videos[v].subset == subset]
    if not chosen:
        raise FeatxError(f"{annotations.source}: no annotated videos in subset {subset!r} (use --subset all?)")
    return detection_map(ground_truth(annotations, chosen), detect(run, load_steps(store, chosen)), thresholds, annotations.classes)


def timeline(annotations: Annotations, detections: list[Detection], ids: list[str], path: str | Path) -> None:
    """Ground truth (top bar) against predictions (bottom bar) per video, coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = annotations.classes
    colours = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(ids), 1, figsize=(10, 1.2 * len(ids) + 0.6), squeeze=False)
    for ax, vid in zip(axes[:, 0], ids):
        for s in annotations.videos[vid].segments:
            ax.broken_barh([(s.start, s.end - s.start)], (1, 0.8), color=colours(classes.index(s.label) % 10))
        for d in (d for d in detections if d.video_id == vid):
            ax.broken_barh([(d.start, d.end - d.start)], (0, 0.8), color=colours(classes.index(d.label) % 10), alpha=0.4 + 0.6 * d.score)
        ax.set_yticks([0.4, 1.4], ["predicted", "truth"])
        ax.set_title(vid, fontsize=8, loc="left")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours(k % 10)) for k in range(len(classes))]
    fig.legend(handles, classes, loc="lower center", ncol=len(classes), fontsize=8)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
