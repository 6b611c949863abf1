"""`--layer NAME`: features from any named module of a backbone instead of its penultimate layer.

The module's output is kept by a forward hook and pooled to one vector per frame or clip: a (B, C, H, W) map
over space, a (B, C, T, H, W) one over time and space, (B, N, C) tokens over the tokens, a (B, C) vector as it
is; the output of a Linear or LayerNorm module is channels-last ((B, H, W, C) in ConvNeXt and Swin blocks), as
is that of a module holding them whose last axis has their width (a Swin stage), and is pooled over every axis but
the last (`channels_last`). A module that returns a tuple or a transformers output gives its first tensor (the hidden states). Names
are those of `model.named_modules()` (`layer3`, `blocks.6`, `Mixed_4f`); a wrong one is one error line with
the nearest names.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from featx.errors import FeatxError


def pooled(output, channels_last: bool = False) -> torch.Tensor:
    """A module's output as (B, D): its first tensor, averaged over every axis but the batch and the channels
    (the last axis when `channels_last`, else the second)."""
    output = first_tensor(output)
    if output.ndim == 2:  # (B, C)
        return output
    if output.ndim == 3 or channels_last:  # (B, N, C) tokens, (B, H, W, C) or (B, T, H, W, C) maps
        return output.flatten(1, -2).mean(dim=1)
    return output.flatten(2).mean(dim=2)  # (B, C, ...) maps: over space (and time)


def first_tensor(output) -> torch.Tensor:
    """A module's output, or the first tensor of a tuple, list or transformers output (the hidden states)."""
    if isinstance(output, torch.Tensor):
        return output
    first = output[0] if isinstance(output, (tuple, list)) else next(iter(output.values()), None)
    if not isinstance(first, torch.Tensor):
        raise FeatxError(f"--layer: the module returns {type(output).__name__}, not a tensor of features")
    return first


class LayerTap(nn.Module):
    """`model`, returning the pooled output of its module `name` (the model still runs to the end: modules
    may be called in any order, so nothing after the layer is known to be unused). The hook is set for each call
    and removed after it, so a copy of the tap (the flow stream's twin) taps its own copy of the module."""

    def __init__(self, model: nn.Module, name: str):
        super().__init__()
        modules = dict(model.named_modules())
        if not name or name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
            hint = f"; nearest: {', '.join(close)}" if close else "; see model.named_modules()"
            raise FeatxError(f"--layer {name!r}: no such module in this backbone{hint}")
        self.model, self.name = model, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        module = self.model.get_submodule(self.name)
        kept: list = []
        handle = module.register_forward_hook(lambda m, inputs, output: kept.append(output))
        try:
            self.model(x)
        finally:
            handle.remove()
        if not kept:
            raise FeatxError(f"--layer {self.name!r}: the module is not called by this backbone's forward pass")
        return pooled(kept[-1], channels_last=channels_last(module, kept[-1]))


def channels_last(module: nn.Module, output) -> bool:
    """Whether `module`'s map output is channels-last ((B, H, W, C), (B, T, H, W, C)): a Linear or LayerNorm acts on
    the last axis, so its output is; a module holding them (a Swin stage or patch merging) is when its output's last
    axis has the width of one of them and its second axis has none. A ConvNeXt block, whose Linear layers run on a
    permuted copy and which returns (B, C, H, W), is not: its second axis has their width."""
    if isinstance(module, (nn.Linear, nn.LayerNorm)):
        return True
    widths = [m.out_features if isinstance(m, nn.Linear) else m.normalized_shape[-1]
              for m in module.modules() if isinstance(m, (nn.Linear, nn.LayerNorm))]
    tensor = first_tensor(output)
    return tensor.ndim in (4, 5) and tensor.shape[-1] in widths and tensor.shape[1] not in widths
