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

Two additions, each from the evaluator that defines it (docs/formats.md cites both):
- duplicate ground truth is removed first, as ActionFormer's evaluator does (`remove_duplicate_annotations`,
  libs/utils/metrics.py, applied per video when it loads the ground truth): a segment shorter than 1e-3 s is
  dropped, and so is one whose start and end both lie within 1e-3 s of an already kept segment of the same video
  and class (the first listed is kept). The official ActivityNet code keeps duplicates (`deduplicate=False`).
- ignore regions (THUMOS14's Ambiguous segments), as the THUMOS14 devkit scores them (TH14eventdetpr.m:
  `fpconf=[fpconf conf(find(indfree==1 & indamb==0))]`): a prediction that matches no ground truth and overlaps
  an ignore region of its video by any positive length counts neither as a true nor as a false positive; a
  matched prediction stays a true positive. The regions hold for every class. Only this rule is borrowed: the
  matching stays ActivityNet's (the devkit matches each ground truth in turn to its best free prediction, with
  tIoU strictly above the threshold).
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


DUPLICATE_TOL = 1e-3  # seconds; ActionFormer's remove_duplicate_annotations(tol=1e-3)


def remove_duplicates(ground_truth: list[Detection], tol: float = DUPLICATE_TOL) -> list[Detection]:
    """Ground truth without segments shorter than `tol` and without repeats: a segment whose start and end are
    both within `tol` of a kept segment of the same video and label is dropped; the first listed is kept and
    the order is preserved (ActionFormer's rule, see the module docstring)."""
    kept: dict[tuple[str, str], list[Detection]] = {}
    out = []
    for g in ground_truth:
        if g.end - g.start < tol:
            continue
        same = kept.setdefault((g.video_id, g.label), [])
        if any(abs(g.start - k.start) <= tol and abs(g.end - k.end) <= tol for k in same):
            continue
        same.append(g)
        out.append(g)
    return out


def _in_ignore(p: Detection, regions: dict[str, np.ndarray]) -> bool:
    """Whether the prediction overlaps an ignore region of its video by a positive length."""
    here = regions.get(p.video_id)
    if here is None:
        return False
    return bool((np.minimum(p.end, here[:, 1]) - np.maximum(p.start, here[:, 0]) > 0).any())


def average_precision(
    ground_truth: list[Detection], predictions: list[Detection], thresholds, ignore: list[Detection] | None = None
) -> np.ndarray:
    """AP of one class at each tIoU threshold. Both lists hold only that class; `ignore` holds the ignore
    regions of any label (a false positive overlapping one is left out, see the module docstring)."""
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
    regions: dict[str, list] = {}
    for r in ignore or []:
        regions.setdefault(r.video_id, []).append((r.start, r.end))
    regions = {v: np.array(segs, float) for v, segs in regions.items()}
    ignored = np.array([bool(regions) and _in_ignore(predictions[i], regions) for i in order], bool)  # (P,) by rank
    aps = []
    for t in range(len(thresholds)):
        keep = ~(ignored & (fp[t] == 1))  # an ignored false positive leaves the ranking at this threshold
        tp_sum, fp_sum = np.cumsum(tp[t, keep]), np.cumsum(fp[t, keep])
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = tp_sum / (tp_sum + fp_sum)
        aps.append(interpolated_ap(precision, tp_sum / len(ground_truth)))
    return np.array(aps)


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
    ground_truth: list[Detection], predictions: list[Detection], thresholds=ACTIVITYNET_TIOU, known: list[str] | None = None,
    ignore: list[Detection] | None = None, deduplicate: bool = True,
) -> DetectionMAP:
    """mAP over the ground truth's classes at each tIoU threshold (see the module docstring). `known`: every
    class of the annotation file, when the ground truth is one subset of it: a prediction of a known class that
    this subset never shows counts in no AP (the official code indexes classes by the evaluated subset).
    `ignore`: ignore regions of any label (`Annotations.ignore_regions(ids)`, THUMOS14's Ambiguous).
    `deduplicate`: remove duplicate ground truth first, as ActionFormer does (False: as ActivityNet does)."""
    labels = {g.label for g in ground_truth}
    unknown = sorted({p.label for p in predictions} - labels - set(known or []))
    if unknown:
        raise FeatxError(f"predicted labels {unknown} do not occur in the ground truth (classes: {', '.join(sorted(labels))})")
    if deduplicate:
        ground_truth = remove_duplicates(ground_truth)
    classes = sorted({g.label for g in ground_truth})
    ap = np.array([
        average_precision([g for g in ground_truth if g.label == c], [p for p in predictions if p.label == c],
                          thresholds, ignore)
        for c in classes
    ]).reshape(len(classes), len(thresholds))
    return DetectionMAP(tuple(float(t) for t in thresholds), classes, ap)


def parse_tiou(value: str) -> tuple[float, ...]:
    """--tiou: activitynet, thumos, or thresholds like 0.3,0.5."""
    named = {"activitynet": ACTIVITYNET_TIOU, "thumos": THUMOS_TIOU}
    if value.strip().lower() in named:
        return named[value.strip().lower()]
    try:
        values = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise FeatxError(f"--tiou must be activitynet, thumos or numbers like 0.3,0.5, not {value!r}") from None
    if not all(0 < v <= 1 for v in values):
        raise FeatxError(f"--tiou thresholds must lie in (0, 1], not {value!r}")
    return values


def map_table(metrics: dict) -> list[str]:
    """mAP per tIoU threshold and their average, then AP per class, as text lines."""
    lines = ["tIoU  | " + " | ".join(f"{t:>5}" for t in metrics["map"]) + " | average",
             "mAP   | " + " | ".join(f"{m:>5.3f}" for m in metrics["map"].values()) + f" | {metrics['average_map']:.3f}"]
    lines += [f"AP {cls}: " + " ".join(f"{a:.2f}" for a in row.values()) for cls, row in metrics["ap_per_class"].items()]
    if "update_fraction" in metrics:  # skip step detectors
        lines.append(f"state updates: {metrics['update_fraction']:.1%} of the steps")
    lines += [f"note: {note}" for note in metrics.get("notes", [])]
    return lines
