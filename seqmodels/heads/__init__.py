"""Classification heads over (B, T, D) feature sequences: one registry, one constructor.

Every head's forward(x, mask) returns a HeadOutput (logits, and per-step updates for skip heads) in training
and in evaluation alike; losses are separate functions (seqmodels.train).
"""

from __future__ import annotations

import difflib
import inspect
import math
from typing import Callable

from torch import nn

from featx.errors import FeatxError
from seqmodels.heads.common import HeadOutput
from seqmodels.heads.fusion import LateFusion, SlowFusion
from seqmodels.heads.lstm import LSTMHead
from seqmodels.heads.pooling import avgpool, maxpool
from seqmodels.heads.skip_rnn import SkipRNNHead
from seqmodels.heads.steps import StepRNN, StepSkipRNN
from seqmodels.heads.transformer import TransformerHead


def _with_cell(head: type, cell: str, options_of: type | None = None) -> Callable[..., nn.Module]:
    def build(in_dim: int, num_classes: int, **cfg) -> nn.Module:
        return head(in_dim, num_classes, cell=cell, **cfg)

    build.options_of = options_of or head  # where its options are declared
    return build


def _skip(cell: str) -> Callable[..., nn.Module]:
    return _with_cell(SkipRNNHead, cell)


def _check_options(name: str, cfg: dict, registry: dict | None = None) -> None:
    """Each option is one the head declares, of the type of its default: true/false for flags, a whole number
    for counts, a finite number for rates (one error line naming the option, never an error from torch)."""
    builder = (registry or HEADS)[name]
    declared = inspect.signature(getattr(builder, "options_of", builder)).parameters
    fixed = ("in_dim", "num_classes", "cell", "pool")  # set by featx itself, not options
    known = {k: p.default for k, p in declared.items() if k not in fixed and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    for key, value in cfg.items():
        if key not in known:
            raise FeatxError(f"bad option for head {name!r}: no option {key!r} (its options: {', '.join(sorted(known)) or 'none'})")
        default = known[key]
        if isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            want = "a finite number"
        else:
            continue
        if not ok:
            raise FeatxError(f"bad option for head {name!r}: {key} must be {want}, not {value!r}")


HEADS: dict[str, Callable[..., nn.Module]] = {
    "avgpool": avgpool,
    "maxpool": maxpool,
    "late-fusion": LateFusion,
    "slow-fusion": SlowFusion,
    "lstm": LSTMHead,
    "skip-lstm": _skip("lstm"),
    "skip-gru": _skip("gru"),
    "transformer": TransformerHead,
}
SKIP_HEADS = frozenset({"skip-lstm", "skip-gru"})
# Per-step multi-label heads (seqmodels.heads.steps): logits (B, T, C), one sigmoid per class and step.
STEP_HEADS: dict[str, Callable[..., nn.Module]] = {
    "lstm": _with_cell(StepRNN, "lstm"),
    "gru": _with_cell(StepRNN, "gru"),
    "skip-lstm": _with_cell(StepSkipRNN, "lstm", SkipRNNHead),
    "skip-gru": _with_cell(StepSkipRNN, "gru", SkipRNNHead),
}


def build_head(name: str, in_dim: int, num_classes: int, per_step: bool = False, **cfg) -> nn.Module:
    """The head `name` for `in_dim`-dimensional features and `num_classes` classes; cfg: its options. With
    `per_step`, one of the per-step multi-label heads (STEP_HEADS)."""
    registry = STEP_HEADS if per_step else HEADS
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        kind = "per-step head" if per_step else "head"
        raise FeatxError(f"unknown {kind} {name!r}{hint} (known: {', '.join(registry)})")
    _check_options(name, cfg, registry)
    sizes = {k: v for k, v in cfg.items() if k in ("hidden", "width", "channels", "layers", "heads", "levels")}
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
    if bad:
        raise FeatxError(f"bad option for head {name!r}: {', '.join(f'{k}={v!r}' for k, v in bad.items())} must be a positive integer")
    try:
        return registry[name](in_dim, num_classes, **cfg)
    except (TypeError, ValueError, AssertionError) as exc:  # torch's own checks: dropout range, divisibility
        raise FeatxError(f"bad option for head {name!r}: {str(exc).splitlines()[0]}") from None


__all__ = ["HEADS", "SKIP_HEADS", "STEP_HEADS", "HeadOutput", "build_head"]
