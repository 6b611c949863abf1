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


FEW_VIDEOS = 10  # fewer scored videos than this: each one moves accuracy by more than 10 points


def classification_metrics(labels: np.ndarray, scores: np.ndarray, classes: list[str]) -> dict:
    """accuracy, macro_f1 (over every class of the run: a class without a scored video counts as F1 0, and
    `macro_f1_present` averages the classes the videos show), hit@1, hit@5, per-class precision / recall / F1 /
    support, the confusion matrix (rows: true class, columns: predicted) and notes on a small or partial sample."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    predicted = scores.argmax(1)
    everything = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=everything, zero_division=0)
    present = support > 0
    notes = []
    if len(labels) < FEW_VIDEOS:
        notes.append(f"scored on only {len(labels)} videos: each one moves accuracy by {100 / max(len(labels), 1):.0f} points")
    if not present.all():
        absent = [c for c, here in zip(classes, present) if not here]
        notes.append(f"{len(absent)} of {len(classes)} classes have no video here ({', '.join(absent[:3])}"
                     f"{'...' if len(absent) > 3 else ''}): macro-F1 counts them as 0; over the {int(present.sum())} "
                     f"present classes it is {float(f1[present].mean()) if present.any() else 0.0:.4f}")
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1.mean()),
        "macro_f1_over": f"all {len(classes)} classes of the run",
        "macro_f1_present": float(f1[present].mean()) if present.any() else 0.0,
        "hit@1": hit_at_k(scores, labels, 1),
        "hit@5": hit_at_k(scores, labels, 5),
        "per_class": {c: {"precision": float(pr), "recall": float(rc), "f1": float(f), "support": int(n)}
                      for c, pr, rc, f, n in zip(classes, precision, recall, f1, support)},
        "confusion": confusion_matrix(labels, predicted, labels=everything).tolist(),
        "classes": list(classes),
        "videos": int(len(labels)),
        "notes": notes,
    }


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Non-interpolated AP of one class (Charades' `charades_ap`, PASCAL VOC 2010+): the mean, over the positive
    rows, of the precision among the rows scored at least as high. Rows tied in score count together (as
    scikit-learn's average_precision_score does). NaN when there is no positive row."""
    positives = np.asarray(positives, bool)
    if not positives.any():
        return float("nan")
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    s, pos = np.asarray(scores, float)[order], positives[order]
    last_of_tie = np.r_[s[1:] != s[:-1], True]  # a threshold ends after each run of tied scores
    tp = np.cumsum(pos)[last_of_tie]
    seen = (np.flatnonzero(last_of_tie) + 1)
    precision = tp / seen
    new_tp = np.diff(np.r_[0, tp])  # positives first reached at each threshold
    return float((precision * new_tp).sum() / pos.sum())


def multilabel_map(scores: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    """mAP over classes as Charades defines it: AP of each class over all scored rows (frames of every video,
    or whole videos), averaged over the classes with at least one positive row. scores, targets (N, C)."""
    scores, targets = np.asarray(scores, float), np.asarray(targets) > 0
    ap = [average_precision(scores[:, k], targets[:, k]) for k in range(targets.shape[1])]
    scored = [a for a in ap if not np.isnan(a)]
    return {
        "mAP": float(np.mean(scored)) if scored else float("nan"),
        "AP": {c: (None if np.isnan(a) else a) for c, a in zip(classes, ap)},
        "classes_scored": len(scored),
        "rows": int(len(scores)),
    }
