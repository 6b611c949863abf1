"""Multi-label classification at every step, as Charades is scored (Sigurdsson et al. 2016; Campos et al.
2018, Table 3): several classes may hold at once, each step's classes are predicted each on its own (sigmoid,
binary cross-entropy), and mAP over classes is scored on evenly spread steps of every video.

Per-step targets come from
- a labels CSV naming several classes per video (a `labels` column separated by `|`, or one row per
  (video, label)): every step of a video carries its classes;
- ActivityNet-style annotations: a step carries the classes of the segments that cover at least half of its
  cell (the half-cell rule of the detection heads, seqmodels.detection.annotations), several at once.

A run folder (seqmodels.runs) of task `multilabel` holds config.json, checkpoint.pt, metrics.json (the
validation split's mAP, which no training decision looked at), history.json and curves.png.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from featx.errors import FeatxError
from featx.store import open_store
from seqmodels import plots, streams
from seqmodels.data import MISSING, TRAIN_SPLITS, VAL_SPLITS, pad, read_label_csv, uniform_steps
from seqmodels.detection.annotations import Segment, load_annotations
from featx.timegrid import TimeGrid
from seqmodels.detection.step_data import load_steps
from seqmodels.detection.subsets import thumos_shaped
from seqmodels.registry import build_head, find_head
from seqmodels.heads.skip_rnn import budget_loss
from seqmodels.metrics import multilabel_map
from seqmodels.protocol import fit
from seqmodels.runs import Run, TrainConfig, load_run, run_columns, save_run

SEPARATOR = "|"  # several labels of one video in one CSV cell
EVAL_STEPS = 25  # Charades' localisation protocol scores 25 evenly spread frames of every video
RESULTS_COLUMNS = ["video_id", "step", "t_start", "t_end", "label", "probability"]


@dataclass
class StepTargets:
    """Videos as feature sequences with a 0/1 target per step and class."""

    ids: list[str]
    features: list[np.ndarray]  # each (T_i, D)
    targets: list[np.ndarray]  # each (T_i, C) float32
    grids: list[TimeGrid]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index) -> "StepTargets":
        return StepTargets(*([items[i] for i in index] for items in (self.ids, self.features, self.targets, self.grids)))

    def columns(self, cols: slice) -> "StepTargets":
        """The same videos with only these feature columns (one stream of several; views, no copies)."""
        return StepTargets(self.ids, [f[:, cols] for f in self.features], self.targets, self.grids)


def read_label_sets(path: str | Path) -> pd.DataFrame:
    """A labels CSV as one row per video: video_id, labels (sorted tuple), split (when the file has one).
    A `labels` (or `label`) cell may name several classes separated by `|`; a video may also have one row per
    label (the rows must agree on its split)."""
    table = read_label_csv(path)
    column = "labels" if "labels" in table.columns else "label"
    if "video_id" not in table.columns or column not in table.columns:
        raise FeatxError(f"--labels {path}: needs columns video_id and label (or labels, several separated by '|')")
    rows = {}
    for line, row in enumerate(table.itertuples(index=False), start=2):
        vid = str(row.video_id).strip()
        cells = [c.strip() for c in str(getattr(row, column)).split(SEPARATOR)]
        names = [c for c in cells if c.lower() not in MISSING]
        if not vid or not names:
            raise FeatxError(f"--labels {path}: line {line} has no video_id or label")
        split = str(row.split).strip().lower() if "split" in table.columns else None
        if split is not None and split not in TRAIN_SPLITS | VAL_SPLITS:
            raise FeatxError(f"--labels {path}: line {line}: unknown split {split!r} (use train / val)")
        labels, known_split = rows.setdefault(vid, (set(), split))
        if split != known_split:
            raise FeatxError(f"--labels {path}: line {line}: video {vid!r} is in split {known_split!r} and {split!r}")
        labels.update(names)
    out = pd.DataFrame({"video_id": list(rows), "labels": [tuple(sorted(v[0])) for v in rows.values()]})
    if "split" in table.columns:
        out["split"] = [v[1] for v in rows.values()]
    return out


def has_several_labels(path: str | Path) -> bool:
    """Whether a labels CSV gives some video more than one class (a multi-label problem), or says so with a
    `labels` column."""
    try:
        if "labels" in pd.read_csv(path, dtype=str, nrows=0).columns:
            return True
        return bool((read_label_sets(path).labels.map(len) > 1).any())
    except (FeatxError, OSError, ValueError, UnicodeDecodeError):
        return False  # missing or malformed: the classification reader gives the error


def _cover(cells: tuple[np.ndarray, np.ndarray], segments: list[Segment], classes: list[str]) -> np.ndarray:
    """(T, C) 0/1: class c holds at a step when one of its segments covers at least half of the step's cell."""
    start, end = cells
    length = np.maximum(end - start, 1e-9)
    index = {c: k for k, c in enumerate(classes)}
    target = np.zeros((len(start), len(classes)), np.float32)
    for seg in segments:
        cover = np.clip(np.minimum(end, seg.end) - np.maximum(start, seg.start), 0, None) / length
        target[cover >= 0.5 - 1e-9, index[seg.label]] = 1.0
    return target


