"""Video classification on a store, end to end: train a head, evaluate a run, predict with it.

The CLI's train-head / evaluate / predict are thin wrappers around these functions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from featx.errors import FeatxError
from seqmodels import plots
from seqmodels.data import (SequenceSet, finite_sequences, load_labelled, match_store_ids, read_labels, train_val_split,
                            uniform_steps)
from seqmodels.metrics import classification_metrics, clip_windows, hit_at_k, video_scores
from seqmodels import streams
from featx.store import Store, open_store
from seqmodels.runs import run_columns
from seqmodels.classifier import Run, TrainConfig, is_skip, load_run, predict_scores, save_run, train



def store_labels(store: Store, labels) -> pd.DataFrame:
    """The labels file (any format read_labels knows) with its ids matched to the store's (match_store_ids)."""
    return match_store_ids(read_labels(labels), store.ok_ids())

def _validation_metrics(run: Run, val: SequenceSet) -> tuple[dict, list]:
    scores, updates = predict_scores(run.model, val, run.config.batch_size, next(run.model.parameters()).device)
    metrics = classification_metrics(val.labels, scores, run.classes)
    if is_skip(run):
        metrics["update_fraction"] = float(np.concatenate(updates).mean())
    return metrics, updates


def train_on_store(
    store: Store | str | Path, labels_csv: str | Path, config: TrainConfig, out: str | Path,
    ignore_missing: bool = False, on_epoch=None, progress: bool = True,
) -> tuple[Run, dict]:
    """Train `config.head` on the labelled videos of `store`; write the run folder `out`:
    config.json, checkpoint.pt, metrics.json, history.json, curves.png, confusion.png (+ skips.png)."""
    out, store = Path(out), open_store(store)
    config, columns = streams.resolve(config, store.config.stream, store)
    data, classes, split = load_labelled(store, store_labels(store, labels_csv), ignore_missing=ignore_missing,
                                         max_steps=config.max_steps, columns=columns)
    if len(classes) < 2:
        raise FeatxError(f"need at least 2 classes to train a classifier; the labels have {classes}")
    train_set, val_set = train_val_split(data, split, config.val_fraction, config.seed)
    run = train(train_set, val_set, classes, config, store.config.to_dict(), on_epoch, progress)
    metrics, updates = _validation_metrics(run, val_set)
    save_run(run, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    (out / "history.json").write_text(json.dumps(run.history, indent=1))
    plots.curves(run.history, out / "curves.png")
    plots.confusion(metrics["confusion"], classes, out / "confusion.png")
    if is_skip(run):
        plots.skips(val_set.ids, updates, out / "skips.png")
    return run, metrics


def _clips(data: SequenceSet, clip_steps: int | None, clips: int) -> tuple[SequenceSet, np.ndarray]:
    """Every video cut into up to `clips` windows of `clip_steps` steps (whole videos when None)."""
    if clip_steps is None:
        return data, np.arange(len(data))
    ids, seqs, labels, owner = [], [], [], []
    for i, (vid, seq) in enumerate(zip(data.ids, data.sequences)):
        for s, e in clip_windows(len(seq), clip_steps, clips):
            ids.append(f"{vid}@{s}")
            seqs.append(seq[s:e])
            labels.append(data.labels[i])
            owner.append(i)
    return SequenceSet(ids, seqs, np.array(labels, dtype=np.int64)), np.array(owner)


def evaluate_run(
    run_dir: str | Path, store: Store | str | Path, labels_csv: str | Path, split: str = "val",
    clip_steps: int | None = None, clips: int = 10, ignore_missing: bool = False,
) -> dict:
    """Metrics of a run on `split` (val: the run's own validation split; train; all). With `clip_steps`,
    Karpathy's clip hit@1 (each clip alone) and video hit@1 / hit@5 (mean of a video's clip scores)."""
    if split not in ("val", "train", "all"):
        raise FeatxError(f"--split must be val, train or all, not {split!r}")
    run, store = load_run(run_dir), open_store(store)
    data, _, split_col = load_labelled(
        store, store_labels(store, labels_csv), classes=run.classes, ignore_missing=ignore_missing,
        max_steps=run.config.max_steps, columns=run_columns(run, store),
    )
    if split != "all":
        train_set, val_set = train_val_split(data, split_col, run.config.val_fraction, run.config.seed)
        data = val_set if split == "val" else train_set
    pieces, owner = _clips(data, clip_steps, clips)
    scores, updates = predict_scores(run.model, pieces, run.config.batch_size)
    _, per_video = video_scores(scores, owner)
    metrics = classification_metrics(data.labels, per_video, run.classes)
    metrics.update({
        "split": split,
        "clip_hit@1": hit_at_k(scores, pieces.labels, 1),
        "video_hit@1": hit_at_k(per_video, data.labels, 1),
        "video_hit@5": hit_at_k(per_video, data.labels, 5),
        "clips": len(pieces),
    })
    if is_skip(run):
        metrics["update_fraction"] = float(np.concatenate(updates).mean())
    return metrics


def predict_store(run_dir: str | Path, store: Store | str | Path, top_k: int = 5) -> pd.DataFrame:
    """Top-k labels and probabilities for every video of `store`."""
    run, store = load_run(run_dir), open_store(store)
    seqs = finite_sequences(store, columns=run_columns(run, store))
    ids = sorted(seqs)
    sequences = [seqs[v][uniform_steps(len(seqs[v]), run.config.max_steps)] for v in ids]
    data = SequenceSet(ids, sequences, np.zeros(len(ids), np.int64))  # labels unknown: unused
    scores, updates = predict_scores(run.model, data, run.config.batch_size)
    table = top_k_columns(ids, scores, run.classes, top_k)
    if is_skip(run):
        table["update_fraction"] = [float(u.mean()) for u in updates]
    return pd.DataFrame(table)


def top_k_columns(ids: list[str], scores: np.ndarray, classes: list[str], top_k: int) -> dict:
    """{video_id, label_1, score_1, ..., label_k, score_k} from (N, C) class probabilities."""
    k = min(top_k, len(classes))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    table = {"video_id": list(ids)}
    for j in range(k):
        table[f"label_{j + 1}"] = [classes[c] for c in top[:, j]]
        table[f"score_{j + 1}"] = scores[np.arange(len(ids)), top[:, j]]
    return table


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    path = Path(path)
    if path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        raise FeatxError(f"--out {path}: use a .parquet or .csv file name")
