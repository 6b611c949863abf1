import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from seqmodels.metrics import classification_metrics, clip_windows, hit_at_k, video_scores


def test_hit_at_k_hand_computed():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    labels = np.array([2, 1, 2])
    assert hit_at_k(scores, labels, 1) == pytest.approx(1 / 3)
    assert hit_at_k(scores, labels, 2) == pytest.approx(1.0)
    assert hit_at_k(scores, labels, 10) == 1.0


def test_video_prediction_is_the_mean_of_its_clips():
    clip_scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    videos, means = video_scores(clip_scores, np.array(["b", "b", "b", "a"]))
    assert videos.tolist() == ["b", "a"]
    np.testing.assert_allclose(means, [[1.4 / 3, 1.6 / 3], [0.6, 0.4]])


def test_clip_windows_cover_the_sequence_evenly():
    assert clip_windows(5, 8, 3) == [(0, 5)]
    assert clip_windows(10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert clip_windows(5, 4, 10) == [(0, 4), (1, 5)]


def test_accuracy_and_macro_f1_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 50)
    scores = rng.random((50, 4))
    m = classification_metrics(labels, scores, ["a", "b", "c", "d"])
    assert m["accuracy"] == pytest.approx(accuracy_score(labels, scores.argmax(1)))
    assert m["macro_f1"] == pytest.approx(f1_score(labels, scores.argmax(1), average="macro"))
    assert np.asarray(m["confusion"]).sum() == 50 and np.trace(m["confusion"]) == round(m["accuracy"] * 50)


def test_a_class_without_videos_is_named_and_macro_f1_over_the_present_ones_is_given():
    # 4 videos of classes a and b only; the run knows c too. Hand-computed: a: 2 right; b: 1 of 2 right,
    # the other predicted a. Precision a 2/3, recall 1 -> F1 0.8; b precision 1, recall 1/2 -> F1 2/3; c: 0.
    labels = np.array([0, 0, 1, 1])
    scores = np.eye(3)[[0, 0, 1, 0]]
    m = classification_metrics(labels, scores, ["a", "b", "c"])
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    assert m["macro_f1_present"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["per_class"]["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["macro_f1_over"] == "all 3 classes of the run"
    few, absent = m["notes"]
    assert "only 4 videos" in few and "1 of 3 classes have no video here (c)" in absent and "0.7333" in absent
