"""Temporal pooling + MLP: the single-frame / pooling baselines, blind to temporal order by construction."""

from __future__ import annotations

import torch
from torch import nn

from seqmodels.heads.common import HeadOutput, masked_max, masked_mean, mlp
from seqmodels.registry import CLASSIFY, register_head


class PoolHead(nn.Module):
    def __init__(
        self,
        in_dim: int,  # D of the store's features
        num_classes: int,
        pool: str = "avg",  # "avg" or "max" over the real steps
        hidden: int = 256,  # MLP hidden units
        dropout: float = 0.2,  # dropout before the last layer
    ):
        super().__init__()
        self.pool = pool
        self.norm = nn.LayerNorm(in_dim)
        self.classifier = mlp(in_dim, hidden, num_classes, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        x = self.norm(x)  # (B, T, D)
        pooled = masked_mean(x, mask) if self.pool == "avg" else masked_max(x, mask)  # (B, D)
        return HeadOutput(self.classifier(pooled))


@register_head("avgpool", options_of=PoolHead, classification=CLASSIFY)
def avgpool(in_dim: int, num_classes: int, **cfg) -> PoolHead:
    return PoolHead(in_dim, num_classes, pool="avg", **cfg)


@register_head("maxpool", options_of=PoolHead, classification=CLASSIFY)
def maxpool(in_dim: int, num_classes: int, **cfg) -> PoolHead:
    return PoolHead(in_dim, num_classes, pool="max", **cfg)

