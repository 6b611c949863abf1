"""Independent numpy re-implementation of the official ActivityNet temporal-detection evaluation, for tests.

Source followed: activitynet/ActivityNet, commit 82304fa9f4a7219421df13dae6347a445c4cf5bc (Python 2 code),
`Evaluation/eval_detection.py` (ANETdetection, compute_average_precision_detection) and `Evaluation/utils.py`
(interpolated_prec_rec, segment_iou). Line numbers below refer to eval_detection.py unless marked utils.py.

Semantics and quirks reproduced:
- Ground truth is filtered by subset (l.78) (and by the server's blocked-video list, l.80; `blocked_videos` here,
  empty by default = `check_status=False`). Predictions are NOT filtered by subset (l.120-129): a prediction on a
  video of another subset, or on a video absent from the database, is kept and becomes a false positive.
- The activity index is built from the labels of the kept ground truth only, in order of first appearance
  (l.75-85). A prediction whose label is not in it -- including a label of the database that only occurs in
  another subset -- raises KeyError (l.124, `self.activity_index[result['label']]`); so does this module.
- Every class of the index has >= 1 ground-truth instance by construction, so there are no classes without
  ground truth; a class without predictions gets AP 0 (l.141-145, 205-206). mAP = plain mean of AP over the
  index's classes (l.175), average mAP = mean over thresholds (l.176).
- Per class, predictions are ranked with `scores.argsort()[::-1]` (l.211): numpy's default (unstable) sort,
  reversed, so tied scores come out in the reverse of argsort's order (for <= 16 items, the reverse of the
  input order). The input order is the results file order (video by video, then list order); NB the official
  code is Python 2, whose dict iteration order (l.120 `iteritems`) is hash order, not file order -- so ties
  across videos are only reproducible for a Python 3 port of it, which is what is mimicked here.
- A prediction on a video without ground truth of its class is a false positive (l.224-229). Otherwise the
  video's ground truths of that class are tried in `tiou.argsort()[::-1]` order (l.235; ties: reverse of
  argsort order); the first whose tIoU is below the threshold stops the search as a false positive (l.238-240),
  locked ground truths are skipped (l.241-242), the first unlocked one with tIoU >= threshold is a true positive
  (l.244-246; ">=": tIoU equal to the threshold matches); all candidates locked -> false positive (l.248-249).
  Locks are per threshold (l.209).
- tIoU (utils.py l.41-51) divides by the union with no guard: a zero-length prediction on a zero-length ground
  truth at the same point gives NaN, which is never "< threshold" and so matches (a true positive).
- AP = VOC-2011 interpolated AP (utils.py l.14-23): precision padded with 0 at both ends, recall with 0 and 1,
  precision made monotone from the right, summed over recall changes.
- Default thresholds are `np.linspace(0.5, 0.95, 10)` (l.20), NOT rounded (e.g. 0.8999999999999999): pass
  rounded thresholds explicitly if that is what is wanted; this module uses whatever it is given.
- The format checks (l.71, l.114) require 'taxonomy'/'version' and 'version'/'external_data' keys; they are not
  enforced here.
"""

from __future__ import annotations

import numpy as np

OFFICIAL_TIOU = np.linspace(0.5, 0.95, 10)


def segment_iou(target, candidates: np.ndarray) -> np.ndarray:
    """tIoU of `target` [start, end] with each row of `candidates` (N, 2); unguarded division like utils.py."""
    inter = np.clip(np.minimum(target[1], candidates[:, 1]) - np.maximum(target[0], candidates[:, 0]), 0, None)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter.astype(float) / union


def interpolated_prec_rec(prec: np.ndarray, rec: np.ndarray) -> float:
    mprec = np.hstack([[0.0], prec, [0.0]])
    mrec = np.hstack([[0.0], rec, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def class_ap(gt: list[tuple], preds: list[tuple], thresholds) -> np.ndarray:
    """AP of one class at each threshold. gt: [(video, start, end)], preds: [(video, start, end, score)]."""
    thresholds = np.asarray(thresholds, float)
    ap = np.zeros(len(thresholds))
    if not preds:
        return ap
    gt_seg = np.array([[s, e] for _, s, e in gt], float).reshape(-1, 2)
    gt_by_video: dict[str, list[int]] = {}
    for g, (video, _, _) in enumerate(gt):
        gt_by_video.setdefault(video, []).append(g)  # class-level indices, in ground-truth order
    order = np.array([p[3] for p in preds], float).argsort()[::-1]
    locked = -np.ones((len(thresholds), len(gt)))
    tp = np.zeros((len(thresholds), len(preds)))
    fp = np.zeros((len(thresholds), len(preds)))
    for rank, (video, start, end, _) in enumerate(preds[i] for i in order):
        if video not in gt_by_video:
            fp[:, rank] = 1
            continue
        members = gt_by_video[video]
        overlaps = segment_iou((start, end), gt_seg[members])
        for t, thr in enumerate(thresholds):
            for j in overlaps.argsort()[::-1]:
                if overlaps[j] < thr:
                    break
                if locked[t, members[j]] >= 0:
                    continue
                tp[t, rank] = 1
                locked[t, members[j]] = rank
                break
            fp[t, rank] = 1 - tp[t, rank]
    tp_c, fp_c = np.cumsum(tp, axis=1), np.cumsum(fp, axis=1)
    recall, precision = tp_c / float(len(gt)), tp_c / (tp_c + fp_c)
    return np.array([interpolated_prec_rec(precision[t], recall[t]) for t in range(len(thresholds))])


def official_ap(ground_truth_json: dict, prediction_json: dict, subset: str, tiou_thresholds=OFFICIAL_TIOU,
                blocked_videos=()) -> tuple[dict[str, int], np.ndarray]:
    """(activity index {label: column}, AP array (thresholds, classes)) as ANETdetection computes them."""
    activity_index: dict[str, int] = {}
    gt: list[tuple] = []
    for video, v in ground_truth_json["database"].items():
        if v["subset"] != subset or video in blocked_videos:
            continue
        for ann in v["annotations"]:
            cidx = activity_index.setdefault(ann["label"], len(activity_index))
            gt.append((video, float(ann["segment"][0]), float(ann["segment"][1]), cidx))
    preds: list[tuple] = []
    for video, results in prediction_json["results"].items():
        if video in blocked_videos:
            continue
        for r in results:
            cidx = activity_index[r["label"]]  # KeyError on a label unknown to this subset, as official l.124
            preds.append((video, float(r["segment"][0]), float(r["segment"][1]), float(r["score"]), cidx))
    ap = np.zeros((len(tiou_thresholds), len(activity_index)))
    for cidx in activity_index.values():
        ap[:, cidx] = class_ap([g[:3] for g in gt if g[3] == cidx], [p[:4] for p in preds if p[4] == cidx],
                               tiou_thresholds)
    return activity_index, ap


def official_map(ground_truth_json: dict, prediction_json: dict, subset: str, tiou_thresholds=OFFICIAL_TIOU,
                 blocked_videos=()) -> tuple[np.ndarray, float]:
    """(mAP per threshold, average mAP over thresholds), as ANETdetection.evaluate() -> (mAP, average_mAP)."""
    _, ap = official_ap(ground_truth_json, prediction_json, subset, tiou_thresholds, blocked_videos)
    m = ap.mean(axis=1)
    return m, float(m.mean())
