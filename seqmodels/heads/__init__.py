"""The heads over (B, T, D) feature sequences. Each registers where it is defined (seqmodels.registry): the
tasks it serves and their training defaults; `build_head` and the names of each task's heads come from there.

Every head's forward(x, mask) returns a HeadOutput (logits, and per-step updates for skip heads) in training
and in evaluation alike; losses are separate functions (seqmodels.classifier).
"""

from __future__ import annotations

import importlib

from seqmodels.heads.common import HeadOutput
from seqmodels.registry import build_head, heads

for _module in ("pooling", "fusion", "lstm", "skip_rnn", "step_rnns", "transformer"):  # each registers its heads
    importlib.import_module(f"seqmodels.heads.{_module}")

__all__ = ["HeadOutput", "build_head", "heads"]
