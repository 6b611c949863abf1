"""Per-step detection heads: masked cross-entropy with a lighter background class, and per-step probabilities."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from seqmodels.data import pad
from seqmodels.heads.common import HeadOutput
from seqmodels.heads.skip_rnn import budget_loss


def step_logits(out) -> torch.Tensor:
    """A step head's (B, T, K + 1) logits: its output, or a skip head's HeadOutput.logits."""
    return out.logits if isinstance(out, HeadOutput) else out


def step_loss(out, targets: torch.Tensor, mask: torch.Tensor, background_weight: float, budget: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over real steps; background (class 0) steps weigh `background_weight` (Montes: 0.3).
    A skip head's output adds the budget loss λ Σ u_t (λ = `budget`)."""
    logits = step_logits(out)
    weight = torch.ones(logits.shape[-1], device=logits.device)
    weight[0] = background_weight
    loss = F.cross_entropy(logits[mask], targets[mask], weight=weight)
    if isinstance(out, HeadOutput) and out.updates is not None:
        loss = loss + budget_loss(out.updates, budget)
    return loss


def train_steps(
    model: torch.nn.Module, sequences: list[np.ndarray], targets: list[np.ndarray], epochs: int = 30,
    batch_size: int = 8, lr: float = 1e-3, background_weight: float = 0.3, seed: int = 0,
) -> tuple[torch.nn.Module, list[float]]:
    """Train a per-step `model` under the shared protocol; returns (the EMA model, each epoch's training loss)."""
    from seqmodels.protocol import Protocol, fit

    def loss(model, items, rng, train):
        x, mask = pad([sequences[i] for i in items])
        y, _ = pad([targets[i][:, None] for i in items])
        return step_loss(model(x, mask), y[..., 0].long(), mask, background_weight)

    protocol = Protocol(epochs, batch_size, lr, weight_decay=1e-2, warmup_epochs=min(2, epochs - 1), seed=seed)
    model, history = fit(model, list(range(len(sequences))), loss, protocol)
    return model, [row["train_loss"] for row in history]


def predict_steps(model: torch.nn.Module, sequences: list[np.ndarray], batch_size: int = 32,
                  updates: list | None = None) -> list[np.ndarray]:
    """Per-step class probabilities, one (T_i, K + 1) array per sequence; a skip head's (T_i,) 0/1 updates are
    appended to `updates` when given."""
    model.eval()
    out = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            chunk = sequences[start : start + batch_size]
            x, mask = pad(chunk)
            result = model(x.to(device), mask.to(device))
            probs = F.softmax(step_logits(result), -1).cpu().numpy()
            out += [probs[i, : len(s)] for i, s in enumerate(chunk)]
            if updates is not None and isinstance(result, HeadOutput) and result.updates is not None:
                updates += [result.updates[i, : len(s)].cpu().numpy() for i, s in enumerate(chunk)]
    return out
