"""ActionFormer's anchor-free targets as pure functions: pyramid points, label assignment, the encoding of a
segment as two distances, and the decoding of predictions back into scored segments.

Coordinates are on the *step grid*: row i of a store (its centre) is at i; a level-l position j sits where its
stride-2 downsamplings put it (`level_points`), which for the kernel-3, padding-1, stride-2 convolutions and
max-pools of the backbone is input 2j at every level, so j * 2^l steps (ActionFormer's point generator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# ActionFormer's regression ranges, in steps: level l learns the segments whose larger distance from the
# point lies in [lo_l, hi_l]. The last level of a pyramid is unbounded whatever its depth (the reference's
# 10,000 steps), so with fewer than 6 levels long segments still get positive points.
REGRESSION_RANGES = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10_000))
OPEN_END = 10_000.0


@dataclass(frozen=True)
class Points:
    """Every position of every level, flattened level after level."""

    position: torch.Tensor  # (P,) step-grid coordinate of each point
    stride: torch.Tensor  # (P,) 2^level
    lo: torch.Tensor  # (P,) regression range of the point's level
    hi: torch.Tensor
    sizes: tuple[int, ...]  # points per level


def level_points(length: int, levels: int, ranges=REGRESSION_RANGES) -> Points:
    """The points of a `length`-step sequence: level 0 is every step, each next level keeps every second
    position of the one below (what a kernel-3 / padding-1 / stride-2 layer centres its outputs on)."""
    if len(ranges) < levels:
        raise ValueError(f"{levels} levels need {levels} regression ranges, got {len(ranges)}")
    pos = torch.arange(length, dtype=torch.float32)
    positions, strides, lo, hi, sizes = [], [], [], [], []
    for level in range(levels):
        if level:
            pos = pos[::2]
        positions.append(pos)
        strides.append(torch.full_like(pos, 2.0**level))
        lo.append(torch.full_like(pos, float(ranges[level][0])))
        hi.append(torch.full_like(pos, OPEN_END if level == levels - 1 else float(ranges[level][1])))
        sizes.append(len(pos))
    return Points(torch.cat(positions), torch.cat(strides), torch.cat(lo), torch.cat(hi), tuple(sizes))


def assign(points: Points, segments: np.ndarray, num_classes: int, radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """ActionFormer's label assignment for one video. segments (n, 3): start, end (steps), class.

    A point is a candidate for a segment when it lies strictly inside the segment and within `radius` strides
    of its centre, and its larger distance to the segment's ends lies in its level's range (both ends
    inclusive). Of its candidates a point takes the shortest; segments that tie with it (within 1e-3 steps)
    all become its labels. Returns class targets (P, K) in {0, 1} and distances (P, 2) to the start and the
    end in strides (zero where a point has no segment)."""
    n_points = len(points.position)
    cls = torch.zeros(n_points, num_classes)
    dist = torch.zeros(n_points, 2)
    if len(segments) == 0:
        return cls, dist
    segs = torch.as_tensor(np.asarray(segments, np.float64)[:, :2], dtype=torch.float32)  # (n, 2)
    labels = torch.as_tensor(np.asarray(segments)[:, 2].astype(np.int64))
    pt = points.position[:, None]
    left, right = pt - segs[None, :, 0], segs[None, :, 1] - pt  # (P, n)
    centre = segs.mean(1)[None]
    reach = points.stride[:, None] * radius
    inside_centre = torch.minimum(pt - torch.maximum(centre - reach, segs[None, :, 0]),
                                  torch.minimum(centre + reach, segs[None, :, 1]) - pt) > 0
    far = torch.maximum(left, right)
    in_range = (far >= points.lo[:, None]) & (far <= points.hi[:, None])
    lengths = (segs[:, 1] - segs[:, 0])[None].expand(n_points, -1).clone()
    lengths[~(inside_centre & in_range)] = float("inf")
    shortest, which = lengths.min(1)
    ties = (lengths <= shortest[:, None] + 1e-3) & torch.isfinite(lengths)  # (P, n)
    cls = (ties.float() @ torch.nn.functional.one_hot(labels, num_classes).float()).clamp(max=1.0)
    has = torch.isfinite(shortest)
    rows = torch.arange(n_points)
    dist = torch.stack([left[rows, which], right[rows, which]], 1) / points.stride[:, None]
    dist[~has] = 0
    return cls, dist


def decode(points: Points, distances: torch.Tensor) -> torch.Tensor:
    """(P, 2) distances in strides -> (P, 2) start, end in steps."""
    scaled = distances * points.stride[:, None]
    return torch.stack([points.position - scaled[:, 0], points.position + scaled[:, 1]], 1)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017), summed over elements."""
    p = torch.sigmoid(logits)
    ce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    weight = alpha * targets + (1 - alpha) * (1 - targets)
    return (weight * ce * (1 - p_t) ** gamma).sum()


def diou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Distance-IoU loss of 1D segments given as (distance to start, distance to end) from one point, summed:
    1 - IoU + (distance between the centres / length of the smallest enclosing segment)^2."""
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], target[:, 0], target[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - inter
    iou = inter / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    centre_gap = 0.5 * (rp - lp - rg + lg)
    return (1 - iou + (centre_gap / enclosing.clamp(min=eps)) ** 2).sum()


@dataclass(frozen=True)
class DecodeOptions:
    """ActionFormer's inference settings (its THUMOS14 configuration)."""

    min_score: float = 0.001  # candidates below this score are dropped before NMS
    per_level: int = 2000  # at most this many (point, class) candidates per level
    min_duration: float = 0.05  # steps; shorter decoded segments are dropped
    sigma: float = 0.5  # Gaussian soft-NMS
    max_segments: int = 200  # per video, after NMS
    voting: float = 0.0  # tIoU for boundary voting after NMS; 0: off (the reference's class-wise NMS never votes)


def candidates(points: Points, probs: torch.Tensor, distances: torch.Tensor, options: DecodeOptions):
    """Scored candidates of one video before NMS: per level, every (point, class) whose probability passes
    `min_score`, the best `per_level` of them, decoded; segments shorter than `min_duration` are dropped.
    probs (P, K), distances (P, 2) -> numpy start, end, class, score."""
    segments = decode(points, distances)
    out = []
    offset = 0
    for size in points.sizes:
        p = probs[offset : offset + size]
        flat = p.flatten()
        keep = torch.nonzero(flat > options.min_score).flatten()
        if len(keep) > options.per_level:
            keep = keep[torch.topk(flat[keep], options.per_level).indices]
        point, label = keep // p.shape[1] + offset, keep % p.shape[1]
        seg = segments[point]
        long_enough = (seg[:, 1] - seg[:, 0]) > options.min_duration
        out.append((seg[long_enough], label[long_enough], flat[keep][long_enough]))
        offset += size
    seg = torch.cat([o[0] for o in out]).numpy().astype(np.float64)
    return seg[:, 0], seg[:, 1], torch.cat([o[1] for o in out]).numpy(), torch.cat([o[2] for o in out]).numpy().astype(np.float64)
