"""Classification heads over (B, T, D) feature sequences: one registry, one constructor.

Every head's forward(x, mask) returns a HeadOutput (logits, and per-step updates for skip heads) in training
and in evaluation alike; losses are separate functions (seqmodels.train).
"""

from __future__ import annotations

import difflib
from typing import Callable

from torch import nn

from featx.errors import FeatxError
from seqmodels.heads.common import HeadOutput
from seqmodels.heads.fusion import LateFusion, SlowFusion
from seqmodels.heads.lstm import LSTMHead
from seqmodels.heads.pooling import avgpool, maxpool
from seqmodels.heads.skip_rnn import SkipRNNHead
from seqmodels.heads.transformer import TransformerHead


def _skip(cell: str) -> Callable[..., nn.Module]:
    def build(in_dim: int, num_classes: int, **cfg) -> nn.Module:
        return SkipRNNHead(in_dim, num_classes, cell=cell, **cfg)

    return build


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


def build_head(name: str, in_dim: int, num_classes: int, **cfg) -> nn.Module:
    """The head `name` for `in_dim`-dimensional features and `num_classes` classes; cfg: its options."""
    if name not in HEADS:
        close = difflib.get_close_matches(name, HEADS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise FeatxError(f"unknown head {name!r}{hint} (known: {', '.join(HEADS)})")
    sizes = {k: v for k, v in cfg.items() if k in ("hidden", "width", "channels", "layers", "heads", "levels")}
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or isinstance(v, bool) or v < 1}
    if bad:
        raise FeatxError(f"bad option for head {name!r}: {', '.join(f'{k}={v!r}' for k, v in bad.items())} must be a positive integer")
    try:
        return HEADS[name](in_dim, num_classes, **cfg)
    except (TypeError, ValueError, AssertionError) as exc:  # torch's own checks: dropout range, divisibility
        raise FeatxError(f"bad option for head {name!r}: {str(exc).splitlines()[0]}") from None


__all__ = ["HEADS", "SKIP_HEADS", "HeadOutput", "build_head"]
