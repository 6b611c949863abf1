"""ActionFormer (Zhang, Wu and Li, ECCV 2022), written here from the paper and its reference release.

- input projection: two kernel-3 convolutions, each followed by LayerNorm and ReLU;
- a stem of `stem` transformer blocks at stride 1, then `levels - 1` blocks that each halve the sequence
  (6 levels by default): pre-LayerNorm blocks with local self-attention (each step attends to the steps
  within `window // 2` of it; queries, keys and values first pass a depthwise kernel-3 convolution of the
  block's stride and a LayerNorm), a max-pool (kernel 3, stride 2) on the skip path, a GELU MLP (4x) and
  drop-path with a learnable scale initialised to 1e-4 on both residual branches; `backbone="maxpool"` is
  TemporalMaxer's instead: the projection, then levels made by parameter-free max-pooling alone;
- a LayerNorm per level (the identity neck), then shared classification and regression heads: two kernel-3
  convolutions with LayerNorm and ReLU, and a last convolution (class logits with the focal-loss prior;
  two distances, scaled per level and passed through ReLU);
- targets, losses and decoding: `seqmodels.detection.points` (centre sampling, regression ranges, sigmoid
  focal loss + DIoU loss over an EMA of the number of positives), then class-wise Gaussian soft-NMS with
  optional boundary voting (`seqmodels.detection.nms`).

Everything is in steps of the store's time grid; the caller converts to seconds.
"""

from __future__ import annotations

import dataclasses
import inspect
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqmodels.detection.nms import class_wise_soft_nms
from seqmodels.detection.points import DecodeOptions, assign, candidates, diou_loss, level_points, sigmoid_focal_loss
from seqmodels.registry import ACTIONFORMER, register_head


NARROW, WIDE = 256, 512  # default widths below / from 1024 input dimensions


class MaskedConv(nn.Module):
    """Kernel-k 1D convolution over (B, T, C) with padding k // 2; padded steps stay zero."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1, bias: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=bias)
        self.stride = stride

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C), (B, T) -> (B, T', C'), (B, T'): the mask downsampled by keeping every stride-th step."""
        mask = mask[:, :: self.stride]
        out = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return out * mask[..., None], mask


class LocalAttention(nn.Module):
    """Multi-head self-attention inside a window of `window` steps centred on each query (ActionFormer's
    LocalMaskedMHCA). At stride 2 the query, key and value projections downsample (depthwise conv)."""

    def __init__(self, dim: int, heads: int, window: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden={dim} must be a multiple of heads={heads}")
        self.heads, self.half = heads, window // 2
        self.pre = nn.ModuleList([MaskedConv(dim, dim, 3, stride, groups=dim, bias=False) for _ in range(3)])
        self.pre_norm = nn.ModuleList([nn.LayerNorm(dim) for _ in range(3)])
        self.qkv = nn.ModuleList([nn.Linear(dim, dim) for _ in range(3)])
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = x.shape[0]
        parts = []
        for conv, norm, proj in zip(self.pre, self.pre_norm, self.qkv):
            h, m = conv(x, mask)
            parts.append(proj(norm(h)))  # (B, T', C)
        q, k, v = (p.view(B, p.shape[1], self.heads, -1).transpose(1, 2) for p in parts)  # (B, H, T', d)
        T, d = q.shape[2], q.shape[3]
        w = 2 * self.half + 1
        k_win = F.pad(k, (0, 0, self.half, self.half)).unfold(2, w, 1)  # (B, H, T', d, w)
        v_win = F.pad(v, (0, 0, self.half, self.half)).unfold(2, w, 1)
        key_ok = F.pad(m, (self.half, self.half)).unfold(1, w, 1)  # (B, T', w)
        scores = torch.einsum("bhtd,bhtdw->bhtw", q, k_win) / math.sqrt(d)
        scores = scores.masked_fill(~key_ok[:, None], float("-inf"))
        att = torch.nan_to_num(torch.softmax(scores, -1))  # a query with no valid key (padding) gets zeros
        out = torch.einsum("bhtw,bhtdw->bhtd", self.drop(att), v_win).transpose(1, 2).reshape(B, T, -1)
        return self.out(out) * m[..., None], m


class MaxPoolMixer(nn.Module):
    """TemporalMaxer's level (Tang et al. 2023): a max-pool (kernel 3, padding 1) of stride 2 over the real
    steps, no parameters, no skip, no MLP."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = mask[:, :: self.stride]
        filled = x.masked_fill(~mask[..., None], float("-inf")).transpose(1, 2)
        out = F.max_pool1d(filled, 3, self.stride, 1).transpose(1, 2)
        return torch.nan_to_num(out, neginf=0.0) * m[..., None], m


class AffineDropPath(nn.Module):
    """Stochastic depth with a learnable per-channel scale initialised to 1e-4 (the reference's
    AffineDropPath): a residual branch starts almost closed. Identity when p is 0, as in the reference."""

    def __init__(self, dim: int, p: float):
        super().__init__()
        self.p = p
        self.scale = nn.Parameter(torch.full((dim,), 1e-4)) if p > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            return x
        x = x * self.scale
        if not self.training:
            return x
        keep = (torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p).to(x.dtype)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Pre-LayerNorm transformer block of stride 1 or 2 with local self-attention."""

    def __init__(self, dim: int, heads: int, window: int, stride: int, dropout: float, drop_path: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = LocalAttention(dim, heads, window, stride, dropout)
        self.stride = stride
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim), nn.Dropout(dropout))
        self.drop_attn, self.drop_mlp = AffineDropPath(dim, drop_path), AffineDropPath(dim, drop_path)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed, m = self.attn(self.norm1(x), mask)
        skip = F.max_pool1d(x.transpose(1, 2), 3, self.stride, 1).transpose(1, 2) if self.stride > 1 else x
        out = skip * m[..., None] + self.drop_attn(mixed)
        out = out + self.drop_mlp(self.mlp(self.norm2(out)) * m[..., None])
        return out, m


