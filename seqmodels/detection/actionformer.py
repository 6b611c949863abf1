"""An anchor-free detection head after ActionFormer (Zhang et al., ECCV 2022), written compactly here.

- a temporal feature pyramid: a projection, then `levels` levels of 1D convolutions, each level after the
  first downsampling by 2 (stride 2^l steps);
- shared heads on every level: per-position classification over K classes (sigmoid, focal loss; no
  background class) and regression of the distances from the position's centre to the segment's start and
  end (in units of the level's stride; 1D IoU loss);
- targets: a position takes the shortest segment whose inside holds the position's centre (within
  `centre_radius` strides of the segment's centre) and whose larger distance lies in the level's range
  [4·2^(l-1), 4·2^l) steps (level 0 from 0, the last level unbounded);
- decoding: every (position, class) with a score above `min_score`, the best `pre_nms` of them, then
  class-wise Gaussian soft-NMS.

All times are in steps (step i spans [i, i + 1)); the caller converts them to seconds.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv1d:
    return nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1)


class ActionFormerHead(nn.Module):
    kind = "segments"

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 128, levels: int = 5, dropout: float = 0.1,
                 centre_radius: float = 1.5, min_score: float = 0.01, pre_nms: int = 500, sigma: float = 0.5, max_segments: int = 100):
        super().__init__()
        self.num_classes, self.levels = num_classes, levels
        self.centre_radius, self.min_score, self.pre_nms, self.sigma, self.max_segments = centre_radius, min_score, pre_nms, sigma, max_segments
        self.project = nn.Sequential(_conv(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), _conv(hidden, hidden), nn.ReLU())
        self.down = nn.ModuleList([_conv(hidden, hidden, stride=2) for _ in range(levels - 1)])
        self.cls = nn.Sequential(_conv(hidden, hidden), nn.ReLU(), _conv(hidden, num_classes))
        self.reg = nn.Sequential(_conv(hidden, hidden), nn.ReLU(), _conv(hidden, 2))
        self.scale = nn.Parameter(torch.ones(levels))
        prior = 0.01  # the focal-loss initialisation: every class starts rare
        nn.init.constant_(self.cls[-1].bias, -float(np.log((1 - prior) / prior)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        """(B, T, D), (B, T) -> per level: (B, T_l, K) class logits, (B, T_l, 2) distances (strides), (B, T_l) mask."""
        m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        h = self.project(x.transpose(1, 2) * m) * m
        out = []
        for level in range(self.levels):
            if level:
                m = F.max_pool1d(m, 2, 2, ceil_mode=True)
                h = F.relu(self.down[level - 1](h)) * m
            cls = self.cls(h).transpose(1, 2)
            reg = F.relu(self.reg(h).transpose(1, 2) * self.scale[level])
            out.append((cls, reg, m[:, 0] > 0))
        return out

    def _targets(self, lengths: torch.Tensor, segments: list[np.ndarray], level: int, positions: int, device):
        """Class (B, T_l, K) 0/1 and distance (B, T_l, 2) targets of one level; segments (n, 3): start, end, class."""
        stride = 2**level
        lo = 0.0 if level == 0 else 4.0 * 2 ** (level - 1)
        hi = float("inf") if level == self.levels - 1 else 4.0 * 2**level
        centre = (torch.arange(positions, device=device, dtype=torch.float32) + 0.5) * stride  # in steps
        cls = torch.zeros(len(segments), positions, self.num_classes, device=device)
        dist = torch.zeros(len(segments), positions, 2, device=device)
        for b, segs in enumerate(segments):
            if len(segs) == 0:
                continue
            s = torch.as_tensor(segs[:, 0], dtype=torch.float32, device=device)
            e = torch.as_tensor(segs[:, 1], dtype=torch.float32, device=device)
            left, right = centre[:, None] - s[None], e[None] - centre[:, None]  # (T_l, n)
            mid = (s + e) / 2
            inside = (left > 0) & (right > 0) & ((centre[:, None] - mid[None]).abs() <= self.centre_radius * stride)
            reach = torch.maximum(left, right)
            ok = inside & (reach >= lo) & (reach < hi)
            length = torch.where(ok, (e - s)[None].expand_as(ok), torch.full_like(left, float("inf")))
            best = length.argmin(1)  # the shortest qualifying segment
            has = ok.any(1)
            rows = torch.arange(positions, device=device)[has]
            cls[b, rows, torch.as_tensor(segs[:, 2], device=device).long()[best[has]]] = 1
            dist[b, has, 0] = left[has, best[has]] / stride
            dist[b, has, 1] = right[has, best[has]] / stride
        return cls, dist

    def loss(self, x: torch.Tensor, mask: torch.Tensor, segments: list[np.ndarray]) -> torch.Tensor:
        """Focal loss over every real position + 1D IoU loss over positive ones, normalised by the positives."""
        focal, iou, positives = 0.0, 0.0, 0.0
        for level, (cls, reg, valid) in enumerate(self(x, mask)):
            target_cls, target_dist = self._targets(mask.sum(1), segments, level, cls.shape[1], x.device)
            focal = focal + _sigmoid_focal(cls[valid], target_cls[valid]).sum()
            pos = valid & (target_cls.sum(-1) > 0)
            positives = positives + pos.sum()
            if pos.any():
                iou = iou + _iou_loss(reg[pos], target_dist[pos]).sum()
        n = torch.clamp(torch.as_tensor(positives, dtype=torch.float32), min=1.0)
        return (focal + iou) / n

    @torch.no_grad()
    def detect(self, x: torch.Tensor, mask: torch.Tensor) -> list[list[tuple[float, float, int, float]]]:
        """Per video: (start, end, class, score) in steps, after soft-NMS."""
        outputs = self(x, mask)
        found = []
        for b in range(x.shape[0]):
            length = float(mask[b].sum())
            starts, ends, labels, scores = [], [], [], []
            for level, (cls, reg, valid) in enumerate(outputs):
                stride = 2**level
                prob = torch.sigmoid(cls[b][valid[b]])  # (T_l, K)
                d = reg[b][valid[b]]
                centre = (torch.arange(len(prob), device=x.device) + 0.5) * stride
                pos, label = torch.nonzero(prob > self.min_score, as_tuple=True)
                starts.append((centre[pos] - d[pos, 0] * stride).clamp(0, length))
                ends.append((centre[pos] + d[pos, 1] * stride).clamp(0, length))
                labels.append(label)
                scores.append(prob[pos, label])
            s, e, lab, sc = (torch.cat(v).cpu().numpy() for v in (starts, ends, labels, scores))
            keep = np.argsort(-sc, kind="stable")[: self.pre_nms]
            keep = keep[e[keep] > s[keep]]
            found.append(soft_nms(s[keep], e[keep], lab[keep], sc[keep], self.sigma, self.max_segments))
        return found


def _sigmoid_focal(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) per element."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    return (alpha * targets + (1 - alpha) * (1 - targets)) * ce * (1 - p_t) ** gamma


def _iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - IoU of segments given as (distance to start, distance to end) from the same centre."""
    inter = torch.minimum(pred[:, 0], target[:, 0]) + torch.minimum(pred[:, 1], target[:, 1])
    union = pred.sum(1) + target.sum(1) - inter
    return 1 - inter / union.clamp_min(1e-6)


def soft_nms(start, end, label, score, sigma: float = 0.5, keep: int = 100) -> list[tuple[float, float, int, float]]:
    """Class-wise Gaussian soft-NMS (Bodla et al. 2017): each chosen segment decays the scores of the rest of
    its class by exp(-IoU^2 / sigma). Returns up to `keep` (start, end, class, score), best first."""
    out = []
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)
        s, e, sc = start[idx].astype(float), end[idx].astype(float), score[idx].astype(float)
        taken = 0
        while len(sc) and taken < keep:
            taken += 1
            i = int(np.argmax(sc))
            out.append((float(s[i]), float(e[i]), int(c), float(sc[i])))
            inter = np.clip(np.minimum(e, e[i]) - np.maximum(s, s[i]), 0, None)
            iou = inter / (e - s + e[i] - s[i] - inter)
            sc = sc * np.exp(-(iou**2) / sigma)
            rest = np.arange(len(sc)) != i
            s, e, sc = s[rest], e[rest], sc[rest]
            alive = sc > 1e-3
            s, e, sc = s[alive], e[alive], sc[alive]
    out.sort(key=lambda r: -r[3])
    return out[:keep]
