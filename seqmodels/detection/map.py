"""Temporal detection mAP, as the official ActivityNet evaluation (Heilbron et al., `eval_detection.py`)
defines it:

- per class, the predictions of that class are sorted by decreasing score (numpy's `argsort()[::-1]`, as
  the official code does, so equal scores fall in the same order);
- each prediction is matched, at each tIoU threshold, to the ground truth of its video and class with the
  highest tIoU that is not yet matched, if that tIoU reaches the threshold (true positive); otherwise it is a
  false positive, and so is a prediction on a video without ground truth of its class;
- AP is the all-point interpolated area under precision/recall (precision made monotone from the right);
- mAP averages AP over the classes of the ground truth; a predicted label absent from the ground truth is an
  error (the official code fails on it too).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featx.errors import FeatxError

ACTIVITYNET_TIOU = tuple(np.round(np.linspace(0.5, 0.95, 10), 2))
THUMOS_TIOU = (0.3, 0.4, 0.5, 0.6, 0.7)


@dataclass(frozen=True)
class Detection:
    video_id: str
    start: float
    end: float
    label: str
    score: float = 1.0  # unused for ground truth


def tiou(segment: tuple[float, float], others: np.ndarray) -> np.ndarray:
    """Temporal IoU of one [start, end] with each row of `others` (N, 2)."""
    inter = np.clip(np.minimum(segment[1], others[:, 1]) - np.maximum(segment[0], others[:, 0]), 0, None)
    union = (others[:, 1] - others[:, 0]) + (segment[1] - segment[0]) - inter
    return inter / union


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated average precision (VOC 2010+ / ActivityNet)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision(ground_truth: list[Detection], predictions: list[Detection], thresholds) -> np.ndarray:
    """AP of one class at each tIoU threshold. Both lists hold only that class."""
    thresholds = np.asarray(thresholds, float)
    if not ground_truth:
        return np.zeros(len(thresholds))
    by_video: dict[str, list[int]] = {}
    for g, det in enumerate(ground_truth):
        by_video.setdefault(det.video_id, []).append(g)
    gt_segments = np.array([[d.start, d.end] for d in ground_truth], float)
    order = np.array([p.score for p in predictions], float).argsort()[::-1]
    matched = np.full((len(thresholds), len(ground_truth)), -1)
    tp = np.zeros((len(thresholds), len(predictions)))
    fp = np.zeros((len(thresholds), len(predictions)))
    for rank, p in enumerate(predictions[i] for i in order):
        candidates = by_video.get(p.video_id)
        if candidates is None:
            fp[:, rank] = 1
            continue
        overlaps = tiou((p.start, p.end), gt_segments[candidates])
        best_first = overlaps.argsort()[::-1]
        for t, threshold in enumerate(thresholds):
            for j in best_first:
                if overlaps[j] < threshold:
                    break
                if matched[t, candidates[j]] >= 0:
                    continue
                tp[t, rank] = 1
                matched[t, candidates[j]] = rank
                break
            fp[t, rank] = 1 - tp[t, rank]
    tp_sum, fp_sum = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    recall = tp_sum / len(ground_truth)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp_sum / (tp_sum + fp_sum)
    return np.array([interpolated_ap(precision[t], recall[t]) for t in range(len(thresholds))])


@dataclass
class DetectionMAP:
    thresholds: tuple[float, ...]
    classes: list[str]
    ap: np.ndarray  # (classes, thresholds)

    @property
    def map(self) -> np.ndarray:
        """mAP per threshold."""
        return self.ap.mean(axis=0)

    @property
    def average_map(self) -> float:
        return float(self.map.mean())

    def to_dict(self) -> dict:
        return {
            "tiou_thresholds": [float(t) for t in self.thresholds],
            "map": {f"{t:g}": float(m) for t, m in zip(self.thresholds, self.map)},
            "average_map": self.average_map,
            "ap_per_class": {c: {f"{t:g}": float(a) for t, a in zip(self.thresholds, row)} for c, row in zip(self.classes, self.ap)},
        }


def detection_map(
    ground_truth: list[Detection], predictions: list[Detection], thresholds=ACTIVITYNET_TIOU, known: list[str] | None = None
) -> DetectionMAP:
    """mAP over the ground truth's classes at each tIoU threshold (see the module docstring). `known`: every
    class of the annotation file, when the ground truth is one subset of it: a prediction of a known class that
    this subset never shows counts in no AP (the official code indexes classes by the evaluated subset)."""
    classes = sorted({g.label for g in ground_truth})
    unknown = sorted({p.label for p in predictions} - set(classes) - set(known or []))
    if unknown:
        raise FeatxError(f"predicted labels {unknown} do not occur in the ground truth (classes: {', '.join(classes)})")
    ap = np.array([
        average_precision([g for g in ground_truth if g.label == c], [p for p in predictions if p.label == c], thresholds)
        for c in classes
    ]).reshape(len(classes), len(thresholds))
    return DetectionMAP(tuple(float(t) for t in thresholds), classes, ap)


def map_table(metrics: dict) -> list[str]:
    """mAP per tIoU threshold and their average, then AP per class, as text lines."""
    lines = ["tIoU  | " + " | ".join(f"{t:>5}" for t in metrics["map"]) + " | average",
             "mAP   | " + " | ".join(f"{m:>5.3f}" for m in metrics["map"].values()) + f" | {metrics['average_map']:.3f}"]
    lines += [f"AP {cls}: " + " ".join(f"{a:.2f}" for a in row.values()) for cls, row in metrics["ap_per_class"].items()]
    if "update_fraction" in metrics:  # skip step detectors
        lines.append(f"state updates: {metrics['update_fraction']:.1%} of the steps")
    return lines
