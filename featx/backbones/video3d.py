"""Clip (3D) backbones from torchvision.models.video, with parameter names exactly torchvision's, so its
published checkpoints load from a local file (`--weights`, a plain state dict, strictly).

Each model gives pooled clip features: the classifier is replaced by an identity after the weights are loaded.
Input: (B, 3, T, H, W) float, normalised with the Kinetics-400 mean and std that torchvision's weights use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from featx.errors import FeatxError

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True)
class ClipModel:
    """How torchvision defines and feeds one video model."""

    builder: str  # function name in torchvision.models.video
    classifier: tuple[str, ...]  # attribute path of the final layer replaced by an identity
    crop: int  # H = W of the input
    resize_shorter: int  # shorter side before the centre crop
    clip_len: int  # frames per clip by default


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
}


def _set_attr(model: nn.Module, path: tuple[str, ...], value: nn.Module) -> None:
    parent = model
    for name in path[:-1]:
        parent = getattr(parent, name)
    if isinstance(parent, nn.Sequential):
        parent[int(path[-1])] = value
    else:
        setattr(parent, path[-1], value)


def create_clip_model(name: str, weights: str | Path | None = None) -> nn.Module:
    """torchvision's `name` with `weights` (a state dict file with torchvision's keys, classifier included or
    not) loaded strictly, or random weights when None; returns it with its classifier replaced by an identity."""
    import torchvision.models.video as tvv

    if name not in CLIP_MODELS:
        raise FeatxError(f"unknown clip backbone {name!r}; choose from {', '.join(CLIP_MODELS)}")
    spec = CLIP_MODELS[name]
    model = getattr(tvv, spec.builder)(weights=None)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FeatxError(f"--weights {path}: no such file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        head = ".".join(spec.classifier) + "."
        has_head = any(k.startswith(head) for k in state)
        if not has_head:  # a features-only checkpoint: load everything else strictly
            _set_attr(model, spec.classifier, nn.Identity())
        try:
            missing, unexpected = model.load_state_dict(state, strict=False)
        except RuntimeError as exc:  # shapes differ
            raise FeatxError(f"--weights {path} does not match torchvision's {name}: {str(exc).splitlines()[1].strip()}") from None
        if missing or unexpected:
            raise FeatxError(
                f"--weights {path} does not match torchvision's {name}: "
                f"{len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})"
            )
    _set_attr(model, spec.classifier, nn.Identity())
    return model.eval()
