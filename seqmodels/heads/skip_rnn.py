"""Skip RNN (Campos et al., ICLR 2018): an LSTM or GRU that learns to skip state updates.

At each step t, with s the state:
    u_t        = round(ũ_t)                      binary, straight-through gradient (d u / d ũ = 1)
    s_t        = u_t * S(s_{t-1}, x_t) + (1 - u_t) * s_{t-1}   skipped steps copy the state exactly
    Δũ_t       = sigmoid(W s_t + b)              from the new state (the cell state c for an LSTM)
    ũ_{t+1}    = u_t * Δũ_t + (1 - u_t) * (ũ_t + min(Δũ_t, 1 - ũ_t)),  ũ_1 = 1
b starts at `update_bias` (1.0: sigmoid 0.73 rounds to 1, so the cell updates at first). ũ_t, and so the
decision for step t, depends only on steps before t: a caller can decide whether it needs x_t at all
before computing it (adaptive extraction). Budget loss: λ Σ_t u_t per sequence (`budget_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqmodels.heads.common import HeadOutput


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad  # straight-through: the gradient of the identity


def binarize(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, identity backward."""
    return _RoundSTE.apply(x)


class SkipRNNHead(nn.Module):
    def __init__(
        self,
        in_dim: int,  # D of the store's features
        num_classes: int,
        cell: str = "lstm",  # "lstm" or "gru"
        hidden: int = 256,  # recurrent units
        update_bias: float = 1.0,  # initial bias b of the update gate
        dropout: float = 0.2,  # dropout before the classifier
        input_norm: bool = True,  # LayerNorm over each step's features (off for raw low-dimensional inputs)
    ):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', not {cell!r}")
        self.kind = cell
        self.norm = nn.LayerNorm(in_dim) if input_norm else nn.Identity()
        self.cell = nn.LSTMCell(in_dim, hidden) if cell == "lstm" else nn.GRUCell(in_dim, hidden)
        self.gate = nn.Linear(hidden, 1)
        nn.init.constant_(self.gate.bias, update_bias)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def initial_state(self, batch: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The state before step 1: zero recurrent state, Δũ = 1 and nothing accumulated, so ũ_1 = 1."""
        zeros = like.new_zeros(batch, self.cell.hidden_size)
        state = {"h": zeros, "prob": like.new_ones(batch, 1), "cum": like.new_zeros(batch, 1)}
        if self.kind == "lstm":
            state["c"] = zeros.clone()
        return state

    @staticmethod
    def update_probability(state: dict[str, torch.Tensor]) -> torch.Tensor:
        """ũ_t for the coming step, (B, 1): known before that step's input is seen."""
        return state["cum"] + torch.minimum(state["prob"], 1 - state["cum"])

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The input half of the cell's gates, W_ih x + b_ih, for any number of steps at once: one large
        matrix product for a whole sequence instead of one small one per step. (..., D) -> (..., G)."""
        return F.linear(x, self.cell.weight_ih, self.cell.bias_ih)

    def _cell(self, gates_x: torch.Tensor, state: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """torch's LSTMCell / GRUCell equations on a projected input. Returns (h̃_t, the gate's input)."""
        gates_h = F.linear(state["h"], self.cell.weight_hh, self.cell.bias_hh)
        if self.kind == "lstm":
            i, f, g, o = (gates_x + gates_h).chunk(4, dim=-1)
            c = torch.sigmoid(f) * state["c"] + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        xr, xz, xn = gates_x.chunk(3, dim=-1)
        hr, hz, hn = gates_h.chunk(3, dim=-1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        h = (1 - z) * torch.tanh(xn + r * hn) + z * state["h"]
        return h, h

    def step(self, gates_x: torch.Tensor, state: dict, real: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        """One step on the projected input (`project` of the normalised x_t, (B, G)); real (B, 1) is 0 on
        padding. Returns (new state, u_t (B, 1))."""
        u_tilde = self.update_probability(state)
        u = binarize(u_tilde)
        if real is not None:
            u = u * real  # padding never updates: the state after the last real step carries through
        h_new, gate_input = self._cell(gates_x, state)  # gate input: c̃_t for an LSTM, h̃_t for a GRU
        delta = torch.sigmoid(self.gate(gate_input))  # Δũ_t, (B, 1)
        new = {
            "h": u * h_new + (1 - u) * state["h"],
            "prob": u * delta + (1 - u) * state["prob"],
            "cum": (1 - u) * u_tilde,  # reset after an update, else keep accumulating
        }
        if self.kind == "lstm":
            new["c"] = u * gate_input + (1 - u) * state["c"]
        return new, u

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        gates_x = self.project(self.norm(x))  # (B, T, G)
        real = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
        state = self.initial_state(x.shape[0], x)
        updates = []
        for t in range(x.shape[1]):
            state, u = self.step(gates_x[:, t], state, real[:, t])
            updates.append(u)
        return HeadOutput(self.classifier(state["h"]), torch.cat(updates, dim=1))  # (B, C), (B, T)


def budget_loss(updates: torch.Tensor, cost: float) -> torch.Tensor:
    """λ Σ_t u_t, averaged over the batch (updates is 0 on padding)."""
    return cost * updates.sum(1).mean()


def update_fraction(updates: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of real steps whose state was updated."""
    return float(updates.sum() / mask.sum().clamp_min(1))
