"""Any timm image model as a frozen per-frame backbone (the single-frame model), with weights from the
bundled package, a local checkpoint, timm's hub, or a seeded random init (for tests); files are read and
loaded by featx.backbones.weights, as for every backbone."""

from __future__ import annotations

import difflib

import torch

from featx.backbones import bundled
from featx.backbones.weights import AUTO, file_sha256, load_into, read_state_dict, tensors_sha256, with_weights
from featx.errors import FeatxError


def check_model_name(name: str) -> None:
    import timm

    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise FeatxError(f"unknown backbone {name!r}{hint}")


def create(name: str, weights: str, num_classes: int = 0) -> tuple[torch.nn.Module, str, str]:
    """Build timm model `name` in eval mode with its weights. Returns (model, weights source, sha256)."""
    import timm

    check_model_name(name)
    new = lambda: timm.create_model(name, pretrained=False, num_classes=num_classes)  # noqa: E731
    if weights == AUTO and name == bundled.TIMM_NAME:
        path = bundled.weights_path()
        label = f"bundled weights {path}"
        model = new()
        load_into(model, bundled.timm_state_dict(read_state_dict(path, label)), label, f"timm's {name}")
        return model.eval(), f"bundled:{bundled.PACKAGE}/{bundled.FILE_NAME}", file_sha256(path)
    if weights == AUTO:
        try:
            model = timm.create_model(name, pretrained=True, num_classes=num_classes)
        except Exception as exc:  # hub/network failures come in many types; all mean "no weights"
            raise FeatxError(
                f"could not download pretrained weights for {name!r} ({type(exc).__name__}); offline? "
                "pass --weights PATH (a local state dict, timm checkpoint or .safetensors) or --random-init"
            ) from None
        tag = model.pretrained_cfg.get("hf_hub_id") or model.pretrained_cfg.get("tag") or name
        return model.eval(), f"timm-hub:{tag}", tensors_sha256(model.state_dict())
    return with_weights(new, weights, f"timm's {name}")
