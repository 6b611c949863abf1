"""Skip RNN (Campos et al., ICLR 2018): an LSTM or GRU that learns to skip state updates.

At each step t, with s the state:
    u_t        = round(ũ_t)                      binary, straight-through gradient (d u / d ũ = 1)
    s_t        = u_t * S(s_{t-1}, x_t) + (1 - u_t) * s_{t-1}   skipped steps copy the state exactly
    Δũ_t       = sigmoid(W s_t + b)              from the new state (the cell state c for an LSTM)
    ũ_{t+1}    = u_t * Δũ_t + (1 - u_t) * (ũ_t + min(Δũ_t, 1 - ũ_t)),  ũ_1 = 1
b starts at `update_bias` (1.0: sigmoid 0.73 rounds to 1, so the cell updates at first). ũ_t, and so the
decision for step t, depends only on steps before t: a caller can decide whether it needs x_t at all
before computing it (adaptive extraction). Budget loss: λ Σ_t u_t per sequence (`budget_loss`).

The cells are the authors' (github.com/imatge-upc/skiprnn-2017-telecombcn, rnn_cells/): a learned initial
state s_0 (drawn from N(0, 1), as theirs), Glorot-uniform weights on the concatenated [x, h] matrix, an LSTM
whose forget gate starts at bias 1, and, with `gru="reference"`, their GRU: the reset gate scales the state
before the candidate's linear map, and the reset and update gates start at bias 1. `gru="torch"` is torch's
GRUCell instead (reset gate applied after the map, torch's initialisation). Stacked layers (`layers`)
update or skip together; the gate reads the top layer, and each layer above the first reads the candidate
output of the layer below (as theirs). Differences from their code: a stacked GRU's candidate reads the layer
below (theirs reads the sequence input in every layer, which looks like a slip: its gates read the layer below).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqmodels.heads.common import HeadOutput
from seqmodels.registry import CLASSIFY, register_head

GRU_KINDS = ("reference", "torch")


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


def _glorot(*weights: torch.Tensor) -> None:
    """Glorot-uniform over the matrices stacked side by side ([W_x | W_h], as TensorFlow's linear on a
    concatenated [x, h] input initialises its one matrix): fan-in is the sum of their inputs."""
    fan_out = weights[0].shape[0]
    fan_in = sum(w.shape[1] for w in weights)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    for w in weights:
        nn.init.uniform_(w, -bound, bound)


class _Layer(nn.Module):
    """One recurrent layer: `project` maps its input to the input half of the gates (one matrix product for
    a whole sequence), `candidate` is the cell's update S on a projected input. Its parameters:
      lstm:          gates [i, f, o, g] (G = 4H); weight_ih (G, D), weight_hh (G, H), bias (G)
      gru reference: [r, u | candidate] (G = 3H); weight_hh rows 2H.. map r * h into the candidate
      gru torch:     torch's GRUCell [r, z, n] with its two biases (bias_hh kept apart: r scales it)
    """

    def __init__(self, kind: str, in_dim: int, hidden: int, forget_bias: float):
        super().__init__()
        self.kind, self.hidden = kind, hidden
        gates = 4 * hidden if kind == "lstm" else 3 * hidden
        self.weight_ih = nn.Parameter(torch.empty(gates, in_dim))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden))
        self.bias = nn.Parameter(torch.zeros(gates))
        self.h0 = nn.Parameter(torch.randn(hidden))  # learned initial state (1-D: no weight decay)
        self.c0 = nn.Parameter(torch.randn(hidden)) if kind == "lstm" else None
        self.bias_hh = nn.Parameter(torch.empty(gates)) if kind == "gru-torch" else None
        with torch.no_grad():
            if kind == "lstm":
                _glorot(self.weight_ih, self.weight_hh)
                self.bias[hidden : 2 * hidden] = forget_bias  # theirs: sigmoid(f + forget_bias), bias from 0
            elif kind == "gru-reference":
                _glorot(self.weight_ih[: 2 * hidden], self.weight_hh[: 2 * hidden])  # gates: one matrix
                _glorot(self.weight_ih[2 * hidden :], self.weight_hh[2 * hidden :])  # candidate: another
                self.bias[: 2 * hidden] = 1.0  # theirs: bias_start=1.0, "not reset and not update" at first
            else:  # torch's GRUCell.reset_parameters
                bound = 1 / math.sqrt(hidden)
                for p in (self.weight_ih, self.weight_hh, self.bias, self.bias_hh):
                    nn.init.uniform_(p, -bound, bound)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., G): W_ih x + b."""
        return torch.nn.functional.linear(x, self.weight_ih, self.bias)

    def candidate(self, gx: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None):
        """S on the projected input gx (B, G) and the layer's state: (h̃, c̃) for an LSTM, (h̃, None) else."""
        H = self.hidden
        if self.kind == "lstm":
            gates = torch.addmm(gx, h, self.weight_hh.t())  # (B, 4H)
            sig, g = gates.split([3 * H, H], dim=1)  # split, not slicing: its backward is one cat
            i, f, o = torch.sigmoid(sig).chunk(3, dim=1)
            c_new = torch.addcmul(f * c, i, torch.tanh(g))
            return o * torch.tanh(c_new), c_new
        w_gates, w_cand = self.weight_hh.split([2 * H, H])
        gx_gates, gx_cand = gx.split([2 * H, H], dim=1)
        if self.kind == "gru-reference":
            r, u = torch.sigmoid(torch.addmm(gx_gates, h, w_gates.t())).chunk(2, dim=1)
            cand = torch.tanh(torch.addmm(gx_cand, r * h, w_cand.t()))  # reset before the map
            return torch.lerp(cand, h, u), None  # u h + (1 - u) cand
        gh = torch.addmm(self.bias_hh, h, self.weight_hh.t())  # (B, 3H)
        gh_gates, gh_cand = gh.split([2 * H, H], dim=1)
        r, z = torch.sigmoid(gx_gates + gh_gates).chunk(2, dim=1)
        cand = torch.tanh(torch.addcmul(gx_cand, r, gh_cand))  # reset after the map
        return torch.lerp(cand, h, z), None  # (1 - z) n + z h


