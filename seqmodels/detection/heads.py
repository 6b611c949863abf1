"""Detection heads: per-step class logits over K actions + background (class 0)."""

from __future__ import annotations

import torch
from torch import nn


class MontesLSTM(nn.Module):
    """Montes et al. 2016: BatchNorm -> dropout -> LSTM (512 units) -> per-step linear over K + 1 classes.
    BatchNorm statistics come from real steps only, never from padding."""

    kind = "steps"  # per-step logits; segments come from seqmodels.detection.postprocess

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 512, layers: int = 1, dropout: float = 0.5):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(in_dim, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D), (B, T) bool -> (B, T, K + 1) logits; the LSTM runs left to right (causal)."""
        normed = torch.zeros_like(x)
        normed[mask] = self.norm(x[mask])
        h, _ = self.lstm(self.dropout(normed))
        return self.out(self.dropout(h))


class StepLinear(nn.Module):
    """The trivial baseline: BatchNorm -> one linear layer per step over K + 1 classes (no temporal context
    except the post-processing's smoothing)."""

    kind = "steps"

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(in_dim)
        self.out = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        normed = torch.zeros_like(x)
        normed[mask] = self.norm(x[mask])
        return self.out(normed)
