"""ActivityNet-protocol detection mAP on hand-computed cases (duplicates, ties, missing videos)."""

import numpy as np
import pytest

from featx.errors import FeatxError
from seqmodels.detection.map import Detection, average_precision, detection_map, interpolated_ap, tiou


def D(video, start, end, label="a", score=1.0):
    return Detection(video, start, end, label, score)


def test_tiou_by_hand():
    np.testing.assert_allclose(tiou((0, 10), np.array([[0, 10], [5, 15], [10, 20], [2, 4]])), [1, 5 / 15, 0, 0.2])


def test_interpolated_ap_makes_precision_monotone_from_the_right():
    # precision 1, 0.5, 2/3 at recall 0.5, 0.5, 1: the dip at rank 2 is lifted to 2/3
    assert interpolated_ap(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1])) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_a_duplicate_is_a_false_positive_and_thresholds_differ():
    gt = [D("v", 0, 10), D("v", 20, 30)]
    preds = [D("v", 0, 10, score=0.9), D("v", 1, 10, score=0.8), D("v", 20, 28, score=0.7)]
    ap = average_precision(gt, preds, [0.5, 0.95])
    # 0.5: TP, FP (its best match is taken), TP -> 0.5 * 1 + 0.5 * 2/3; 0.95: TP, FP, FP (tIoU 0.8) -> 0.5
    np.testing.assert_allclose(ap, [0.5 + 0.5 * 2 / 3, 0.5])


def test_equal_scores_keep_the_official_order_last_listed_first():
    gt = [D("v", 0, 10)]
    preds = [D("v", 0, 10, score=0.5), D("v", 0, 4, score=0.5)]  # argsort()[::-1]: the second is ranked first
    # rank 1: [0, 4] (tIoU 0.4) FP; rank 2: [0, 10] TP -> precision 0, 1/2 at recall 0, 1 -> AP 0.5
    assert average_precision(gt, preds, [0.5])[0] == pytest.approx(0.5)


def test_a_prediction_on_a_video_without_that_class_is_a_false_positive():
    gt = [D("v1", 0, 10)]
    preds = [D("v2", 0, 10, score=0.9), D("v1", 0, 10, score=0.8)]
    assert average_precision(gt, preds, [0.5])[0] == pytest.approx(0.5)  # FP then TP


def test_the_best_unmatched_ground_truth_is_taken():
    gt = [D("v", 0, 10), D("v", 4, 14)]
    # the first prediction overlaps both, the second [0, 10] only; greedy on tIoU gives both a match
    preds = [D("v", 3, 13, score=0.9), D("v", 0, 9, score=0.8)]
    assert average_precision(gt, preds, [0.5])[0] == pytest.approx(1.0)


def test_map_averages_over_ground_truth_classes_and_rejects_unknown_labels():
    gt = [D("v", 0, 10, "a"), D("v", 20, 30, "b")]
    result = detection_map(gt, [D("v", 0, 10, "a", 0.9)], thresholds=[0.5, 0.7])
    np.testing.assert_allclose(result.map, [0.5, 0.5])  # a: 1, b: no predictions, 0
    assert result.average_map == pytest.approx(0.5)
    assert result.to_dict()["map"] == {"0.5": 0.5, "0.7": 0.5}
    with pytest.raises(FeatxError, match=r"predicted labels \['c'\]"):
        detection_map(gt, [D("v", 0, 10, "c")])
    # "c" is a class of the annotation file that this subset lacks: it counts in no AP
    assert detection_map(gt, [D("v", 0, 10, "a", 0.9), D("v", 0, 5, "c")], [0.5], known=["a", "b", "c"]).map[0] == 0.5