@register_head("skip-lstm", cell="lstm", skip=True, classification=CLASSIFY)
@register_head("skip-gru", cell="gru", skip=True, classification=CLASSIFY)
class SkipRNNHead(nn.Module):
    def __init__(
        self,
        in_dim: int,  # D of the store's features
        num_classes: int,
        cell: str = "lstm",  # "lstm" or "gru"
        hidden: int = 256,  # recurrent units per layer
        layers: int = 1,  # stacked layers; they update or skip together, the gate reads the top one
        gru: str = "reference",  # GRU formulation: "reference" (the authors') or "torch" (torch's GRUCell)
        forget_bias: float = 1.0,  # LSTM: initial bias of the forget gate (theirs: 1)
        update_bias: float = 1.0,  # initial bias b of the update gate
        dropout: float = 0.2,  # dropout before the classifier
        input_norm: bool = True,  # LayerNorm over each step's features (off for raw low-dimensional inputs)
    ):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', not {cell!r}")
        if gru not in GRU_KINDS:
            raise ValueError(f"gru must be {' or '.join(GRU_KINDS)}, not {gru!r}")
        if cell == "lstm" and gru != "reference":
            raise ValueError("gru applies to skip-gru only")
        if cell == "gru" and forget_bias != 1.0:
            raise ValueError("forget_bias applies to skip-lstm only (a GRU has no forget gate)")
        self.kind = cell
        self.hidden = hidden
        self.gates_open = False  # True (training's gate warm-up, seqmodels.protocol): every step updates
        layer_kind = "lstm" if cell == "lstm" else f"gru-{gru}"
        self.norm = nn.LayerNorm(in_dim) if input_norm else nn.Identity()
        self.layers = nn.ModuleList(
            _Layer(layer_kind, in_dim if i == 0 else hidden, hidden, forget_bias) for i in range(layers)
        )
        self.input_gates = self.layers[0].weight_ih.shape[0]  # G: the width `project` gives
        self.gate = nn.Linear(hidden, 1)
        _glorot(self.gate.weight)
        nn.init.constant_(self.gate.bias, update_bias)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        # state keys per layer, bottom first; the top layer's are "h" and "c"
        top = len(self.layers) - 1
        self._keys = [("h", "c") if i == top else (f"h{i}", f"c{i}") for i in range(len(self.layers))]

    def initial_state(self, batch: int, like: torch.Tensor) -> dict[str, torch.Tensor]:
        """The state before step 1: the learned s_0 of every layer, Δũ = 1 and nothing accumulated, so ũ_1 = 1.
        `like` gives the dtype and device."""
        state = {"prob": like.new_ones(batch, 1), "cum": like.new_zeros(batch, 1)}
        for layer, (hk, ck) in zip(self.layers, self._keys):
            state[hk] = layer.h0.to(like).expand(batch, -1)
            if layer.c0 is not None:
                state[ck] = layer.c0.to(like).expand(batch, -1)
        return state

    @staticmethod
    def update_probability(state: dict[str, torch.Tensor]) -> torch.Tensor:
        """ũ_t for the coming step, (B, 1): known before that step's input is seen."""
        return state["cum"] + torch.minimum(state["prob"], 1 - state["cum"])

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The input half of the first layer's gates, W_ih x + b, for any number of steps at once: one large
        matrix product for a whole sequence instead of one small one per step. (..., D) -> (..., G)."""
        return self.layers[0].project(x)

    def step(self, gates_x: torch.Tensor, state: dict, real: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
        """One step on the projected input (`project` of the normalised x_t, (B, G)); real (B, 1) is 0 on
        padding. Returns (new state, u_t (B, 1))."""
        u_tilde = self.update_probability(state)
        u = torch.ones_like(u_tilde) if self.gates_open else binarize(u_tilde)
        if real is not None:
            u = u * real  # padding never updates: the state after the last real step carries through
        new = {}
        gx, c_new = gates_x, None
        for i, (layer, (hk, ck)) in enumerate(zip(self.layers, self._keys)):
            if i > 0:
                gx = layer.project(h_new)  # the layer below's candidate output, as in their stacked cells
            h_new, c_new = layer.candidate(gx, state[hk], state.get(ck))
            # lerp is exact at u = 0 (start) and u = 1 (end): a skipped step copies the state bit for bit
            new[hk] = torch.lerp(state[hk], h_new, u)
            if c_new is not None:
                new[ck] = torch.lerp(state[ck], c_new, u)
        delta = torch.sigmoid(self.gate(c_new if c_new is not None else h_new))  # Δũ_t from the top layer
        new["prob"] = torch.lerp(state["prob"], delta, u)
        new["cum"] = (1 - u) * u_tilde  # reset after an update, else keep accumulating
        return new, u

    def unroll(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, dict]:
        """Run the whole sequence x (B, T, D): the top layer's output after each step (T tensors (B, H)),
        the updates (B, T), and the final state."""
        gates_x = self.project(self.norm(x)).unbind(1)  # T x (B, G); unbind, not x[:, t]: see below
        # (indexing x[:, t] in the loop makes autograd fill a zero (B, T, G) gradient per step, which cost
        # more than the whole recurrence; unbind's backward is one stack)
        real = None if bool(mask.all()) else mask.to(x.dtype).unsqueeze(-1).unbind(1)
        state = self.initial_state(x.shape[0], x)
        outputs, updates = [], []
        for t, gx in enumerate(gates_x):
            state, u = self.step(gx, state, None if real is None else real[t])
            outputs.append(state["h"])
            updates.append(u)
        return outputs, torch.cat(updates, dim=1), state

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        _, updates, state = self.unroll(x, mask)
        return HeadOutput(self.classifier(state["h"]), updates)  # (B, C), (B, T)


def budget_loss(updates: torch.Tensor, cost: float) -> torch.Tensor:
    """λ Σ_t u_t, averaged over the batch (updates is 0 on padding)."""
    return cost * updates.sum(1).mean()


def update_fraction(updates: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of real steps whose state was updated."""
    return float(updates.sum() / mask.sum().clamp_min(1))