def load_targets(
    store, labels: str | Path | None = None, annotations: str | Path | None = None, columns=("feature",),
    classes: list[str] | None = None, ignore_missing: bool = False,
) -> tuple[StepTargets, list[str], dict[str, str | None]]:
    """The store's labelled videos with per-step targets, from `labels` (CSV) or `annotations`. Returns
    (data, classes, each video's split: 'train', 'val' or None). `classes` fixes the class order (a run's)."""
    if (labels is None) == (annotations is None):
        raise FeatxError("multi-label training needs --labels CSV or --annotations (one of them)")
    in_store = set(store.ok_ids())
    if labels is not None:
        table = read_label_sets(labels)
        sets = dict(zip(table.video_id, table.labels))
        splits = dict(zip(table.video_id, table.split)) if "split" in table.columns else {}
        source = f"--labels {labels}"
    else:
        parsed = load_annotations(annotations)
        sets = {v: tuple(sorted({s.label for s in a.segments})) for v, a in parsed.videos.items()}
        # THUMOS's convention: train on validation, score on test (seqmodels.detection.subsets)
        thumos = thumos_shaped(parsed)
        splits = {v: ("training" if thumos and a.subset == "validation" else a.subset) for v, a in parsed.videos.items()}
        source = parsed.source
    absent = sorted(set(sets) - in_store)
    if absent and not ignore_missing:
        raise FeatxError(f"{source}: video {absent[0]!r} is not in the store ({len(absent)} such; or --ignore-missing)")
    ids = sorted(set(sets) & in_store)
    if not ids:
        raise FeatxError(f"{source}: no labelled video is in the store: do the video_id values match the store's?")
    classes = classes or sorted({c for v in ids for c in sets[v]})
    unknown = sorted({c for v in ids for c in sets[v]} - set(classes))
    if unknown:
        raise FeatxError(f"{source}: classes {unknown[:5]} are not among the run's classes")
    data = load_steps(store, ids, columns)
    if labels is not None:
        index = {c: k for k, c in enumerate(classes)}
        targets = []
        for vid, feats in zip(data.ids, data.features):
            row = np.zeros(len(classes), np.float32)
            row[[index[c] for c in sets[vid]]] = 1.0
            targets.append(np.repeat(row[None], len(feats), axis=0))
    else:
        targets = [_cover(grid.cells(), parsed.videos[vid].segments, classes) for vid, grid in zip(data.ids, data.grids)]
    split = {v: _split_name(splits.get(v)) for v in ids}
    return StepTargets(data.ids, data.features, targets, data.grids), classes, split


def _split_name(value: str | None) -> str | None:
    value = (value or "").lower()
    return "train" if value in TRAIN_SPLITS else "val" if value in VAL_SPLITS else None


def train_val_split(data: StepTargets, split: dict, val_fraction: float, seed: int) -> tuple[StepTargets, StepTargets]:
    """By the labels' split column / the annotations' subsets when they name both sides, else a seeded random
    split (`val_fraction` of the videos, at least one on each side)."""
    named = [split[v] for v in data.ids]
    if "train" in named and "val" in named:
        train = [i for i, s in enumerate(named) if s == "train"]
        val = [i for i, s in enumerate(named) if s == "val"]
    else:
        if len(data) < 2:
            raise FeatxError(f"need at least 2 videos to split into training and validation, not {len(data)}")
        order = np.random.default_rng(seed).permutation(len(data))
        n_val = min(max(1, round(val_fraction * len(data))), len(data) - 1)
        train, val = sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())
    return data.subset(train), data.subset(val)


def multilabel_loss(out, targets: torch.Tensor, mask: torch.Tensor, budget: float) -> torch.Tensor:
    """Binary cross-entropy of every class at every real step, averaged (+ the skip heads' budget loss)."""
    loss = F.binary_cross_entropy_with_logits(out.logits[mask], targets[mask])
    if out.updates is not None:
        loss = loss + budget_loss(out.updates, budget)
    return loss


