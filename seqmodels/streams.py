"""Streams in stage 2: which columns of a store a head reads, and late fusion of one head per stream.

A store holds one stream (`featx extract --stream rgb` or `--stream flow`: its `feature` column) or two
(`--stream both`: RGB in `feature`, flow in `flow_feature`, on the same rows). A run reads
- rgb: the RGB features; flow: the flow features (`flow_feature`, or `feature` of a flow-only store);
- both: each step's RGB and flow features side by side, (T, 2D), with
  - early fusion: one head on the (T, 2D) concatenation;
  - late fusion (Simonyan & Zisserman 2014; the default): one head per stream, each trained alone on its own
    D columns under the same protocol, their class probabilities averaged at prediction (StreamFusion).
Unset, a run reads the store's own stream (both streams of a two-stream store). The run records what it read,
so `evaluate` and `predict` read the same.

Every task loads the chosen columns concatenated (seqmodels.data.finite_sequences), so batching, cropping and
padding never know how many streams there are; only the model does.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from featx.config import STORE_COLUMNS, STREAMS
from featx.errors import FeatxError
from seqmodels.heads.common import HeadOutput

FUSIONS = ("early", "late")
DEFAULT_FUSION = "late"  # Simonyan & Zisserman's averaging of the two streams' class scores
PROBABILITY_EPS = 1e-6  # segment heads' averaged probabilities are kept in [eps, 1 - eps] to stay finite logits



def check_choice(stream: str | None, fusion: str | None) -> None:
    """One-line errors for values a training config may not hold."""
    if stream is not None and stream not in STREAMS:
        raise FeatxError(f"--stream must be rgb, flow or both, not {stream!r}")
    if fusion is not None and fusion not in FUSIONS:
        raise FeatxError(f"--fusion must be early or late, not {fusion!r}")
    if fusion is not None and stream in ("rgb", "flow"):
        raise FeatxError(f"--fusion fuses two streams: it needs --stream both, not --stream {stream}")


def stream_names(stream: str) -> tuple[str, ...]:
    """The single streams a run reads, in column order."""
    return ("rgb", "flow") if stream == "both" else (stream,)


def is_late(config) -> bool:
    """Whether a training config asks for one head per stream (both streams, fusion late or unset)."""
    return config.stream == "both" and config.fusion != "early"


def columns(stream: str, store_stream: str, store) -> list[str]:
    """The columns that hold `stream` in a store extracted with --stream `store_stream`; one error line when
    the store lacks one."""
    have = STORE_COLUMNS[store_stream]
    missing = [name for name in stream_names(stream) if name not in have]
    if missing:
        raise FeatxError(
            f"{store} has no {missing[0]} features (it was extracted with --stream {store_stream}); "
            f"use --stream {' or '.join(have)}, or extract with --stream both"
        )
    return [have[name] for name in stream_names(stream)]


def resolve(config, store_stream: str, store):
    """(config with its stream and fusion set, the columns to read): unset, the store's own stream, and late
    fusion for both."""
    stream = config.stream or store_stream
    if config.fusion is not None and stream != "both":  # a stream given alone is refused by check_choice
        raise FeatxError(f"--fusion needs two streams; {store} holds one (--stream {store_stream})")
    fusion = (config.fusion or DEFAULT_FUSION) if stream == "both" else None
    return dataclasses.replace(config, stream=stream, fusion=fusion), columns(stream, store_stream, store)


def _mean_probabilities(logits: list[torch.Tensor], sigmoid: bool = False) -> torch.Tensor:
    return torch.stack([torch.sigmoid(x) if sigmoid else F.softmax(x, -1) for x in logits]).mean(0)


def fuse(outputs: list):
    """The average of several heads' probabilities, as the logits a single head would return: softmax (or, for
    segment and per-step multi-label heads, sigmoid) of the result gives the averaged probabilities back, so
    every consumer of a head's output works unchanged. Segment heads' regression distances are averaged too
    (both heads place segments on the same points); skip heads' 0/1 updates become their mean over the heads."""
    first = outputs[0]
    if isinstance(first, HeadOutput):  # classification (B, C) or skip step detection (B, T, K + 1): softmax;
        # per-step multi-label (B, T, C): sigmoid
        sigmoid = first.multilabel
        probs = _mean_probabilities([o.logits for o in outputs], sigmoid=sigmoid)
        updates = None if first.updates is None else torch.stack([o.updates for o in outputs]).mean(0)
        logits = torch.logit(probs, eps=PROBABILITY_EPS) if sigmoid else torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))
        return HeadOutput(logits, updates, sigmoid)
    if isinstance(first, tuple):  # segment detection: (B, P, K) logits, (B, P, 2) distances
        probs = _mean_probabilities([o[0] for o in outputs], sigmoid=True)
        return torch.logit(probs, eps=PROBABILITY_EPS), torch.stack([o[1] for o in outputs]).mean(0)
    probs = _mean_probabilities(outputs)  # step detection: (B, T, K + 1) logits
    return torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))


class StreamFusion(nn.Module):
    """Late fusion: one head per stream, each reading its own columns of the concatenated input (B, T, sum of
    widths); its output is the heads' averaged probabilities (`fuse`). Not Karpathy's `late-fusion` head, which
    fuses two moments of one stream."""

    def __init__(self, heads: list[nn.Module], widths: list[int]):
        super().__init__()
        if len(heads) != len(widths):
            raise ValueError(f"{len(heads)} heads for {len(widths)} streams")
        self.heads = nn.ModuleList(heads)
        self.widths = list(widths)
        self.kind = getattr(type(heads[0]), "kind", None)  # detection heads: "steps" or "segments"

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, T, sum of widths) -> one (B, T, width) view per stream."""
        return torch.split(x, self.widths, dim=-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        return fuse([head(part, mask) for head, part in zip(self.heads, self.split(x))])

    @torch.no_grad()
    def detect(self, x: torch.Tensor, mask: torch.Tensor):
        """Segment heads: decode the averaged scores and distances as one head would (same levels and options)."""
        return self.heads[0].decode(*self(x, mask), mask)


def build(config, in_dim: int, make: Callable[[int], nn.Module]) -> nn.Module:
    """The model of a run: make(in_dim), or with late fusion one make(D) per stream inside StreamFusion."""
    if not is_late(config):
        return make(in_dim)
    n = len(stream_names(config.stream))
    return StreamFusion([make(in_dim // n) for _ in range(n)], [in_dim // n] * n)


FitOne = Callable[[slice, Callable | None, str], tuple[nn.Module, list[dict]]]


def fit_streams(config, in_dim: int, fit_one: FitOne, on_epoch=None) -> tuple[nn.Module, list[dict]]:
    """Train the model of a run: fit_one(columns, on_epoch, desc) builds a head for the given columns of every
    step, trains it under the protocol and returns (head, history). Late fusion: one fit_one per stream on its
    own columns, each as if alone (same seed, same protocol), held together by StreamFusion; their history rows
    (and on_epoch's) carry `stream`. Otherwise one fit_one on all the columns."""
    if not is_late(config):
        return fit_one(slice(None), on_epoch, f"train {config.head}")
    names = stream_names(config.stream)
    width = in_dim // len(names)
    heads, history = [], []
    for i, name in enumerate(names):
        tag = (lambda row, name=name: on_epoch({"stream": name, **row})) if on_epoch else None
        head, rows = fit_one(slice(i * width, (i + 1) * width), tag, f"train {config.head} ({name})")
        heads.append(head)
        history += [{"stream": name, **row} for row in rows]
    return StreamFusion(heads, [width] * len(names)), history
