"""Per-step multi-label heads (Campos et al. 2018, Table 3 on Charades): a recurrent network reads the steps
left to right and a linear layer scores every class at every step, each class on its own (sigmoid, binary
cross-entropy). The skip variants copy the state, and so the output, on the steps they skip. The paper's
networks are 2 layers of 256 units (`layers=2`); the default is 1 layer, because on bench/multilabel.py's hard
set 2 layers stayed at chance for 40 epochs (mAP 0.053, chance 0.055) where 1 layer reached 0.43-0.54.
A per-step skip-gru is torch's GRU cell by default (`gru=torch`): on the hard set (160 videos, gate warm-up,
seeds 0 and 1) the authors' GRU read every step yet reached mAP 0.279 / 0.382, torch's 0.597 / 0.664.

forward(x (B, T, D), mask (B, T)) -> HeadOutput(logits (B, T, C), updates (B, T) or None).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqmodels.heads.common import HeadOutput
from seqmodels.heads.skip_rnn import SkipRNNHead
from seqmodels.registry import MULTILABEL, register_head


@register_head("lstm", cell="lstm", multilabel=MULTILABEL)
@register_head("gru", cell="gru", multilabel=MULTILABEL)
class StepRNN(nn.Module):
    """An LSTM or GRU over the steps (causal: step t sees steps 1..t), packed so that padding never enters the
    state, and a per-step linear read-out."""

    def __init__(
        self,
        in_dim: int,  # D of the store's features
        num_classes: int,
        cell: str = "lstm",  # "lstm" or "gru"
        hidden: int = 256,  # units per layer (Table 3: 256)
        layers: int = 1,  # stacked layers (Table 3: 2; see the module's note)
        dropout: float = 0.2,  # dropout on the outputs (and between layers)
        input_norm: bool = True,  # LayerNorm over each step's features
    ):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', not {cell!r}")
        self.norm = nn.LayerNorm(in_dim) if input_norm else nn.Identity()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(in_dim, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        lengths = mask.sum(1).clamp_min(1).cpu()
        packed = pack_padded_sequence(self.norm(x), lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, H)
        return HeadOutput(self.classifier(out), multilabel=True)  # (B, T, C)


@register_head("skip-lstm", cell="lstm", options_of=SkipRNNHead, skip=True, multilabel=MULTILABEL)
@register_head("skip-gru", cell="gru", options_of=SkipRNNHead, skip=True, multilabel=MULTILABEL)
class StepSkipRNN(nn.Module):
    """A Skip RNN (seqmodels.heads.skip_rnn) read out at every step: the output of step t is the classifier on
    the state after step t, which a skipped step copies from the step before."""

    def __init__(self, in_dim: int, num_classes: int, cell: str = "lstm", hidden: int = 256, layers: int = 1,
                 multilabel: bool = True, **options):
        super().__init__()
        if cell == "gru":  # torch's GRU read out per step: the authors' learned far slower here (module note)
            options.setdefault("gru", "torch")
        self.skip = SkipRNNHead(in_dim, num_classes, cell=cell, hidden=hidden, layers=layers, **options)
        self.multilabel = multilabel  # False: a softmax over the classes (per-step detection, K + 1 classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        outputs, updates, _ = self.skip.unroll(x, mask)  # T x (B, H), (B, T)
        h = torch.stack(outputs, dim=1)  # (B, T, H)
        return HeadOutput(self.skip.classifier(h), updates, self.multilabel)  # (B, T, C), (B, T)
