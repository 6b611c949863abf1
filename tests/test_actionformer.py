"""ActionFormer's pieces against hand-computed cases and the paper's definitions: points where the downsampling
puts them, label assignment, DIoU, soft-NMS and voting, and the whole head learning synthetic segments."""

import numpy as np
import pytest
import torch

from seqmodels.data import pad
from seqmodels.detection.actionformer import ActionFormerHead, MaskedConv
from seqmodels.detection.map import Detection, detection_map
from seqmodels.detection.nms import class_wise_soft_nms, soft_nms_one_class, vote
from seqmodels.detection.points import assign, decode, diou_loss, level_points
from seqmodels.protocol import Protocol, fit
from tests.helpers import synthetic_steps


def test_points_sit_where_stride_two_layers_centre_their_outputs():
    # a kernel-3 stride-2 convolution whose kernel picks its centre tap: output j copies input 2j
    conv = MaskedConv(1, 1, stride=2, bias=False)
    conv.conv.weight.data[:] = torch.tensor([0.0, 1.0, 0.0])
    x = torch.arange(11, dtype=torch.float32)[None, :, None]
    mask = torch.ones(1, 11, dtype=torch.bool)
    picked = x
    points = level_points(11, 4)
    offset = 0
    for level, size in enumerate(points.sizes):
        if level:
            picked, mask = conv(picked, mask)
        np.testing.assert_array_equal(points.position[offset : offset + size].numpy(), picked[0, :, 0].detach().numpy())
        offset += size
    assert points.sizes == (11, 6, 3, 2)


@pytest.mark.slow
@pytest.mark.parametrize("length", [37, 64, 101])
def test_the_head_outputs_one_row_per_point(length):
    head = ActionFormerHead(5, 3, hidden=16, heads=2, window=5)
    logits, dist = head(torch.randn(2, length, 5), torch.ones(2, length, dtype=torch.bool))
    assert logits.shape == (2, len(level_points(length, 6).position), 3) and dist.shape[-1] == 2


def test_perfect_targets_decode_back_to_their_segment_at_every_level():
    points = level_points(300, 6)
    segments = np.array([[3.0, 5.5, 0], [20.0, 31.0, 1], [40.0, 70.0, 2], [100.0, 160.0, 0], [170.0, 290.0, 1],
                         [10.0, 12.0, 2]])
    cls, dist = assign(points, segments, 3)
    positive = cls.sum(1) > 0
    levels = torch.repeat_interleave(torch.arange(6), torch.tensor(points.sizes))
    assert set(levels[positive].tolist()) == set(range(6))  # every level learns some segment
    decoded = decode(points, dist)[positive]
    label = cls[positive].argmax(1)
    for seg, c in zip(decoded, label):
        match = segments[(np.abs(segments[:, :2] - seg.numpy()).max(1) < 1e-6)]
        assert len(match) == 1 and int(match[0, 2]) == int(c)


def test_assignment_by_hand():
    points = level_points(16, 3)  # level 0: 0..15; level 1: 0, 2, ..., 14; level 2: 0, 4, 8, 12
    cls, dist = assign(points, np.array([[2.0, 10.0, 1]]), 2)
    # centre 6, radius 1.5 strides: level 0 points within 4.5..7.5 -> 5, 6, 7, but their larger distance
    # (5, 4, 5 steps) must lie in [0, 4]: only 6. Level 1 (range [4, 8], window 3..9): 4, 6, 8.
    # Level 2 (range [8, 16], window 0..12 inside (2, 10)): 4 (distance 6) and 8 (6): neither reaches 8.
    labelled = points.position[cls[:, 1] > 0].tolist()
    assert labelled == [6.0, 4.0, 6.0, 8.0] and cls[:, 0].sum() == 0
    np.testing.assert_allclose(dist[cls[:, 1] > 0].numpy(), [[4, 4], [1, 3], [2, 2], [3, 1]])  # in strides


def test_segments_of_equal_length_at_one_point_both_become_labels():
    points = level_points(20, 1)
    cls, _ = assign(points, np.array([[4.0, 10.0, 0], [4.0, 10.0, 2], [5.0, 9.0, 1]]), 3)
    assert cls[7].tolist() == [0.0, 1.0, 0.0]  # the shorter segment wins
    cls, _ = assign(points, np.array([[4.0, 10.0, 0], [4.0, 10.0, 2]]), 3)
    assert cls[7].tolist() == [1.0, 0.0, 1.0]


def test_diou_loss_by_hand():
    pred, target = torch.tensor([[2.0, 2.0]]), torch.tensor([[1.0, 3.0]])
    # same point: pred [-2, 2], target [-1, 3]: overlap 3, union 5; centres 0 and 1, enclosing [-2, 3] = 5
    assert float(diou_loss(pred, target)) == pytest.approx(1 - 3 / 5 + (1 / 5) ** 2)
    assert float(diou_loss(target, target)) == pytest.approx(0.0)


def test_soft_nms_decays_overlaps_within_a_class_only():
    start, end = np.array([0.0, 1.0, 0.0]), np.array([10.0, 10.0, 10.0])
    out = class_wise_soft_nms(start, end, np.array([0, 0, 1]), np.array([0.9, 0.8, 0.7]), sigma=0.5)
    assert [(round(s), round(e), c) for s, e, c, _ in out] == [(0, 10, 0), (0, 10, 1), (1, 10, 0)]
    assert [sc for *_, sc in out] == pytest.approx([0.9, 0.7, 0.8 * np.exp(-(0.9**2) / 0.5)])


