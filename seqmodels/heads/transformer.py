"""A small temporal transformer: self-attention across the steps of a video, masked mean, linear read-out.

Order reaches it through sinusoidal position encodings (any length, no table to outgrow). Padded steps are
masked out of attention, so they never change a real step's output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqmodels.heads.common import HeadOutput, masked_mean
from seqmodels.registry import CLASSIFY, register_head


def sinusoidal_positions(length: int, dim: int, device=None) -> torch.Tensor:
    """(length, dim) encodings of Vaswani et al. 2017: sin on even channels, cos on odd ones."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


@register_head("transformer", classification=CLASSIFY)
class TransformerHead(nn.Module):
    def __init__(
        self,
        in_dim: int,  # D of the store's features
        num_classes: int,
        width: int = 256,  # model width after the input projection
        layers: int = 2,  # encoder layers
        heads: int = 4,  # attention heads (must divide width)
        dropout: float = 0.1,  # in attention, feed-forward and before the read-out
    ):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.project = nn.Linear(in_dim, width)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=2 * width, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.classifier = nn.Sequential(nn.LayerNorm(width), nn.Dropout(dropout), nn.Linear(width, num_classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        h = self.project(self.norm(x))  # (B, T, W)
        h = h + sinusoidal_positions(x.shape[1], h.shape[-1], x.device)
        h = self.encoder(h, src_key_padding_mask=~mask)  # (B, T, W); padding attends nowhere it matters
        return HeadOutput(self.classifier(masked_mean(h, mask)))
