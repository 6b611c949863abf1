"""The one training protocol of every stage-2 head, classification and detection alike (ActionFormer's recipe):

- AdamW; weight decay only on weight matrices and kernels (ndim >= 2), never on biases, norms or scales;
- per-iteration learning rate: linear warm-up from 0 over `warmup_epochs`, then cosine to 0;
- gradient-norm clipping;
- an exponential moving average (EMA) of the weights, updated after every step: the EMA model is what is
  evaluated and saved. Its decay is min(ema_decay, (1 + n) / (10 + n)) after n updates (timm's warm-up), so a
  run of a few hundred steps on a small dataset is not dominated by the initial weights;
- model selection never looks at the split it reports: a fixed number of epochs by default, or, with
  `holdout > 0`, early stopping on the loss of a held-out share of the *training* videos.

A task gives `fit` a `loss(model, items, rng, train)` function (it builds and, when training, augments the
batch of `items`) and an optional `report(model) -> dict` shown per epoch (never used for selection).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from featx.errors import FeatxError


@dataclass(frozen=True)
class Protocol:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.05
    warmup_epochs: float = 5
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    holdout: float = 0.0  # share of the training videos held out for early stopping; 0: fixed epochs
    patience: int = 10  # with holdout: stop after this many epochs without a lower held-out loss
    seed: int = 0
    gate_warmup: int = 0  # skip heads: epochs (from the first) with the gates held open (every step updates)

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, not {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, not {self.batch_size}"),
            (math.isfinite(self.lr) and self.lr > 0, f"--lr must be a positive number, not {self.lr}"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0, f"--weight-decay must be >= 0, not {self.weight_decay}"),
            (math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, not {self.warmup_epochs}"),
            (self.grad_clip > 0, f"--grad-clip must be > 0, not {self.grad_clip}"),
            (0 <= self.ema_decay < 1, f"--ema-decay must be in [0, 1), not {self.ema_decay}"),
            (0 <= self.holdout < 1, f"--holdout must be in [0, 1), not {self.holdout}"),
            (self.patience >= 1, f"--patience must be >= 1, not {self.patience}"),
            (self.gate_warmup >= 0, f"gate warm-up must be >= 0 epochs, not {self.gate_warmup}"),
        ]
        for ok, message in checks:
            if not ok:
                raise FeatxError(message)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight matrices and convolution kernels decay; biases, norm weights and scales not."""
    decay, plain = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else plain).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Multiplier of the base learning rate at iteration `step`: linear warm-up, then cosine to 0."""
    if step < warmup:
        return (step + 1) / warmup
    if total <= warmup:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


class WeightEMA:
    """An exponential moving average of a model's weights (buffers are copied)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema, cur in zip(self.model.state_dict().values(), model.state_dict().values()):
            if ema.dtype.is_floating_point:
                ema.mul_(d).add_(cur.detach(), alpha=1 - d)
            else:
                ema.copy_(cur)


def split_holdout(items: list, share: float, seed: int) -> tuple[list, list]:
    """(train, held out): a seeded random `share` of the items (at least one) held out; none when 0."""
    if share <= 0:
        return list(items), []
    order = np.random.default_rng(seed + 1).permutation(len(items))
    n = max(1, round(len(items) * share))
    if n >= len(items):
        raise FeatxError(f"--holdout {share} leaves no training video (of {len(items)})")
    return [items[i] for i in sorted(order[n:])], [items[i] for i in sorted(order[:n])]


LossFn = Callable[[torch.nn.Module, list, np.random.Generator, bool], torch.Tensor]


@torch.no_grad()
def mean_loss(model: torch.nn.Module, items: list, loss: LossFn, batch_size: int, rng: np.random.Generator) -> float:
    model.eval()
    values = [float(loss(model, items[i : i + batch_size], rng, False)) for i in range(0, len(items), batch_size)]
    return float(np.mean(values))


def fit(model: torch.nn.Module, items: list, loss: LossFn, protocol: Protocol,
        report: Callable[[torch.nn.Module], dict] | None = None, on_epoch=None, progress: bool = False,
        desc: str = "train") -> tuple[torch.nn.Module, list[dict]]:
    """Train `model` on `items` under the protocol; returns (the EMA model, one history row per epoch).
    With a holdout, the EMA weights of the epoch with the lowest held-out loss are returned."""
    from featx.progress import progress as progress_bar

    torch.manual_seed(protocol.seed)
    rng = np.random.default_rng(protocol.seed)
    train_items, held = split_holdout(items, protocol.holdout, protocol.seed)
    optimizer = torch.optim.AdamW(param_groups(model, protocol.weight_decay), lr=protocol.lr)
    per_epoch = math.ceil(len(train_items) / protocol.batch_size)
    total, warmup = per_epoch * protocol.epochs, round(per_epoch * protocol.warmup_epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
    ema = WeightEMA(model, protocol.ema_decay)
    history, best, best_state, since = [], None, None, 0
    for epoch in progress_bar(range(1, protocol.epochs + 1), desc=desc, unit="epoch", enabled=progress):
        t = time.monotonic()
        hold_gates_open(model, ema.model, epoch <= protocol.gate_warmup)
        model.train()
        losses = []
        order = rng.permutation(len(train_items))
        for at in range(0, len(order), protocol.batch_size):
            value = loss(model, [train_items[i] for i in order[at : at + protocol.batch_size]], rng, True)
            if not torch.isfinite(value):
                raise FeatxError(f"training diverged at epoch {epoch} (loss {float(value.detach())}); try a lower --lr")
            optimizer.zero_grad()
            value.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), protocol.grad_clip)
            optimizer.step()
            schedule.step()
            ema.update(model)
            losses.append(float(value.detach()))
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "lr": optimizer.param_groups[0]["lr"]}
        if held:
            row["holdout_loss"] = mean_loss(ema.model, held, loss, protocol.batch_size, rng)
            if best is None or row["holdout_loss"] < best:
                best, best_state, since = row["holdout_loss"], copy.deepcopy(ema.model.state_dict()), 0
            else:
                since += 1
        if report:
            row.update(report(ema.model))
        row["seconds"] = time.monotonic() - t
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if held and since >= protocol.patience:
            break
    hold_gates_open(model, ema.model, False)
    if best_state is not None:
        ema.model.load_state_dict(best_state)
    return ema.model.eval(), history


def hold_gates_open(model: torch.nn.Module, ema_model: torch.nn.Module, value: bool) -> None:
    """Open (or release) the update gates of every Skip RNN in the model and its EMA: an open gate updates the
    state at every step, as the plain RNN would (seqmodels.heads.skip_rnn, `gates_open`)."""
    for module in (*model.modules(), *ema_model.modules()):
        if hasattr(module, "gates_open"):
            module.gates_open = value
