"""Inflating a 2D CNN into a 3D one (Carreira & Zisserman 2017, "I3D"): a pretrained image network becomes a
pretrained video network without video training.

Each k x k convolution becomes a t x k x k one whose weights are the 2D kernel
- repeated over the t time slices and divided by t (`mode="mean"`), or
- put in the middle slice only, zeros elsewhere (`mode="center"`).
Either way a static clip (one frame repeated) gives, at every time step, exactly the 2D network's activations,
so the pooled clip feature equals the 2D feature of that frame. Time is padded by repeating the edge frames
(zeros would break that property at the clip's ends); space keeps the 2D padding. BatchNorm becomes BatchNorm3d;
max and average pools become t x k x k pools (t = 1 unless the caller's plan says otherwise, as I3D's does);
adaptive pools average (or take the max) over all of time, then pool space as in 2D, so what follows them sees
the 2D shapes. 1 x 1 convolutions stay 1 in time.

Any network built from those layers and elementwise ones (activations, dropout, flatten, identity) inflates; the
forwards of its blocks may add, multiply and concatenate along channels (ResNet's residuals, Inception's
branches). Anything else is refused with one line naming the first such layer, and the result is checked on a
small static clip before it is returned, which catches a forward that pools or reshapes by hand.
"""

from __future__ import annotations

import copy
import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from featx.errors import FeatxError, exception_line

MODES = ("mean", "center")

# Layers without parameters that act on each element (or, for Flatten, only after a global pool), and so act
# the same on a (B, C, T, H, W) tensor as on (B, C, H, W). Dropout is the identity in eval mode. Both tuples are
# matched by exact type: a subclass may change the forward (timm's BatchNormAct2d adds an activation,
# Conv2dSame pads in its forward), so it is refused rather than inflated as its base.
_ELEMENTWISE = (nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
                nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Dropout, nn.Dropout2d, nn.Flatten)
_INFLATABLE = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _two(v) -> tuple[int, int]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _same_time_pad(frames: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) frames that make a strided window cover every frame, ceil(T / stride) outputs (TF's SAME,
    as in I3D's reference code); split with the extra frame after."""
    total = max((math.ceil(frames / stride) - 1) * stride + kernel - frames, 0)
    return total // 2, total - total // 2


class InflatedConv(nn.Module):
    """A Conv2d inflated to t x k x k, with replicate padding in time and the 2D padding in space."""

    def __init__(self, conv: nn.Conv2d, time_kernel: int, time_stride: int, mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"inflation mode must be one of {MODES}, not {mode!r}")
        if time_kernel < 1 or time_kernel % 2 == 0:
            raise ValueError(f"a convolution's temporal kernel must be an odd positive size, not {time_kernel}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only zero-padded convolutions with numeric padding can be inflated")
        self.time_pad = time_kernel // 2
        w = conv.weight.detach()
        self.conv = nn.utils.skip_init(  # no random init: every weight is set below (init took seconds for I3D)
            nn.Conv3d, conv.in_channels, conv.out_channels, (time_kernel, *conv.kernel_size),
            stride=(time_stride, *conv.stride), padding=(0, *conv.padding), dilation=(1, *conv.dilation),
            groups=conv.groups, bias=conv.bias is not None, device=w.device, dtype=w.dtype,
        )
        with torch.no_grad():
            if mode == "mean":
                self.conv.weight.copy_((w / time_kernel).unsqueeze(2).expand_as(self.conv.weight))
            else:
                self.conv.weight.zero_()
                self.conv.weight[:, :, time_kernel // 2].copy_(w)
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, self.time_pad), mode="replicate")
        return self.conv(x)