class Head(nn.Module):
    """Shared over levels: (kernel-3 conv, LayerNorm, ReLU) x 2, then a kernel-3 conv to `out` channels."""

    def __init__(self, dim: int, out: int, layers: int = 3):
        super().__init__()
        self.convs = nn.ModuleList([MaskedConv(dim, dim, bias=False) for _ in range(layers - 1)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(layers - 1)])
        self.last = MaskedConv(dim, out)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x, mask)[0])) * mask[..., None]
        return self.last(x, mask)[0]


@register_head("actionformer", detection=ACTIONFORMER)
class ActionFormerHead(nn.Module):
    kind = "segments"

    def __init__(
        self, in_dim: int, num_classes: int,
        hidden: int | None = None,  # channels of the projection, blocks and heads; None: 512 (the paper's) for
        # inputs of 1024 or more dimensions (I3D, VideoMAE...), 256 below (EfficientNet-Lite0's 1280 is above)
        heads: int = 4,  # attention heads
        window: int = 19,  # local attention window, steps (THUMOS14 setting)
        levels: int = 6,  # pyramid levels: the stem's output, then levels - 1 halvings
        stem: int = 2,  # stride-1 transformer blocks before the pyramid
        backbone: str = "attention",  # attention (ActionFormer) or maxpool (TemporalMaxer)
        dropout: float = 0.0,  # attention and MLP dropout
        drop_path: float = 0.1,  # stochastic depth of the blocks
        radius: float = 1.5,  # centre sampling radius, in strides
        label_smoothing: float = 0.0,
        prior: float = 0.01,  # initial probability of every class (focal-loss initialisation)
        normaliser_momentum: float = 0.9,  # EMA of the number of positives that divides the losses
        **decode,  # DecodeOptions: min_score, per_level, min_duration, sigma, max_segments, voting
    ):
        super().__init__()
        hidden = hidden if hidden is not None else (WIDE if in_dim >= 1024 else NARROW)
        self._check(hidden, heads, window, levels, stem, backbone, dropout, drop_path, radius, label_smoothing, prior)
        self.num_classes, self.levels, self.radius, self.label_smoothing = num_classes, levels, radius, label_smoothing
        self.momentum = normaliser_momentum
        unknown = sorted(set(decode) - {f.name for f in dataclasses.fields(DecodeOptions)})
        if unknown:
            known = [p for p in inspect.signature(ActionFormerHead).parameters if p not in ("in_dim", "num_classes", "decode")]
            raise TypeError(f"unknown option {unknown[0]!r} (known: {', '.join(known + [f.name for f in dataclasses.fields(DecodeOptions)])})")
        self.decode_options = DecodeOptions(**decode)
        self.register_buffer("normaliser", torch.tensor(100.0))  # the reference's initial value
        self.embed = nn.ModuleList([MaskedConv(in_dim, hidden, bias=False), MaskedConv(hidden, hidden, bias=False)])
        self.embed_norm = nn.ModuleList([nn.LayerNorm(hidden), nn.LayerNorm(hidden)])
        if backbone == "attention":
            self.stem = nn.ModuleList([Block(hidden, heads, window, 1, dropout, drop_path) for _ in range(stem)])
            self.pyramid = nn.ModuleList([Block(hidden, heads, window, 2, dropout, drop_path) for _ in range(levels - 1)])
        else:  # TemporalMaxer: the projection, then parameter-free max-pooling levels
            self.stem = nn.ModuleList()
            self.pyramid = nn.ModuleList([MaxPoolMixer(2) for _ in range(levels - 1)])
        self.neck = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(levels)])
        self.cls_head = Head(hidden, num_classes)
        self.reg_head = Head(hidden, 2)
        self.scale = nn.Parameter(torch.ones(levels))
        nn.init.constant_(self.cls_head.last.conv.bias, -math.log((1 - prior) / prior))
        for module in self.modules():  # the reference initialises every convolution and linear bias to 0
            if isinstance(module, (nn.Conv1d, nn.Linear)) and module.bias is not None and module is not self.cls_head.last.conv:
                nn.init.zeros_(module.bias)

    @staticmethod
    def _check(hidden, heads, window, levels, stem, backbone, dropout, drop_path, radius, label_smoothing, prior):
        from featx.errors import FeatxError

        problems = [
            (hidden < 1 or heads < 1 or hidden % heads, f"hidden ({hidden}) must be a positive multiple of heads ({heads})"),
            (window < 1, f"window must be >= 1, not {window}"),
            (not 1 <= levels <= 6, f"levels must be 1..6, not {levels}"),
            (stem < 0, f"stem must be >= 0, not {stem}"),
            (backbone not in ("attention", "maxpool"), f"backbone must be attention or maxpool, not {backbone!r}"),
            (not (0 <= dropout < 1 and 0 <= drop_path < 1 and 0 <= label_smoothing < 1), "dropout, drop_path and label_smoothing must lie in [0, 1)"),
            (radius <= 0 or not 0 < prior < 1, "radius must be > 0 and prior in (0, 1)"),
        ]
        for bad, message in problems:
            if bad:
                raise FeatxError(f"actionformer: {message}")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D), (B, T) bool -> class logits (B, P, K) and distances in strides (B, P, 2) at every
        point of every level (`level_points(T, levels)` order); padded points are zero."""
        h, m = x * mask[..., None], mask
        for conv, norm in zip(self.embed, self.embed_norm):
            h = F.relu(norm(conv(h, m)[0])) * m[..., None]
        for block in self.stem:
            h, m = block(h, m)
        features = [(h, m)]
        for block in self.pyramid:
            h, m = block(h, m)
            features.append((h, m))
        logits, distances = [], []
        for level, (f, fm) in enumerate(features):
            f = self.neck[level](f) * fm[..., None]
            logits.append(self.cls_head(f, fm))
            distances.append(F.relu(self.reg_head(f, fm) * self.scale[level]))
        return torch.cat(logits, 1), torch.cat(distances, 1)

    def point_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) step mask -> (B, P) mask of the points, downsampled as the blocks do."""
        out, m = [], mask
        for level in range(self.levels):
            if level:
                m = m[:, ::2]
            out.append(m)
        return torch.cat(out, 1)

    def loss(self, x: torch.Tensor, mask: torch.Tensor, segments: list[np.ndarray]) -> torch.Tensor:
        """Focal loss over every valid point and class + DIoU loss over the positive points, each divided by
        the EMA of the number of positives (ActionFormer). segments: per video (n, 3) start, end, class."""
        logits, distances = self(x, mask)
        points = level_points(x.shape[1], self.levels)
        targets = [assign(points, s, self.num_classes, self.radius) for s in segments]
        cls = torch.stack([t[0] for t in targets]).to(x.device)  # (B, P, K)
        dist = torch.stack([t[1] for t in targets]).to(x.device)
        valid = self.point_mask(mask)
        positive = valid & (cls.sum(-1) > 0)
        if self.training:
            n = float(positive.sum())
            self.normaliser.mul_(self.momentum).add_((1 - self.momentum) * max(n, 1.0))
        if self.label_smoothing:
            cls = cls * (1 - self.label_smoothing) + self.label_smoothing / (self.num_classes + 1)
        focal = sigmoid_focal_loss(logits[valid], cls[valid])
        reg = diou_loss(distances[positive], dist[positive]) if positive.any() else logits.sum() * 0
        return (focal + reg) / self.normaliser

    @torch.no_grad()
    def detect(self, x: torch.Tensor, mask: torch.Tensor) -> list[list[tuple[float, float, int, float]]]:
        """Per video: (start, end, class, score) in steps, after soft-NMS (and voting), best first."""
        return self.decode(*self(x, mask), mask)

    @torch.no_grad()
    def decode(self, logits: torch.Tensor, distances: torch.Tensor, mask: torch.Tensor) -> list[list[tuple[float, float, int, float]]]:
        """`detect` from the outputs of `forward` (or the averaged ones of several heads: seqmodels.streams)."""
        valid = self.point_mask(mask)
        o = self.decode_options
        found = []
        for b in range(mask.shape[0]):
            length = int(mask[b].sum())
            points = level_points(length, self.levels)
            keep = valid[b]
            probs, dist = torch.sigmoid(logits[b][keep]).cpu(), distances[b][keep].cpu()
            start, end, label, score = candidates(points, probs, dist, o)
            # no clipping here: the caller clamps to the video in seconds, after NMS, as the reference does
            found.append(class_wise_soft_nms(start, end, label, score, o.sigma, o.min_score, o.max_segments, o.voting))
        return found
