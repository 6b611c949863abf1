"""One training loop for every classification head; runs that rebuild themselves from their folder."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from featx.backbones import resolve_device
from featx.errors import FeatxError
from seqmodels.data import SequenceSet, batches
from seqmodels.heads import SKIP_HEADS, build_head
from seqmodels.heads.skip_rnn import budget_loss

RUN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainConfig:
    head: str = "lstm"  # a name in seqmodels.heads.HEADS
    head_options: dict = field(default_factory=dict)  # passed to the head's constructor (hidden=..., ...)
    epochs: int = 30  # at most; early stopping may end sooner
    batch_size: int = 32
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-2
    clip: float = 1.0  # gradient norm clipping
    patience: int = 8  # stop after this many epochs without a better validation accuracy
    budget: float = 0.0  # λ of the skip heads' budget loss (per updated step)
    max_steps: int | None = None  # uniform temporal subsampling of longer sequences
    val_fraction: float = 0.2  # used when the labels have no split column
    seed: int = 0
    device: str = "auto"

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


def run_epoch(model, data: SequenceSet, config: TrainConfig, device, optimizer=None, rng=None) -> dict:
    """One pass; trains when an optimizer is given. Returns loss, accuracy and the update fraction."""
    training = optimizer is not None
    model.train(training)
    total, correct, seen, updated, steps = 0.0, 0, 0, 0.0, 0
    with torch.set_grad_enabled(training):
        for x, mask, y, _ in batches(data, config.batch_size, shuffle=training, generator=rng):
            x, mask, y = x.to(device), mask.to(device), y.to(device)
            out = model(x, mask)
            loss = F.cross_entropy(out.logits, y)
            if out.updates is not None:
                loss = loss + budget_loss(out.updates, config.budget)
                updated += float(out.updates.detach().sum())
                steps += int(mask.sum())
            if training:
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                optimizer.step()
            total += float(loss.detach()) * len(y)
            correct += int((out.logits.argmax(-1) == y).sum())
            seen += len(y)
    result = {"loss": total / seen, "accuracy": correct / seen}
    if steps:
        result["update_fraction"] = updated / steps
    return result


def train(
    train_set: SequenceSet, val_set: SequenceSet, classes: list[str], config: TrainConfig,
    store_config: dict | None = None, on_epoch=None, progress: bool = True,
) -> Run:
    """Train `config.head` with AdamW and early stopping on validation accuracy; the best epoch's weights
    are kept. Seeded and deterministic on the CPU. `on_epoch(row)` is called after every epoch."""
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = resolve_device(config.device)
    in_dim = train_set.sequences[0].shape[1]
    model = build_head(config.head, in_dim, len(classes), **config.head_options).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    best, best_state, since_best, history = None, None, 0, []
    for epoch in tqdm(range(1, config.epochs + 1), desc=f"train {config.head}", unit="epoch", disable=not progress):
        t = time.monotonic()
        fit = run_epoch(model, train_set, config, device, optimizer, rng)
        val = run_epoch(model, val_set, config, device)
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in fit.items()}, **{f"val_{k}": v for k, v in val.items()},
               "seconds": time.monotonic() - t}
        history.append(row)
        if on_epoch:
            on_epoch(row)
        key = (val["accuracy"], -val["loss"])
        if best is None or key > best:
            best, best_state, since_best = key, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    model.load_state_dict(best_state)
    return Run(model.eval(), config, list(classes), in_dim, store_config, history)


def save_run(run: Run, folder: str | Path) -> None:
    """config.json and checkpoint.pt: the checkpoint alone rebuilds the model (config, classes, in_dim)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": RUN_FORMAT_VERSION, "train": dataclasses.asdict(run.config), "classes": run.classes,
        "in_dim": run.in_dim, "store_config": run.store_config,
    }
    (folder / "config.json").write_text(json.dumps(meta, indent=1))
    torch.save({**meta, "state_dict": run.model.state_dict(), "history": run.history}, folder / "checkpoint.pt")


def load_run(folder: str | Path, device: str = "cpu") -> Run:
    folder = Path(folder)
    path = folder / "checkpoint.pt"
    if not path.is_file():
        raise FeatxError(f"{folder} is not a training run (no checkpoint.pt); train one with `featx train-head`")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format_version", 0) > RUN_FORMAT_VERSION:
        raise FeatxError(f"{path} was written by a newer featx (run format {ckpt['format_version']})")
    config = TrainConfig.from_dict(ckpt["train"])
    model = build_head(config.head, ckpt["in_dim"], len(ckpt["classes"]), **config.head_options)
    model.load_state_dict(ckpt["state_dict"])
    model.to(resolve_device(device)).eval()
    return Run(model, config, ckpt["classes"], ckpt["in_dim"], ckpt["store_config"], ckpt.get("history", []))


def is_skip(run: Run) -> bool:
    return run.config.head in SKIP_HEADS
