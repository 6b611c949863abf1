"""LRCN (Donahue et al. 2015) on per-frame features: an LSTM over the steps, packed so padding never enters
the state, read out at the last real step or as the mean over steps."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqmodels.heads.common import HeadOutput, masked_mean
from seqmodels.registry import CLASSIFY, register_head


@register_head("lstm", classification=CLASSIFY)
class LSTMHead(nn.Module):
    def __init__(
        self,
        in_dim: int,  # D of the store's features
        num_classes: int,
        hidden: int = 256,  # LSTM units per direction
        layers: int = 1,  # stacked LSTM layers
        bidirectional: bool = False,  # also run the sequence backwards
        readout: str = "last",  # "last": state at the last real step; "mean": mean of the outputs
        dropout: float = 0.2,  # dropout on the LSTM outputs (and between layers)
        input_norm: bool = True,  # LayerNorm over each step's features (off for raw low-dimensional inputs)
    ):
        super().__init__()
        if readout not in ("last", "mean"):
            raise ValueError(f"readout must be 'last' or 'mean', not {readout!r}")
        self.readout, self.bidirectional = readout, bidirectional
        self.norm = nn.LayerNorm(in_dim) if input_norm else nn.Identity()
        self.lstm = nn.LSTM(
            in_dim, hidden, layers, batch_first=True, bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        out_dim = hidden * (2 if bidirectional else 1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(out_dim, num_classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(self.norm(x), lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, H*dirs)
        if self.readout == "mean":
            feat = masked_mean(out, mask)
        elif self.bidirectional:
            feat = torch.cat([h_n[-2], h_n[-1]], dim=-1)  # forward at its last real step, backward at step 0
        else:
            feat = h_n[-1]  # (B, H): the state after each sequence's last real step
        return HeadOutput(self.classifier(feat))