def test_soft_nms_drops_segments_below_the_minimum_score():
    segs = np.array([[0.0, 10.0], [0.0, 10.0]])
    kept, _ = soft_nms_one_class(segs, np.array([0.9, 0.002]), sigma=0.5, min_score=0.001)
    assert len(kept) == 1  # 0.002 * exp(-1 / 0.5) = 0.00027 < 0.001


def test_voting_averages_overlapping_candidates_by_score_times_iou():
    kept = np.array([[0.0, 10.0]])
    cands = np.array([[0.0, 10.0], [2.0, 10.0], [50.0, 60.0]])
    out = vote(kept, cands, np.array([0.9, 0.6, 0.9]), threshold=0.7)
    w = np.array([0.9 * 1.0, 0.6 * 0.8])  # tIoU 1 and 0.8; the far one does not vote
    assert out[0] == pytest.approx([(0 * w[0] + 2 * w[1]) / w.sum(), 10.0])


@pytest.mark.slow
def test_actionformer_learns_synthetic_segments():
    rng = np.random.default_rng(0)
    train_x, train_segs = synthetic_steps(48, rng)
    val_x, val_segs = synthetic_steps(16, rng)
    targets = [np.array([[s.start - 0.5, s.end - 0.5, int(s.label)] for s in segs]) for segs in train_segs]
    torch.manual_seed(0)
    head = ActionFormerHead(8, 3, hidden=32, heads=2, window=9, levels=4)

    def loss(model, items, rng, train):
        x, mask = pad([train_x[i] for i in items])
        return model.loss(x, mask, [targets[i] for i in items])

    model, history = fit(head, list(range(48)), loss, Protocol(epochs=25, batch_size=8, lr=2e-3, warmup_epochs=2))
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    x, mask = pad(val_x)
    preds = [Detection(str(v), s + 0.5, e + 0.5, str(c), sc) for v, found in enumerate(model.detect(x, mask)) for s, e, c, sc in found]
    gt = [Detection(str(v), s.start, s.end, s.label) for v, segs in enumerate(val_segs) for s in segs]
    assert detection_map(gt, preds, thresholds=[0.5]).map[0] >= 0.8


def test_unknown_and_out_of_range_options_are_refused_by_name():
    with pytest.raises(TypeError, match="unknown option 'nonsense'"):
        ActionFormerHead(4, 2, nonsense=1)
    from featx.errors import FeatxError

    with pytest.raises(FeatxError, match="hidden"):
        ActionFormerHead(4, 2, hidden=-5)


# -- the reference release's behaviour where it changes results -------------------------------------------------
def test_the_last_level_is_open_ended_for_any_number_of_levels():
    # a 200-step segment: its centre point's larger distance is 100 steps, beyond level 2's (8, 16] range
    points = level_points(256, 3)
    cls, _ = assign(points, np.array([[20.0, 220.0, 0]]), num_classes=1)
    last = slice(points.sizes[0] + points.sizes[1], None)
    assert cls[last].sum() > 0  # the reference's last range ends at 10,000 steps whatever the depth
    assert cls[: points.sizes[0] + points.sizes[1]].sum() == 0


def test_decoded_segments_are_not_clipped_to_the_rows_before_the_caller_converts_them():
    head = ActionFormerHead(8, 1, levels=2, stem=0)
    points = level_points(10, 2)
    logits = torch.full((1, len(points.position), 1), -20.0)
    logits[0, 0, 0] = 5.0  # point 0 (step 0) is confident; it reaches 3 steps back and 2 forward
    distances = torch.zeros(1, len(points.position), 2)
    distances[0, 0] = torch.tensor([3.0, 2.0])
    (found,) = head.decode(logits, distances, torch.ones(1, 10, dtype=torch.bool))
    start, end, label, score = found[0]
    assert (start, end, label) == (-3.0, 2.0, 0)  # the reference clamps only in seconds, after NMS


def test_every_linear_and_convolution_bias_starts_at_zero_but_the_class_prior():
    head = ActionFormerHead(16, 3, levels=2)
    biases = {name: p for name, p in head.named_parameters() if name.endswith("bias") and "norm" not in name}
    prior = biases.pop("cls_head.last.conv.bias")
    assert torch.allclose(prior, torch.full((3,), -np.log(99.0)))
    assert any("attn" in name or "mlp" in name for name in biases)  # the Linear layers are in there
    assert all(float(p.abs().max()) == 0.0 for p in biases.values())


@pytest.mark.parametrize("in_dim, width", [(256, 256), (1023, 256), (1024, 512), (2048, 512)])
def test_width_follows_the_input_512_from_1024_dimensions_as_the_paper(in_dim, width):
    assert ActionFormerHead(in_dim, 2, levels=2).embed[0].conv.out_channels == width
    assert ActionFormerHead(in_dim, 2, levels=2, hidden=128).embed[0].conv.out_channels == 128


def test_training_crops_keep_half_a_window_beyond_the_rows_as_the_reference():
    from seqmodels.detection.run import crop_segments

    segments = np.array([[1.0, 9.0, 0], [12.0, 30.0, 1]])
    # window rows [4, 14): the reference clips to [4 - offset, 14 + offset] and shifts by 4
    np.testing.assert_allclose(crop_segments(segments, 4, 14, offset=2.0), [[-2.0, 5.0, 0]])
    np.testing.assert_allclose(crop_segments(segments, 10, 30, offset=0.5), [[2.0, 20.0, 1]])
