"""Pieces every head shares: its output type, masked pooling, the MLP classifier."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class HeadOutput:
    """What every head returns, in training and in evaluation alike."""

    logits: torch.Tensor  # (B, C); per-step heads (B, T, C)
    updates: torch.Tensor | None = None  # (B, T) 0/1 state updates of skip heads (0 on padding); else None
    multilabel: bool = False  # one sigmoid per class (per-step multi-label heads), else a softmax over classes


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D): the mean over real steps only."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1)


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D): the max over real steps only."""
    return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)


def last_valid(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D): each sequence's last real step (sequences are right-padded)."""
    last = mask.sum(1).clamp_min(1) - 1  # (B,)
    return x[torch.arange(x.shape[0], device=x.device), last]


def mlp(in_dim: int, hidden: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, num_classes))
