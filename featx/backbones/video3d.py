"""Clip (3D) backbones from torchvision.models.video, with parameter names exactly torchvision's, so its
published checkpoints load from a local file (`--weights`, read and loaded strictly by
featx.backbones.weights, as for every backbone); and C3D, with the names of the common PyTorch port of its
Sports-1M weights.

Each model gives pooled clip features: its classifier is an identity (a checkpoint's classifier is dropped).
Input: (B, 3, T, H, W) float, normalised with the Kinetics-400 mean and std that torchvision's weights use;
C3D gets raw 0-255 RGB values (no mean subtracted; see the README).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from featx.backbones.weights import AUTO, with_weights
from featx.errors import FeatxError

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
RAW_0_255 = ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # normalising with these leaves 0-255 values


class C3D(nn.Module):
    """C3D (Tran et al. 2015) with the parameter names of the common PyTorch port of the Sports-1M weights
    (conv1, conv2, conv3a ... conv5b, fc6, fc7, fc8). Returns fc6 or fc7 activations after their ReLU
    (4096-d; Montes et al. used fc6 of 16-frame clips at 112 x 112)."""

    def __init__(self, feature: str = "fc6", num_classes: int = 487):
        super().__init__()
        conv = lambda i, o: nn.Conv3d(i, o, 3, padding=1)  # noqa: E731
        self.conv1, self.pool1 = conv(3, 64), nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.conv2, self.pool2 = conv(64, 128), nn.MaxPool3d(2, 2)
        self.conv3a, self.conv3b, self.pool3 = conv(128, 256), conv(256, 256), nn.MaxPool3d(2, 2)
        self.conv4a, self.conv4b, self.pool4 = conv(256, 512), conv(512, 512), nn.MaxPool3d(2, 2)
        self.conv5a, self.conv5b, self.pool5 = conv(512, 512), conv(512, 512), nn.MaxPool3d(2, 2, padding=(0, 1, 1))
        self.fc6, self.fc7, self.fc8 = nn.Linear(8192, 4096), nn.Linear(4096, 4096), nn.Linear(4096, num_classes)
        self.feature = feature

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 16, 112, 112)
        r = torch.relu
        x = self.pool1(r(self.conv1(x)))
        x = self.pool2(r(self.conv2(x)))
        x = self.pool3(r(self.conv3b(r(self.conv3a(x)))))
        x = self.pool4(r(self.conv4b(r(self.conv4a(x)))))
        x = self.pool5(r(self.conv5b(r(self.conv5a(x)))))
        x = r(self.fc6(x.flatten(1)))
        return x if self.feature == "fc6" else r(self.fc7(x))


@dataclass(frozen=True)
class ClipModel:
    """How torchvision defines and feeds one video model."""

    builder: str  # function name in torchvision.models.video
    classifier: tuple[str, ...]  # attribute path of the final layer replaced by an identity
    crop: int  # H = W of the input
    resize_shorter: int  # shorter side before the centre crop
    clip_len: int  # frames per clip by default
    normalise: tuple = (KINETICS_MEAN, KINETICS_STD)  # (mean, std) applied to [0, 1] RGB


CLIP_MODELS = {
    "r3d_18": ClipModel("r3d_18", ("fc",), 112, 128, 16),
    "mc3_18": ClipModel("mc3_18", ("fc",), 112, 128, 16),
    "r2plus1d_18": ClipModel("r2plus1d_18", ("fc",), 112, 128, 16),
    "s3d": ClipModel("s3d", ("classifier",), 224, 256, 16),
    "mvit_v1_b": ClipModel("mvit_v1_b", ("head", "1"), 224, 256, 16),
    "mvit_v2_s": ClipModel("mvit_v2_s", ("head", "1"), 224, 256, 16),
    "swin3d_t": ClipModel("swin3d_t", ("head",), 224, 256, 16),
    "swin3d_s": ClipModel("swin3d_s", ("head",), 224, 256, 16),
    "swin3d_b": ClipModel("swin3d_b", ("head",), 224, 256, 16),
    "c3d": ClipModel("c3d", ("fc8",), 112, 128, 16, RAW_0_255),  # fc6 features
    "c3d_fc7": ClipModel("c3d_fc7", ("fc8",), 112, 128, 16, RAW_0_255),
}


def _set_attr(model: nn.Module, path: tuple[str, ...], value: nn.Module) -> None:
    parent = model
    for name in path[:-1]:
        parent = getattr(parent, name)
    if isinstance(parent, nn.Sequential):
        parent[int(path[-1])] = value
    else:
        setattr(parent, path[-1], value)


def _spec(name: str) -> ClipModel:
    if name not in CLIP_MODELS:
        raise FeatxError(f"unknown clip backbone {name!r}; choose from {', '.join(CLIP_MODELS)}")
    return CLIP_MODELS[name]


def create_clip_model(name: str) -> nn.Module:
    """The architecture of clip backbone `name` with random weights, its classifier replaced by an identity."""
    import torchvision.models.video as tvv

    spec = _spec(name)
    model = C3D("fc7" if name == "c3d_fc7" else "fc6") if name.startswith("c3d") else getattr(tvv, spec.builder)(weights=None)
    _set_attr(model, spec.classifier, nn.Identity())
    return model.eval()


def create(name: str, weights: str) -> tuple[nn.Module, str, str]:
    """Clip backbone `name` in eval mode with `weights`: a checkpoint with torchvision's keys (or the C3D
    port's), its classifier included or not, or RANDOM_INIT. Returns (model, weights source, sha256)."""
    head = (".".join(_spec(name).classifier),)  # an unknown name fails before the file is read
    if weights == AUTO:
        raise FeatxError(
            f"{name}: pass --weights PATH (torchvision's checkpoint, e.g. {name}-*.pth) or --random-init; "
            "featx does not download weights"
        )
    owner = "featx" if name.startswith("c3d") else "torchvision"
    return with_weights(lambda: create_clip_model(name), weights, f"{owner}'s {name}", head)
