"""The independent ActivityNet reference (tests/anet_reference.py) on hand-computed cases, then featx's
`detection_map` against it on seeded random cases."""

import random

import numpy as np
import pytest

from seqmodels.detection.map import ACTIVITYNET_TIOU, Detection, detection_map
from tests.anet_reference import official_ap, official_map


def gt_json(videos: dict) -> dict:
    """videos: {video: (subset, [(start, end, label), ...])}"""
    return {"database": {v: {"subset": s, "annotations": [{"segment": [a, b], "label": c} for a, b, c in anns]}
                         for v, (s, anns) in videos.items()}}


def pred_json(preds: list) -> dict:
    """preds: [(video, start, end, label, score)], grouped by video in first-appearance order."""
    results: dict = {}
    for v, a, b, c, score in preds:
        results.setdefault(v, []).append({"label": c, "score": score, "segment": [a, b]})
    return {"results": results}


def test_false_positive_without_ground_truth_duplicate_and_two_thresholds():
    gt = gt_json({"v1": ("validation", [(0, 10, "a"), (20, 30, "a")]), "v3": ("validation", [])})
    preds = pred_json([
        ("v2", 0, 10, "a", 0.95),  # video absent from the ground truth: FP at every threshold
        ("v1", 0, 10, "a", 0.9),   # tIoU 1 with [0, 10]
        ("v1", 1, 10, "a", 0.8),   # duplicate: tIoU 0.9 with the already-matched [0, 10], 0 with [20, 30]
        ("v1", 20, 28, "a", 0.7),  # tIoU 0.8 with [20, 30]
        ("v3", 0, 10, "a", 0.1),   # video of the subset without annotations: FP
    ])
    # 0.5:  FP TP FP TP FP -> precision 0, 1/2, 1/3, 1/2, 2/5 at recall 0, .5, .5, 1, 1; monotone: 1/2 everywhere
    #       -> AP = .5 * 1/2 + .5 * 1/2 = 0.5
    # 0.95: FP TP FP FP FP -> precision 1/2 at recall .5 is the max -> AP = .5 * 1/2 = 0.25
    m, avg = official_map(gt, preds, "validation", [0.5, 0.95])
    np.testing.assert_allclose(m, [0.5, 0.25], rtol=0, atol=1e-12)
    assert avg == pytest.approx(0.375, abs=1e-12)


def test_best_unmatched_ground_truth_and_threshold_is_inclusive():
    gt = gt_json({"v": ("validation", [(0, 10, "a"), (4, 14, "a")])})
    # [0, 10]: tIoU 1 with g1. [1, 11]: tIoU 9/11 with g1 (taken), 7/13 = .538 with g2
    preds = pred_json([("v", 0, 10, "a", 0.9), ("v", 1, 11, "a", 0.8)])
    # 0.5: TP TP -> AP 1; 0.7: TP FP -> precision 1 at recall .5 -> AP .5
    np.testing.assert_allclose(official_map(gt, preds, "validation", [0.5, 0.7])[0], [1.0, 0.5], atol=1e-12)
    # tIoU exactly 0.5 ([0, 5] in [0, 10]) matches at threshold 0.5 (official tests `tiou < thr` for a miss)
    one = gt_json({"v": ("validation", [(0, 10, "a")])})
    assert official_map(one, pred_json([("v", 0, 5, "a", 1.0)]), "validation", [0.5])[0][0] == 1.0


def test_subset_filter_classes_without_predictions_and_ties():
    gt = gt_json({"v1": ("validation", [(0, 10, "a"), (0, 10, "b")]), "v2": ("training", [(0, 10, "a")])})
    # v2 is a training video: its ground truth is dropped but the prediction on it is kept, as an FP
    preds = pred_json([("v2", 0, 10, "a", 0.9), ("v1", 0, 10, "a", 0.8)])
    index, ap = official_ap(gt, preds, "validation", [0.5])
    assert index == {"a": 0, "b": 1}
    np.testing.assert_allclose(ap, [[0.5, 0.0]], atol=1e-12)  # a: FP, TP -> 1 * 1/2; b: no predictions -> 0
    # equal scores: argsort()[::-1] ranks the later one first -> FP ([0, 4], tIoU .4) then TP -> AP 0.5
    one = gt_json({"v": ("validation", [(0, 10, "a")])})
    tied = pred_json([("v", 0, 10, "a", 0.5), ("v", 0, 4, "a", 0.5)])
    assert official_map(one, tied, "validation", [0.5])[0][0] == pytest.approx(0.5, abs=1e-12)


def test_unknown_labels_fail_like_the_official_code():
    gt = gt_json({"v1": ("validation", [(0, 10, "a")]), "v2": ("training", [(0, 10, "b")])})
    for label in ("b", "zzz"):  # "b" only exists in another subset: still unknown to the activity index
        with pytest.raises(KeyError):
            official_map(gt, pred_json([("v1", 0, 10, label, 1.0)]), "validation", [0.5])


def random_case(seed: int):
    rng = random.Random(seed)
    classes = [f"c{i}" for i in range(rng.randint(2, 4))]

    def segment():  # integer segments half the time, so tIoUs hit thresholds and each other exactly
        if rng.random() < 0.5:
            s = float(rng.randint(0, 20))
            return s, s + rng.randint(1, 10)
        s = rng.uniform(0, 40)
        return s, s + rng.uniform(0.5, 15)

    videos = {}
    for v in range(rng.randint(2, 6)):
        subset = "validation" if v < 2 or rng.random() < 0.7 else "training"
        videos[f"v{v}"] = (subset, [(*segment(), rng.choice(classes)) for _ in range(rng.randint(1, 5))])
    kept = {v: anns for v, (s, anns) in videos.items() if s == "validation"}
    labels = sorted({c for anns in kept.values() for *_, c in anns})
    preds = []
    for _ in range(rng.randint(1, 60)):
        score = rng.choice([0.5, 0.25, 0.75]) if seed % 3 == 0 else rng.random()  # a third of the cases: ties
        video = rng.choice(list(kept))
        if rng.random() < 0.6:  # a jittered copy of one of the video's ground truths, mostly of its class
            a, b, c = rng.choice(kept[video])
            jitter = 0.0 if rng.random() < 0.3 else rng.uniform(-2, 2)
            preds.append((video, a + jitter, b + rng.choice([0.0, jitter, -jitter]), c if rng.random() < 0.8 else rng.choice(labels), score))
        else:
            preds.append((video, *segment(), rng.choice(labels), score))
    preds.sort(key=lambda p: p[0])  # grouped by video, as a results file lists them
    return videos, kept, preds


@pytest.mark.parametrize("seed", range(20))
def test_featx_detection_map_agrees_with_the_reference(seed):
    videos, kept, preds = random_case(seed)
    thresholds = ACTIVITYNET_TIOU
    m, avg = official_map(gt_json(videos), pred_json(preds), "validation", thresholds)
    ground_truth = [Detection(v, a, b, c) for v, anns in kept.items() for a, b, c in anns]
    result = detection_map(ground_truth, [Detection(v, a, b, c, s) for v, a, b, c, s in preds], thresholds)
    np.testing.assert_allclose(result.map, m, rtol=0, atol=1e-9)
    assert result.average_map == pytest.approx(avg, rel=0, abs=1e-9)
