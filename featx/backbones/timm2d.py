"""Any timm image model as a frozen per-frame backbone (the single-frame model), with weights from the
bundled package, a local checkpoint, timm's hub (its cache or a download: featx.backbones.hub), or a seeded
random init (for tests); files are read and
loaded by featx.backbones.weights, as for every backbone."""

from __future__ import annotations

import contextlib
import difflib

import torch

from featx.backbones import bundled
from featx.backbones.weights import AUTO, file_sha256, load_into, read_state_dict, with_weights
from featx.errors import FeatxError, exception_line


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
    if weights == AUTO:  # the hub's cache, else one short download try, else one error line (featx.backbones.hub)
        from featx.backbones import hub

        found = hub.timm_checkpoint(name)
        try:  # timm's own loader: it adapts checkpoints (filter_fn) and drops the classifier for num_classes=0
            with _loads_recorded() as loads:
                model = timm.create_model(name, pretrained=True, num_classes=num_classes,
                                          pretrained_cfg_overlay={"file": str(found.path)})
        except Exception as exc:  # a damaged or foreign file, whatever timm raised: which file, on one line
            raise FeatxError(f"{name}: timm could not load {found.path} ({exception_line(exc)}); delete it and run "
                             f"`featx weights pull {name}`") from None
        _check_complete(name, found.path, loads)
        return model.eval(), found.source, file_sha256(found.path)
    return with_weights(new, weights, f"timm's {name}")


@contextlib.contextmanager
def _loads_recorded():
    """What every load_state_dict call made meanwhile reported: timm loads a pretrained file non-strictly once it
    has dropped the classifier, so a file of other tensors would load silently; featx checks it (_check_complete)."""
    loads, original = [], torch.nn.Module.load_state_dict

    def recorded(self, state_dict, strict=True, **kwargs):
        result = original(self, state_dict, strict=strict, **kwargs)
        loads.append(result)
        return result

    torch.nn.Module.load_state_dict = recorded
    try:
        yield loads
    finally:
        torch.nn.Module.load_state_dict = original


def _check_complete(name: str, path, loads: list) -> None:
    """One error line unless timm's load filled every tensor of the model and used every tensor of the file."""
    missing = [k for r in loads for k in r.missing_keys]
    unexpected = [k for r in loads for k in r.unexpected_keys]
    if not loads or missing or unexpected:
        what = (f"{len(missing)} of the model's tensors missing (first: {missing[0]})" if missing else
                f"{len(unexpected)} unexpected tensors (first: {unexpected[0]})" if unexpected else "nothing loaded")
        raise FeatxError(f"{name}: {path} does not hold timm's {name} ({what}); delete it and run "
                         f"`featx weights pull {name}`, or pass --weights PATH")
