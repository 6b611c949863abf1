"""Detection heads: per-step class logits over K actions + background (class 0)."""

from __future__ import annotations

import torch
from torch import nn

from seqmodels.heads.common import HeadOutput
from seqmodels.heads.skip_rnn import SkipRNNHead
from seqmodels.heads.step_rnns import StepSkipRNN
from seqmodels.registry import STEPS, register_head


@register_head("montes-lstm", detection=STEPS)
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


@register_head("linear", detection=STEPS)
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


@register_head("skip-lstm", cell="lstm", options_of=SkipRNNHead, skip=True, detection=STEPS)
@register_head("skip-gru", cell="gru", options_of=SkipRNNHead, skip=True, detection=STEPS)
class SkipSteps(nn.Module):
    """A Skip RNN (Campos et al. 2018) as a per-step detector: Montes et al.'s causal per-step classifier over
    K + 1 classes, whose recurrent state updates only on the steps its gate chooses; a skipped step copies the
    state, and so the previous step's scores. Trained with the budget loss λ Σ u_t (--budget); at prediction from
    videos (`featx predict --adaptive`) the backbone runs only on the steps it updates on.
    Returns HeadOutput(logits (B, T, K + 1), updates (B, T))."""

    kind = "steps"

    def __init__(self, in_dim: int, num_classes: int, cell: str = "lstm", layers: int = 1, **options):
        super().__init__()  # one layer, as Montes' LSTM
        self.net = StepSkipRNN(in_dim, num_classes, cell=cell, layers=layers, multilabel=False, **options)

    @property
    def skip(self):
        """The Skip RNN cell and read-out (seqmodels.heads.skip_rnn.SkipRNNHead), for adaptive prediction."""
        return self.net.skip

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        return self.net(x, mask)