class InflatedPool(nn.Module):
    """A MaxPool2d or AvgPool2d made t x k x k (stride s in time): time padded by repeating the edge frames to
    ceil(T / s) outputs, space pooled exactly as the 2D layer pools it (padding, ceil_mode, count_include_pad)."""

    def __init__(self, pool: nn.MaxPool2d | nn.AvgPool2d, time_kernel: int, time_stride: int):
        super().__init__()
        self.time_kernel, self.time_stride = time_kernel, time_stride
        kernel, stride, padding = _two(pool.kernel_size), _two(pool.stride or pool.kernel_size), _two(pool.padding)
        if isinstance(pool, nn.MaxPool2d):
            self.pool = nn.MaxPool3d((time_kernel, *kernel), (time_stride, *stride), (0, *padding),
                                     dilation=(1, *_two(pool.dilation)), ceil_mode=pool.ceil_mode)
        else:
            self.pool = nn.AvgPool3d((time_kernel, *kernel), (time_stride, *stride), (0, *padding),
                                     ceil_mode=pool.ceil_mode, count_include_pad=pool.count_include_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        if self.time_kernel > 1 or self.time_stride > 1:
            x = F.pad(x, (0, 0, 0, 0, *_same_time_pad(x.shape[2], self.time_kernel, self.time_stride)), mode="replicate")
        return self.pool(x)


class TimeGlobalPool(nn.Module):
    """An adaptive 2D pool over a clip: the mean (or max) over all of time, then the 2D pool of space.
    (B, C, T, H, W) -> (B, C, *output_size), the 2D layer's shape, so flatten and the like work unchanged."""

    def __init__(self, pool: nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        super().__init__()
        self.spatial = copy.deepcopy(pool)
        self.max = isinstance(pool, nn.AdaptiveMaxPool2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(x.amax(dim=2) if self.max else x.mean(dim=2))


def _bn3d(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    like = next(bn.buffers(), None) if bn.weight is None else bn.weight
    out = nn.BatchNorm3d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                         device=None if like is None else like.device, dtype=None if like is None else like.dtype)
    out.load_state_dict(bn.state_dict())
    return out


def _refusal(name: str, module: nn.Module, why: str) -> FeatxError:
    where = f"layer {name!r}" if name else "the model itself"
    return FeatxError(
        f"cannot inflate {where} ({type(module).__name__}): {why}; featx inflates networks of Conv2d, BatchNorm2d, "
        "MaxPool2d, AvgPool2d, adaptive pools and elementwise layers (a classifier must be removed first)"
    )


def check_inflatable(model: nn.Module) -> None:
    """Refuse (one FeatxError line) the first layer, in module order, that inflation cannot turn into 3D."""
    for name, module in model.named_modules():
        own = [n for n, _ in module.named_parameters(recurse=False)]
        own += [n for n, b in module.named_buffers(recurse=False) if b is not None]
        children = next(module.children(), None) is not None
        if type(module) in _INFLATABLE:
            if type(module) is nn.Conv2d and (module.padding_mode != "zeros" or isinstance(module.padding, str)):
                raise _refusal(name, module, f"padding {module.padding!r} ({module.padding_mode}); only numeric zero "
                                             "padding is inflated")
            if type(module) is nn.AvgPool2d and module.divisor_override is not None:
                raise _refusal(name, module, "a divisor_override does not carry over to a pool over time")
            continue
        if type(module) in _ELEMENTWISE:
            continue
        if not children:
            raise _refusal(name, module, "not a layer that has a 3D counterpart")
        if own:
            raise _refusal(name, module, f"it holds tensors of its own ({', '.join(own[:3])}) outside known layers")


def _convert(model: nn.Module, time_kernel: int, mode: str, time_stride: int, plan: Mapping[str, tuple[int, int]]):
    """Replace, in place, every inflatable layer of `model` by its 3D counterpart (see `inflate`)."""
    first_conv = [True]

    def visit(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}{name}"
            kind = type(child)  # exact types, as check_inflatable allowed them
            if kind is nn.Conv2d:
                default = (time_kernel if max(child.kernel_size) > 1 else 1, time_stride if first_conv[0] else 1)
                new = InflatedConv(child, *plan.get(path, default), mode)
                first_conv[0] = False
            elif kind is nn.BatchNorm2d:
                new = _bn3d(child)
            elif kind in (nn.MaxPool2d, nn.AvgPool2d):
                new = InflatedPool(child, *plan.get(path, (1, 1)))
            elif kind in (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d):
                new = TimeGlobalPool(child)
            else:
                visit(child, f"{path}.")
                continue
            if isinstance(module, nn.Sequential) and name.isdigit():
                module[int(name)] = new
            else:
                setattr(module, name, new)

    visit(model, "")


@torch.no_grad()
def _verify_static_clip(model2d: nn.Module, model3d: nn.Module, size: int, frames: int) -> None:
    """Refuse a result that breaks the defining property on a random static clip (a forward that pools, reshapes
    or indexes by hand would)."""
    param = next(model2d.parameters(), None)
    if param is None or param.dtype not in (torch.float32, torch.float64):
        return  # half precision rounds too much for the check to tell a wrong forward from rounding
    conv = next(m for m in model2d.modules() if isinstance(m, nn.Conv2d))
    training = model2d.training
    model2d.eval()
    try:
        for side in (size, 224):  # a network too deep for `size` pixels gets an ImageNet-sized frame
            frame = torch.randn((1, conv.in_channels, side, side), generator=torch.Generator().manual_seed(0))
            frame = frame.to(param.device, param.dtype)
            try:
                want = model2d(frame)
                break
            except RuntimeError as exc:
                if side == 224:
                    raise FeatxError(f"cannot check the inflated {type(model2d).__name__}: the 2D network fails on "
                                     f"a frame of {size} or 224 px ({exception_line(exc)})") from None
    finally:
        model2d.train(training)
    try:
        got = model3d(frame.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous())
    except Exception as exc:  # a forward that cannot take 5D tensors: say which and why, on one line
        raise FeatxError(f"cannot inflate {type(model2d).__name__}: its forward fails on a clip ({exception_line(exc)}); "
                         "only layer-by-layer networks inflate") from None
    # Rounding alone stays far below this: 7e-5 of the largest feature, measured for a float32 random GoogLeNet
    # whose batch norms were fitted to its activations (64 px, 8 frames); a forward that pools or reshapes by
    # hand is off by a sizeable fraction of it.
    if not isinstance(got, torch.Tensor) or got.shape != want.shape or \
            (got - want).abs().max() > 1e-3 * want.abs().max() + 1e-6:
        raise FeatxError(f"cannot inflate {type(model2d).__name__}: a static clip does not give the 2D feature, so "
                         "its forward does more than elementwise ops and channel concatenation between layers")


def inflate(model: nn.Module, time_kernel: int = 3, mode: str = "mean", time_stride: int = 1,
            plan: Mapping[str, tuple[int, int]] | None = None, check_size: int | None = 32) -> nn.Module:
    """A 3D copy of the 2D network `model` (its classifier removed: timm's num_classes=0, or nn.Identity()):
    input (B, C, T, H, W), output what the 2D network gives for (B, C, H, W).

    k x k convolutions get `time_kernel` slices (1 x 1 ones stay 1) and the first convolution gets
    `time_stride`; pools stay 1 in time. `plan` overrides (temporal kernel, temporal stride) for the convolutions
    and pools it names (`model.named_modules()` names). Unless `check_size` is None, the result is checked on a
    static clip of that many pixels square and refused if it does not give the 2D output (see module doc)."""
    if time_kernel < 1 or time_kernel % 2 == 0:
        raise ValueError(f"the temporal kernel must be an odd positive size, not {time_kernel}")
    plan = dict(plan or {})
    layers = dict(model.named_modules())
    unknown = sorted(n for n in plan if type(layers.get(n)) not in (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))
    if unknown:
        raise ValueError(f"the inflation plan names layers that are not convolutions or pools: {unknown}")
    check_inflatable(model)
    model3d = copy.deepcopy(model)
    _convert(model3d, time_kernel, mode, time_stride, plan)
    model3d.eval()
    if check_size:
        _verify_static_clip(model, model3d, check_size, frames=4)  # replicate padding makes any length valid
    return model3d
