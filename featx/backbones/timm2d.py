"""Any timm image model as a frozen per-frame backbone (the single-frame model), with weights from the
bundled package, a local checkpoint, timm's hub, or a seeded random init (for tests)."""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path

import torch

from featx.backbones import bundled
from featx.errors import FeatxError

RANDOM_INIT = "random-init"
AUTO = "auto"
RANDOM_SEED = 0


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tensors_sha256(state: dict) -> str:
    """A digest of a state dict's names, dtypes, shapes and values (for weights that are not one file)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_model_name(name: str) -> None:
    import timm

    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see timm.list_models()"
    raise FeatxError(f"unknown backbone {name!r}{hint}")


def read_state_dict(path: Path) -> dict:
    """A state dict from a plain state dict, a timm/training checkpoint dict, or a .safetensors file."""
    if not path.is_file():
        raise FeatxError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file ends up here; say which and why
        raise FeatxError(f"--weights {path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    for wrapper in ("state_dict_ema", "model_ema", "state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FeatxError(f"--weights {path}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_strict(model: torch.nn.Module, state: dict, source: str) -> None:
    """Load every backbone tensor exactly; a classifier in the checkpoint is dropped (features only)."""
    wanted = set(model.state_dict())
    classifier = model.pretrained_cfg.get("classifier") or "classifier"
    heads = classifier if isinstance(classifier, (list, tuple)) else (classifier,)
    state = {k: v for k, v in state.items() if k in wanted or not k.startswith(tuple(f"{h}." for h in heads))}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        missing = sorted(wanted - set(state))
        unexpected = sorted(set(state) - wanted)
        detail = f"missing {missing[:3]}, unexpected {unexpected[:3]}" if missing or unexpected else str(exc)
        raise FeatxError(f"{source} does not fit {model.default_cfg.get('architecture')}: {detail}") from None


def create(name: str, weights: str, num_classes: int = 0) -> tuple[torch.nn.Module, str, str]:
    """Build timm model `name` in eval mode with its weights. Returns (model, weights source, sha256)."""
    import timm

    check_model_name(name)
    if weights == RANDOM_INIT:
        torch.manual_seed(RANDOM_SEED)
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        return model.eval(), RANDOM_INIT, tensors_sha256(model.state_dict())
    if weights == AUTO and name == bundled.TIMM_NAME:
        path = bundled.weights_path()
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        state = bundled.timm_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        _load_strict(model, state, f"bundled weights {path}")
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
    path = Path(weights).expanduser()
    state = read_state_dict(path)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    _load_strict(model, state, f"--weights {path}")
    return model.eval(), str(path.resolve()), file_sha256(path)
