"""Karpathy et al. (CVPR 2014) fusion on per-frame features.

late-fusion: two steps far apart in time (the first and the last real step), concatenated, then an MLP.
slow-fusion: temporal 1D convolutions with stride 2 that merge neighbouring steps level by level, so higher
levels see progressively longer spans, then a masked mean and an MLP.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqmodels.heads.common import HeadOutput, last_valid, masked_mean, mlp
from seqmodels.registry import CLASSIFY, register_head


@register_head("late-fusion", classification=CLASSIFY)
class LateFusion(nn.Module):
    def __init__(
        self,
        in_dim: int,  # D of the store's features
        num_classes: int,
        hidden: int = 256,  # MLP hidden units
        dropout: float = 0.2,  # dropout before the last layer
    ):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.classifier = mlp(2 * in_dim, hidden, num_classes, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        x = self.norm(x)  # (B, T, D)
        pair = torch.cat([x[:, 0], last_valid(x, mask)], dim=-1)  # (B, 2D)
        return HeadOutput(self.classifier(pair))


@register_head("slow-fusion", classification=CLASSIFY)
class SlowFusion(nn.Module):
    def __init__(
        self,
        in_dim: int,  # D of the store's features
        num_classes: int,
        channels: int = 256,  # channels of every temporal convolution
        levels: int = 3,  # convolution levels; each halves the time axis
        kernel: int = 3,  # temporal kernel size
        dropout: float = 0.2,  # dropout before the classifier
    ):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (centred windows), not {kernel}")
        self.norm = nn.LayerNorm(in_dim)
        dims = [in_dim] + [channels] * levels
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, kernel, stride=2, padding=kernel // 2) for a, b in zip(dims, dims[1:])
        )
        self.classifier = mlp(channels, channels, num_classes, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        h = (self.norm(x) * mask.unsqueeze(-1)).transpose(1, 2)  # (B, D, T), padding zeroed
        lengths = mask.sum(1)  # (B,)
        for conv in self.convs:
            h = F.relu(conv(h))  # (B, C, ceil(T / 2))
            # a sequence of L real steps has ceil(L / 2) after a stride-2 level, exactly as it would alone
            lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
            real = torch.arange(h.shape[-1], device=h.device) < lengths.unsqueeze(1)  # (B, T')
            h = h * real.unsqueeze(1)
        return HeadOutput(self.classifier(masked_mean(h.transpose(1, 2), real)))
