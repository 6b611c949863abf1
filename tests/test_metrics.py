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
