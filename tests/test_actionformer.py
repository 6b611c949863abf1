"""The anchor-free head: target assignment and soft-NMS by hand, and learning synthetic segments."""

import numpy as np
import pytest
import torch

from seqmodels.detection.actionformer import ActionFormerHead, soft_nms
from seqmodels.detection.map import Detection, detection_map
from tests.test_detection_heads import _synthetic


def test_targets_go_to_the_level_whose_range_holds_the_distances():
    head = ActionFormerHead(4, 3, hidden=8, levels=3)
    segs = [np.array([[2.0, 10.0, 1]])]  # steps [2, 10), class 1; centre 6
    cls0, _ = head._targets(None, segs, 0, 16, "cpu")
    assert cls0.sum() == 0  # every centre near 6 is at least 5.5 steps from an end: beyond level 0's [0, 4)
    cls1, dist1 = head._targets(None, segs, 1, 8, "cpu")  # stride 2: centres 1, 3, 5, 7, 9, ...; range [4, 8)
    assert torch.nonzero(cls1[0, :, 1]).flatten().tolist() == [1, 2, 3, 4]  # centres 3, 5, 7, 9
    assert cls1[0, :, [0, 2]].sum() == 0
    np.testing.assert_allclose(dist1[0, 2].numpy(), [1.5, 2.5])  # centre 5: 3 and 5 steps, in strides of 2


def test_soft_nms_decays_overlapping_segments_of_one_class_only():
    start, end = np.array([0.0, 1.0, 0.0]), np.array([10.0, 10.0, 10.0])
    out = soft_nms(start, end, np.array([0, 0, 1]), np.array([0.9, 0.8, 0.7]), sigma=0.5)
    iou = 9 / 10
    assert [(round(s), round(e), c) for s, e, c, _ in out] == [(0, 10, 0), (0, 10, 1), (1, 10, 0)]
    assert [sc for *_, sc in out] == pytest.approx([0.9, 0.7, 0.8 * np.exp(-(iou**2) / 0.5)])


def test_actionformer_learns_synthetic_segments():
    rng = np.random.default_rng(0)
    train_x, train_segs = _synthetic(48, rng)
    val_x, val_segs = _synthetic(16, rng)
    torch.manual_seed(0)
    head = ActionFormerHead(8, 3, hidden=32, levels=4, dropout=0.0)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    from seqmodels.data import pad

    targets = [np.array([[s.start, s.end, int(s.label)] for s in segs]) for segs in train_segs]
    losses = []
    for _ in range(40):
        for at in range(0, 48, 8):
            x, mask = pad(train_x[at : at + 8])
            loss = head.loss(x, mask, targets[at : at + 8])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert np.mean(losses[-6:]) < 0.5 * np.mean(losses[:6])
    head.eval()
    x, mask = pad(val_x)
    preds = [Detection(str(v), s, e, str(c), sc) for v, found in enumerate(head.detect(x, mask)) for s, e, c, sc in found]
    gt = [Detection(str(v), s.start, s.end, s.label) for v, segs in enumerate(val_segs) for s in segs]
    assert detection_map(gt, preds, thresholds=[0.5]).map[0] >= 0.8
