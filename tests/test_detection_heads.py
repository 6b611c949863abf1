"""Post-processing by hand, and the Montes LSTM learning per-step labels well enough to score mAP."""

import numpy as np
import pytest
import torch

from seqmodels.detection.annotations import Segment, step_targets
from seqmodels.detection.heads import MontesLSTM
from seqmodels.detection.map import Detection, detection_map
from seqmodels.detection.postprocess import mean_filter, segments_from_probs
from seqmodels.detection.step_training import predict_steps, train_steps
from tests.helpers import synthetic_steps


def test_mean_filter_by_hand():
    p = np.array([[0.0], [3.0], [6.0], [9.0]])
    np.testing.assert_allclose(mean_filter(p, 3)[:, 0], [1.5, 3.0, 6.0, 7.5])  # the window shrinks at the ends


def test_segments_come_from_edges_with_the_mean_class_and_its_score():
    # background, then 3 steps of class 2, one of class 1 inside the run, then background again
    probs = np.array([
        [0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1],
    ])
    t = np.arange(6.0)
    segs = segments_from_probs(probs, t, t + 1, smooth=1, threshold=0.5)
    assert segs == [(1.0, 4.0, 2, pytest.approx(0.6)), (5.0, 6.0, 1, pytest.approx(0.8))]


@pytest.mark.slow
def test_montes_lstm_learns_per_step_labels_and_detects_segments():
    rng = np.random.default_rng(0)
    train_x, train_segs = synthetic_steps(48, rng)
    val_x, val_segs = synthetic_steps(16, rng)
    t = np.arange(60, dtype=float)
    targets = [step_targets(t, t + 1, s, ["0", "1", "2"]) for s in train_segs]
    torch.manual_seed(0)
    model = MontesLSTM(8, 4, hidden=32, dropout=0.1)
    model, losses = train_steps(model, train_x, targets, epochs=25, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0]
    gt = [Detection(str(v), s.start, s.end, s.label) for v, segs in enumerate(val_segs) for s in segs]
    preds = [
        Detection(str(v), s, e, str(label - 1), score)
        for v, probs in enumerate(predict_steps(model, val_x))
        for s, e, label, score in segments_from_probs(probs, t, t + 1, smooth=3)
    ]
    assert detection_map(gt, preds, thresholds=[0.5]).map[0] >= 0.8


@pytest.mark.slow
def test_skip_step_detector_learns_segments_and_its_budget_cuts_updates():
    from seqmodels.detection.heads import SkipSteps
    from seqmodels.detection.step_training import step_loss
    from seqmodels.data import pad

    rng = np.random.default_rng(0)
    train_x, train_segs = synthetic_steps(24, rng)
    val_x, val_segs = synthetic_steps(12, rng)
    t = np.arange(60, dtype=float)
    targets = [step_targets(t, t + 1, s, ["0", "1", "2"]) for s in train_segs]
    torch.manual_seed(0)
    model, _ = train_steps(SkipSteps(8, 4, cell="gru", hidden=32, dropout=0.1), train_x, targets, epochs=15, lr=1e-2)
    gt = [Detection(str(v), s.start, s.end, s.label) for v, segs in enumerate(val_segs) for s in segs]
    updates = []
    preds = [
        Detection(str(v), s, e, str(label - 1), score)
        for v, probs in enumerate(predict_steps(model, val_x, updates=updates))
        for s, e, label, score in segments_from_probs(probs, t, t + 1, smooth=3)
    ]
    assert detection_map(gt, preds, thresholds=[0.5]).map[0] >= 0.7
    assert len(updates) == 12 and all(u.shape == (60,) for u in updates)
    # the budget term: its gradient lowers the gate's bias, so fewer steps update
    x, mask = pad(train_x[:8])
    y, _ = pad([targets[i][:, None] for i in range(8)])
    before = float(model(x, mask).updates.mean())
    for p in model.parameters():
        p.requires_grad_(True)  # the trained model is the (frozen) weight average
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(20):
        loss = step_loss(model(x, mask), y[..., 0].long(), mask, 0.3, budget=0.05)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert float(model(x, mask).updates.mean()) < before
