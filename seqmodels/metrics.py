"""Classification metrics: accuracy, macro-F1 and confusion (scikit-learn), hit@k, clip vs video hit@1
(Karpathy et al. 2014: a video's prediction is the mean of its clips' class probabilities)."""

from __future__ import annotations

import numpy as np


def hit_at_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose true label is among the k highest scores. scores (N, C), labels (N,)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def video_scores(clip_scores: np.ndarray, clip_videos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean clip scores per video. Returns (video ids in first-seen order, (V, C) scores)."""
    videos, first, inverse = np.unique(clip_videos, return_index=True, return_inverse=True)
    sums = np.zeros((len(videos), clip_scores.shape[1]))
    np.add.at(sums, inverse, clip_scores)
    means = sums / np.bincount(inverse)[:, None]
    order = np.argsort(first)
    return videos[order], means[order]


def clip_windows(length: int, clip_steps: int, clips: int) -> list[tuple[int, int]]:
    """Up to `clips` windows of `clip_steps` steps spread evenly over a sequence of `length` steps
    (the whole sequence once when it is not longer than a clip)."""
    if length <= clip_steps:
        return [(0, length)]
    starts = np.linspace(0, length - clip_steps, num=min(clips, length - clip_steps + 1))
    return [(int(round(s)), int(round(s)) + clip_steps) for s in starts]


def classification_metrics(labels: np.ndarray, scores: np.ndarray, classes: list[str]) -> dict:
    """accuracy, macro_f1, hit@1, hit@5 and the confusion matrix (rows: true class, columns: predicted)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    predicted = scores.argmax(1)
    everything = list(range(len(classes)))
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", labels=everything, zero_division=0)),
        "hit@1": hit_at_k(scores, labels, 1),
        "hit@5": hit_at_k(scores, labels, 5),
        "confusion": confusion_matrix(labels, predicted, labels=everything).tolist(),
        "classes": list(classes),
        "videos": int(len(labels)),
    }
