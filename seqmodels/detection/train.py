"""Training per-step detection heads: masked cross-entropy with a lighter background class."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from seqmodels.data import pad


def step_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, background_weight: float) -> torch.Tensor:
    """Mean cross-entropy over real steps; background (class 0) steps weigh `background_weight` (Montes: 0.3)."""
    weight = torch.ones(logits.shape[-1], device=logits.device)
    weight[0] = background_weight
    return F.cross_entropy(logits[mask], targets[mask], weight=weight)


def montes_loss(background_weight: float):
    """loss_fn for per-step heads: (model, x, mask, [(T_i,) class arrays]) -> weighted cross-entropy."""

    def loss(model, x, mask, targets):
        y, _ = pad([t[:, None] for t in targets])
        return step_loss(model(x, mask), y[..., 0].long().to(x.device), mask, background_weight)

    return loss


def segment_loss(model, x, mask, targets):
    """loss_fn for segment heads (their own `loss`); targets: per video (n, 3) start, end (steps), class."""
    return model.loss(x, mask, targets)


def train_epoch(
    model: torch.nn.Module, optimizer, sequences: list[np.ndarray], targets: list, batch_size: int, loss_fn,
    rng: np.random.Generator, clip: float = 1.0,
) -> float:
    """One shuffled pass over the sequences; the mean training loss."""
    model.train()
    device = next(model.parameters()).device
    losses = []
    perm = rng.permutation(len(sequences))
    for start in range(0, len(perm), batch_size):
        chosen = perm[start : start + batch_size]
        x, mask = pad([sequences[i] for i in chosen])
        loss = loss_fn(model, x.to(device), mask.to(device), [targets[i] for i in chosen])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def evaluate_loss(model: torch.nn.Module, sequences: list[np.ndarray], targets: list, loss_fn, batch_size: int = 32) -> float:
    """Mean loss over batches, without training."""
    model.eval()
    device = next(model.parameters()).device
    losses = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            x, mask = pad(sequences[start : start + batch_size])
            losses.append(loss_fn(model, x.to(device), mask.to(device), targets[start : start + batch_size]).item())
    return float(np.mean(losses))


def train_steps(
    model: torch.nn.Module, sequences: list[np.ndarray], targets: list[np.ndarray], epochs: int = 30,
    batch_size: int = 8, lr: float = 1e-3, background_weight: float = 0.3, seed: int = 0,
) -> list[float]:
    """Train a per-step `model` in place for `epochs`; returns the mean training loss of each epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = montes_loss(background_weight)
    return [train_epoch(model, optimizer, sequences, targets, batch_size, loss_fn, rng) for _ in range(epochs)]


def predict_steps(model: torch.nn.Module, sequences: list[np.ndarray], batch_size: int = 32) -> list[np.ndarray]:
    """Per-step class probabilities, one (T_i, K + 1) array per sequence."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            x, mask = pad(chunk)
            device = next(model.parameters()).device
            probs = F.softmax(model(x.to(device), mask.to(device)), -1).cpu().numpy()
            out += [probs[i, : len(s)] for i, s in enumerate(chunk)]
    return out