def _batch(data: StepTargets, items: list[int], device, windows=None):
    """x (B, T, D), targets (B, T, C), mask (B, T) of some videos, each cut to its window when given."""
    cut = windows or [(0, len(data.features[i])) for i in items]
    x, mask = pad([data.features[i][a:b] for i, (a, b) in zip(items, cut)])
    y, _ = pad([data.targets[i][a:b] for i, (a, b) in zip(items, cut)])
    return x.to(device), y.to(device), mask.to(device)


def loss_function(data: StepTargets, config: TrainConfig, device):
    """loss(model, items, rng, train) for seqmodels.protocol.fit: with --max-steps, a random window of that many
    steps of every video while training (whole videos otherwise and when scoring)."""
    from seqmodels.detection.run import crop_window

    def loss(model, items, rng, train):
        windows = None
        if train and config.max_steps:
            windows = [crop_window(len(data.features[i]), config.max_steps, None, rng) for i in items]
        x, y, mask = _batch(data, items, device, windows)
        return multilabel_loss(model(x, mask), y, mask, config.budget)

    return loss


def predict_probabilities(model: torch.nn.Module, data: StepTargets, batch_size: int = 32):
    """Per video: (T, C) class probabilities and, for skip heads, (T,) 0/1 updates (else None)."""
    device = next(model.parameters()).device
    model.eval()
    probs, updates = [], []
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            items = list(range(start, min(start + batch_size, len(data))))
            x, _, mask = _batch(data, items, device)
            out = model(x, mask)
            p = torch.sigmoid(out.logits).cpu().numpy()
            for row, i in enumerate(items):
                n = len(data.features[i])
                probs.append(p[row, :n])
                updates.append(None if out.updates is None else out.updates[row, :n].cpu().numpy())
    return probs, updates


def score(probs: list[np.ndarray], data: StepTargets, classes: list[str]) -> dict:
    """Charades-style mAP on EVAL_STEPS evenly spread steps of every video (`mAP`, with each class's AP), and the
    video-level mAP of the mean probability over all steps against the classes present anywhere in the video."""
    picks = [uniform_steps(len(p), EVAL_STEPS) for p in probs]
    steps = multilabel_map(np.concatenate([p[k] for p, k in zip(probs, picks)]),
                           np.concatenate([t[k] for t, k in zip(data.targets, picks)]), classes)
    videos = multilabel_map(np.stack([p.mean(0) for p in probs]), np.stack([t.max(0) for t in data.targets]), classes)
    return {"mAP": steps["mAP"], "video_mAP": videos["mAP"], "AP": steps["AP"], "classes": list(classes),
            "classes_scored": steps["classes_scored"], "videos": len(probs), "steps_scored": steps["rows"],
            "steps_per_video": EVAL_STEPS}


def _report(data: StepTargets, classes: list[str], config: TrainConfig, device):
    """Per-epoch validation loss and mAP of the EMA weights (reported; no decision looks at them)."""
    val_loss = loss_function(data, config, device)

    def report(model) -> dict:
        model.eval()
        with torch.no_grad():
            loss = float(np.mean([float(val_loss(model, list(range(i, min(i + config.batch_size, len(data)))), None, False))
                                  for i in range(0, len(data), config.batch_size)]))
        probs, updates = predict_probabilities(model, data, config.batch_size)
        row = {"val_loss": loss, "val_mAP": score(probs, data, classes)["mAP"]}
        if updates and updates[0] is not None:
            row["val_update_fraction"] = float(np.concatenate(updates).mean())
        return row

    return report


def _build(config: TrainConfig, in_dim: int, classes: list[str]) -> torch.nn.Module:
    if config.task != "multilabel":
        raise FeatxError(f"this is a {config.task} run, not a multilabel run")
    return streams.build(config, in_dim, lambda width: build_head(config.head, width, len(classes), task="multilabel",
                                                                   **config.head_options))


