"""Helpers shared by test modules (test modules never import each other)."""

import numpy as np

from seqmodels.detection.annotations import Segment, step_targets


def synthetic_steps(n, rng, dim=8, steps=60):
    """Per-step features: class prototype + noise inside segments, noise outside."""
    protos = np.eye(dim)[:3] * 2.0
    seqs, segs = [], []
    for _ in range(n):
        s1 = rng.integers(5, 20)
        s2 = s1 + rng.integers(8, 15) + rng.integers(5, 10)
        video = [Segment(float(s1), float(s1 + rng.integers(8, 15)), str(rng.integers(0, 3))),
                 Segment(float(s2), float(min(s2 + rng.integers(8, 15), steps)), str(rng.integers(0, 3)))]
        t = np.arange(steps, dtype=float)
        y = step_targets(t, t + 1, video, ["0", "1", "2"])
        x = rng.normal(0, 0.5, (steps, dim))
        x[y > 0] += protos[y[y > 0] - 1]
        seqs.append(x.astype(np.float32))
        segs.append(video)
    return seqs, segs
