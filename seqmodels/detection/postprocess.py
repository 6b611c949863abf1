"""From per-step class probabilities to scored segments (Montes et al. 2016, with several classes per video).

1. mean-filter the probabilities over time (window k, shrinking at the ends);
2. a step is active when 1 - P(background) reaches the threshold;
3. each run of active steps is a segment from its first step's start to its last step's end;
4. its label is the action class of highest mean probability inside it, its score that mean probability.
"""

from __future__ import annotations

import numpy as np


def mean_filter(probs: np.ndarray, k: int) -> np.ndarray:
    """(T, C) -> (T, C): the mean over a centred window of k steps (fewer at the ends)."""
    if k <= 1:
        return probs
    csum = np.vstack([np.zeros((1, probs.shape[1])), np.cumsum(probs, axis=0)])
    t = np.arange(len(probs))
    lo, hi = np.clip(t - (k - 1) // 2, 0, len(probs)), np.clip(t + k // 2 + 1, 0, len(probs))
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def segments_from_probs(
    probs: np.ndarray, t_start: np.ndarray, t_end: np.ndarray, smooth: int = 5, threshold: float = 0.5
) -> list[tuple[float, float, int, float]]:
    """(start, end, class index >= 1, score) per detected segment; probs (T, K + 1), column 0 background."""
    p = mean_filter(np.asarray(probs, float), smooth)
    active = (1.0 - p[:, 0]) >= threshold
    edges = np.flatnonzero(np.diff(np.r_[0, active.astype(np.int8), 0]))  # rising, falling, rising, ...
    out = []
    for first, stop in zip(edges[::2], edges[1::2]):
        mean = p[first:stop, 1:].mean(axis=0)
        label = int(mean.argmax())
        out.append((float(t_start[first]), float(t_end[stop - 1]), label + 1, float(mean[label])))
    return out
