"""Inflating a 2D CNN into a 3D one (Carreira & Zisserman 2017, "I3D"): a pretrained image network becomes a
pretrained video network without video training.

Each k x k convolution becomes a t x k x k one whose weights are the 2D kernel
- repeated over the t time slices and divided by t (`mode="mean"`), or
- put in the middle slice only, zeros elsewhere (`mode="center"`).
Either way a static clip (one frame repeated) gives, at every time step, exactly the 2D network's activations,
so the pooled clip feature equals the 2D feature of that frame. Time is padded by repeating the edge frames
(zeros would break that property at the clip's ends); space keeps the 2D padding. BatchNorm, max pooling and
the global pool become their 3D counterparts; 1 x 1 convolutions stay 1 in time.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("mean", "center")


class InflatedConv(nn.Module):
    """A Conv2d inflated to t x k x k, with replicate padding in time and the 2D padding in space."""

    def __init__(self, conv: nn.Conv2d, time_kernel: int, time_stride: int, mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"inflation mode must be one of {MODES}, not {mode!r}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only zero-padded convolutions with numeric padding can be inflated")
        self.time_pad = time_kernel // 2
        self.conv = nn.Conv3d(
            conv.in_channels, conv.out_channels, (time_kernel, *conv.kernel_size), stride=(time_stride, *conv.stride),
            padding=(0, *conv.padding), dilation=(1, *conv.dilation), groups=conv.groups, bias=conv.bias is not None,
        )
        w = conv.weight.detach()
        with torch.no_grad():
            if mode == "mean":
                self.conv.weight.copy_(w.unsqueeze(2).repeat(1, 1, time_kernel, 1, 1) / time_kernel)
            else:
                self.conv.weight.zero_()
                self.conv.weight[:, :, time_kernel // 2].copy_(w)
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        return self.conv(x)


class _GlobalPool3d(nn.Module):
    """Mean over time, height and width: (B, C, T, H, W) -> (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


def _bn3d(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    out = nn.BatchNorm3d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    out.load_state_dict(bn.state_dict())
    return out


def _maxpool3d(pool: nn.MaxPool2d) -> nn.MaxPool3d:
    two = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return nn.MaxPool3d((1, *two(pool.kernel_size)), (1, *two(pool.stride)), (0, *two(pool.padding)),
                        ceil_mode=pool.ceil_mode)


def inflate(model: nn.Module, time_kernel: int = 3, mode: str = "mean", time_stride: int = 1) -> nn.Module:
    """A 3D copy of a 2D timm ResNet-family `model` (with its classifier removed: num_classes=0): input
    (B, 3, T, H, W), output (B, D). k x k convolutions get `time_kernel` slices (1 x 1 ones stay 1), the stem
    convolution gets `time_stride` in time."""
    if time_kernel < 1 or time_kernel % 2 == 0:
        raise ValueError(f"the temporal kernel must be an odd positive size, not {time_kernel}")
    model3d = copy.deepcopy(model)
    first = [True]

    def convert(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.Conv2d):
                t = time_kernel if max(child.kernel_size) > 1 else 1
                setattr(module, name, InflatedConv(child, t, time_stride if first[0] else 1, mode))
                first[0] = False
            elif isinstance(child, nn.BatchNorm2d):
                setattr(module, name, _bn3d(child))
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, name, _maxpool3d(child))
            elif type(child).__name__ in ("SelectAdaptivePool2d", "AdaptiveAvgPool2d"):
                setattr(module, name, _GlobalPool3d())
            else:
                convert(child)

    convert(model3d)
    unsupported = [type(m).__name__ for m in model3d.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d))]
    if unsupported:
        raise ValueError(f"cannot inflate layers {sorted(set(unsupported))}: only ResNet-family models are supported")
    return model3d.eval()
