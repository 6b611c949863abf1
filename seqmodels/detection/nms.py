"""Class-wise Gaussian soft-NMS (Bodla et al. 2017) and boundary voting, as ActionFormer's inference uses them.
Pure numpy; segments are (start, end) pairs with a class and a score."""

from __future__ import annotations

import numpy as np

from seqmodels.detection.map import tiou as segment_iou


def soft_nms_one_class(segments: np.ndarray, scores: np.ndarray, sigma: float = 0.5, min_score: float = 0.001,
                       limit: int | None = None):
    """Gaussian soft-NMS of one class: repeatedly take the best remaining segment and multiply the scores of
    the rest by exp(-tIoU^2 / sigma); segments whose score falls below `min_score` are dropped.
    Returns (kept segments (M, 2), their scores at the time they were taken), best first. The scores taken
    never rise, so stopping after `limit` segments changes none of the first `limit`."""
    segs, sc = np.asarray(segments, float).copy(), np.asarray(scores, float).copy()
    kept, kept_scores = [], []
    while len(sc) and (limit is None or len(kept) < limit):
        i = int(np.argmax(sc))
        kept.append(segs[i])
        kept_scores.append(sc[i])
        rest = np.arange(len(sc)) != i
        segs, sc = segs[rest], sc[rest] * np.exp(-(segment_iou(segs[i], segs[rest]) ** 2) / sigma)
        alive = sc >= min_score
        segs, sc = segs[alive], sc[alive]
    return np.array(kept, float).reshape(-1, 2), np.array(kept_scores, float)


def vote(kept: np.ndarray, candidates: np.ndarray, candidate_scores: np.ndarray, threshold: float) -> np.ndarray:
    """Boundary voting (ActionFormer's `seg_voting`): each kept segment becomes the average of the pre-NMS
    candidates of its class that overlap it by at least `threshold` tIoU, weighted by score x tIoU."""
    out = kept.copy()
    for k, seg in enumerate(kept):
        iou = segment_iou(seg, candidates)
        near = iou >= threshold
        if near.any():
            w = candidate_scores[near] * iou[near]
            out[k] = (candidates[near] * w[:, None]).sum(0) / w.sum()
    return out


def class_wise_soft_nms(start, end, label, score, sigma: float = 0.5, min_score: float = 0.001, keep: int = 200,
                        voting: float = 0.0) -> list[tuple[float, float, int, float]]:
    """Soft-NMS within each class, then the best `keep` of all classes: (start, end, class, score) tuples,
    best first. voting > 0: boundaries of the kept segments are refined by `vote` at that tIoU."""
    start, end, label, score = (np.asarray(a) for a in (start, end, label, score))
    out = []
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)
        segs = np.stack([start[idx], end[idx]], 1).astype(float)
        kept, kept_scores = soft_nms_one_class(segs, score[idx], sigma, min_score, keep)
        if voting > 0 and len(kept):
            kept = vote(kept, segs, score[idx].astype(float), voting)
        out += [(float(s), float(e), int(c), float(sc)) for (s, e), sc in zip(kept, kept_scores)]
    out.sort(key=lambda r: -r[3])
    return out[:keep]
