"""Classification under the shared training protocol (seqmodels.protocol) and run layer (seqmodels.runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from featx.backbones import resolve_device
from featx.errors import FeatxError
from seqmodels import runs, streams
from seqmodels.data import SequenceSet, batches, pad
from seqmodels.registry import build_head, find_head
from seqmodels.heads.skip_rnn import budget_loss
from seqmodels.protocol import fit
from seqmodels.runs import Run, TrainConfig

__all__ = ["Run", "TrainConfig", "load_run", "predict_scores", "save_run", "train"]


def predict_scores(model: torch.nn.Module, data: SequenceSet, batch_size: int = 64, device: str | torch.device = "cpu"):
    """Class probabilities (N, C) and, for skip heads, each video's 0/1 updates (list of (T_i,) arrays)."""
    device = torch.device(device)
    model.eval()
    updates, chunks = [None] * len(data), []
    with torch.no_grad():
        for x, mask, _, idx in batches(data, batch_size):
            out = model(x.to(device), mask.to(device))
            chunks.append((idx, F.softmax(out.logits, -1).cpu().numpy()))
            if out.updates is not None:
                for row, i in enumerate(idx):
                    updates[i] = out.updates[row, : len(data.sequences[i])].cpu().numpy()
    probs = np.zeros((len(data), chunks[0][1].shape[1]))
    for idx, p in chunks:
        probs[idx] = p
    return probs, updates


def _forward_loss(model, x, mask, y, config: TrainConfig):
    out = model(x, mask)
    loss = F.cross_entropy(out.logits, y)
    if out.updates is not None:
        loss = loss + budget_loss(out.updates, config.budget)
    return out, loss


def run_epoch(model, data: SequenceSet, config: TrainConfig, device) -> dict:
    """One pass without training: loss, accuracy and (skip heads) the update fraction."""
    model.eval()
    total, correct, seen, updated, steps = 0.0, 0, 0, 0.0, 0
    with torch.no_grad():
        for x, mask, y, _ in batches(data, config.batch_size):
            x, mask, y = x.to(device), mask.to(device), y.to(device)
            out, loss = _forward_loss(model, x, mask, y, config)
            if out.updates is not None:
                updated += float(out.updates.sum())
                steps += int(mask.sum())
            total += float(loss) * len(y)
            correct += int((out.logits.argmax(-1) == y).sum())
            seen += len(y)
    result = {"loss": total / seen, "accuracy": correct / seen}
    if steps:
        result["update_fraction"] = updated / steps
    return result


def classification_loss(data: SequenceSet, config: TrainConfig, device):
    """loss(model, items, rng, train) for seqmodels.protocol.fit: cross-entropy (+ the skip heads' budget)."""

    def loss(model, items, rng, train):
        x, mask = pad([data.sequences[i] for i in items])
        y = torch.from_numpy(data.labels[items]).to(device)
        return _forward_loss(model, x.to(device), mask.to(device), y, config)[1]

    return loss


def train(
    train_set: SequenceSet, val_set: SequenceSet, classes: list[str], config: TrainConfig,
    store_config: dict | None = None, on_epoch=None, progress: bool = True,
) -> Run:
    """Train `config.head` under the shared protocol (fixed epochs, or early stopping on a holdout of the
    training videos); the EMA weights are kept. Each epoch's row also reports the training and validation
    loss and accuracy of the EMA weights, which no decision looks at. Seeded and deterministic on the CPU.
    With late fusion of two streams (seqmodels.streams), one head per stream, each trained so on its columns."""
    device = resolve_device(config.device)
    in_dim = train_set.sequences[0].shape[1]

    def fit_one(cols: slice, on_epoch, desc: str):
        fit_set, val = train_set.columns(cols), val_set.columns(cols)
        torch.manual_seed(config.seed)
        model = build_head(config.head, fit_set.sequences[0].shape[1], len(classes), **config.head_options).to(device)

        def report(model) -> dict:
            fit_, held = run_epoch(model, fit_set, config, device), run_epoch(model, val, config, device)
            return {**{f"train_{k}": v for k, v in fit_.items() if k != "loss"}, **{f"val_{k}": v for k, v in held.items()}}

        return fit(model, list(range(len(fit_set))), classification_loss(fit_set, config, device), config.protocol,
                   report, on_epoch, progress, desc=desc)

    model, history = streams.fit_streams(config, in_dim, fit_one, on_epoch)
    return Run(model, config, list(classes), in_dim, store_config, history)


def _build(config: TrainConfig, in_dim: int, classes: list[str]) -> torch.nn.Module:
    if config.task != "classification":
        raise FeatxError(f"this is a {config.task} run, not a classification run")
    return streams.build(config, in_dim, lambda width: build_head(config.head, width, len(classes), **config.head_options))


def save_run(run: Run, folder: str | Path) -> None:
    runs.save_run(run, folder)


def load_run(folder: str | Path, device: str = "cpu") -> Run:
    return runs.load_run(folder, _build, device)


def is_skip(run: Run) -> bool:
    return find_head(run.task, run.config.head).skip
