"""`--layer NAME`: features from any named module of a backbone instead of its penultimate layer.

The module's output is kept by a forward hook and pooled to one vector per frame or clip: a (B, C, H, W) map
over space, a (B, C, T, H, W) one over time and space, (B, N, C) tokens over the tokens, a (B, C) vector as it
is. A module that returns a tuple or a transformers output gives its first tensor (the hidden states). Names
are those of `model.named_modules()` (`layer3`, `blocks.6`, `Mixed_4f`); a wrong one is one error line with
the nearest names.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from featx.errors import FeatxError


def pooled(output) -> torch.Tensor:
    """A module's output as (B, D): its first tensor, averaged over every axis after the channels."""
    if not isinstance(output, torch.Tensor):
        first = output[0] if isinstance(output, (tuple, list)) else next(iter(output.values()), None)
        if not isinstance(first, torch.Tensor):
            raise FeatxError(f"--layer: the module returns {type(output).__name__}, not a tensor of features")
        output = first
    if output.ndim == 2:  # (B, C)
        return output
    if output.ndim == 3:  # (B, N, C) tokens
        return output.mean(dim=1)
    return output.flatten(2).mean(dim=2)  # (B, C, ...) maps: over space (and time)


class LayerTap(nn.Module):
    """`model`, returning the pooled output of its module `name` (the model still runs to the end: modules
    may be called in any order, so nothing after the layer is known to be unused)."""

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        modules = dict(model.named_modules())
        if not name or name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
            hint = f"; nearest: {', '.join(close)}" if close else "; see model.named_modules()"
            raise FeatxError(f"--layer {name!r}: no such module in this backbone{hint}")
        self.model, self.name = model, name
        self._kept: list = []
        modules[name].register_forward_hook(lambda module, inputs, output: self._kept.append(output))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._kept.clear()
        self.model(x)
        if not self._kept:
            raise FeatxError(f"--layer {self.name!r}: the module is not called by this backbone's forward pass")
        return pooled(self._kept[-1])