def train_multilabel(
    store, config: TrainConfig, out: str | Path, labels=None, annotations=None, ignore_missing: bool = False,
    on_epoch=None, progress: bool = True,
) -> tuple[Run, dict]:
    """Train a per-step multi-label head on `store` and write the run folder `out`."""
    from featx.backbones import resolve_device

    out, store = Path(out), open_store(store)
    config, columns = streams.resolve(config, store.config.stream, store)
    data, classes, split = load_targets(store, labels, annotations, columns, ignore_missing=ignore_missing)
    build_head(config.head, 1, max(1, len(classes)), task="multilabel", **config.head_options)  # bad head: fail first
    if not classes:
        raise FeatxError("the labels or annotations name no class")
    train_set, val_set = train_val_split(data, split, config.val_fraction, config.seed)
    device = resolve_device(config.device)
    in_dim = data.features[0].shape[1]

    def fit_one(cols: slice, on_epoch, desc: str):
        fit_set, val = train_set.columns(cols), val_set.columns(cols)
        torch.manual_seed(config.seed)
        model = build_head(config.head, fit_set.features[0].shape[1], len(classes), task="multilabel",
                           **config.head_options).to(device)
        return fit(model, list(range(len(fit_set))), loss_function(fit_set, config, device), config.protocol,
                   _report(val, classes, config, device), on_epoch, progress, desc=desc)

    model, history = streams.fit_streams(config, in_dim, fit_one, on_epoch)
    run = Run(model, config, classes, in_dim, store.config.to_dict(), history)
    probs, updates = predict_probabilities(model, val_set, config.batch_size)
    metrics = {**score(probs, val_set, classes), "split": "val"}
    if find_head("multilabel", config.head).skip:
        metrics["update_fraction"] = float(np.concatenate(updates).mean())
    save_run(run, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "history.json").write_text(json.dumps(history, indent=1))
    plots.curves(history, out / "curves.png", score="mAP")
    return run, metrics


def load_multilabel_run(folder: str | Path, device: str = "cpu") -> Run:
    return load_run(folder, _build, device)


def evaluate_multilabel(run_dir, store, labels=None, annotations=None, split: str = "val",
                        ignore_missing: bool = False) -> dict:
    """mAP of a run on `split` (val: the run's own validation split; train; all)."""
    if split not in ("val", "train", "all"):
        raise FeatxError(f"--split must be val, train or all, not {split!r}")
    run, store = load_multilabel_run(run_dir), open_store(store)
    data, _, named = load_targets(store, labels, annotations, run_columns(run, store), run.classes, ignore_missing)
    if split != "all":
        train_set, val_set = train_val_split(data, named, run.config.val_fraction, run.config.seed)
        data = val_set if split == "val" else train_set
    probs, updates = predict_probabilities(run.model, data, run.config.batch_size)
    metrics = {**score(probs, data, run.classes), "split": split}
    if find_head("multilabel", run.config.head).skip:
        metrics["update_fraction"] = float(np.concatenate(updates).mean())
    return metrics


def predict_multilabel(run_dir, store) -> pd.DataFrame:
    """Every step of every video of `store`, each class's probability: one row per (video, step, class) with
    the step's times (RESULTS_COLUMNS)."""
    run, store = load_multilabel_run(run_dir), open_store(store)
    steps = load_steps(store, None, run_columns(run, store))
    data = StepTargets(steps.ids, steps.features, [np.zeros((len(f), 0), np.float32) for f in steps.features], steps.grids)
    probs, _ = predict_probabilities(run.model, data, run.config.batch_size)
    times = store.rows(["video_id", "step", "t_start", "t_end"]).sort_values(["video_id", "step"])
    by_video = {vid: rows for vid, rows in times.groupby("video_id", sort=False)}
    frames = []
    for vid, p in zip(data.ids, probs):
        rows = by_video[vid]
        t, c = (a.ravel() for a in np.meshgrid(np.arange(len(p)), np.arange(len(run.classes)), indexing="ij"))
        frames.append(pd.DataFrame({
            "video_id": vid, "step": rows.step.to_numpy()[t], "t_start": rows.t_start.to_numpy()[t],
            "t_end": rows.t_end.to_numpy()[t], "label": np.asarray(run.classes, dtype=object)[c],
            "probability": p.ravel().astype(np.float32),
        }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULTS_COLUMNS)


def metric_lines(metrics: dict, worst: int = 5) -> list[str]:
    """What the CLI prints: the two mAPs, the update share of skip heads, and the classes scored worst."""
    lines = [f"  mAP (Charades, {metrics['steps_per_video']} evenly spread steps per video): {metrics['mAP']:.4f}",
             f"  video mAP (mean probability over the steps): {metrics['video_mAP']:.4f}",
             f"  classes scored: {metrics['classes_scored']} of {len(metrics['classes'])}; videos: {metrics['videos']}"]
    if "update_fraction" in metrics:
        lines.append(f"  state updates: {metrics['update_fraction']:.1%} of the steps")
    scored = sorted((ap, c) for c, ap in metrics["AP"].items() if ap is not None)
    if len(scored) > worst:
        lines.append("  lowest AP: " + ", ".join(f"{c} {ap:.3f}" for ap, c in scored[:worst]))
    return lines
