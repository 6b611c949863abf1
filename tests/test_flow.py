"""Optical flow: a known translation is recovered, the uint8 encoding, stacks, cross-modality initialisation."""

import numpy as np
import pytest
import timm
import torch

from featx.errors import FeatxError
from featx.flow import cross_modality_init, decode_flow, encode_flow, flow_stacks, optical_flow


def _textured(h=96, w=96, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (h // 6 + 4, w // 6 + 4))
    import cv2

    smooth = cv2.resize(coarse, (w + 24, h + 24), interpolation=cv2.INTER_CUBIC)
    return np.clip(smooth, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(("dx", "dy"), [(3, 0), (0, -2), (2, 1)])
def test_farneback_recovers_a_translation_within_half_a_pixel(dx, dy):
    big = _textured()
    a = big[12 : 12 + 96, 12 : 12 + 96]
    b = big[12 - dy : 12 - dy + 96, 12 - dx : 12 - dx + 96]  # the pattern moved by (dx, dy)
    flow = optical_flow(np.repeat(a[..., None], 3, 2), np.repeat(b[..., None], 3, 2))
    inner = flow[16:-16, 16:-16].reshape(-1, 2)  # away from the borders, where content enters and leaves
    assert np.abs(np.median(inner, axis=0) - [dx, dy]).max() < 0.5


def test_tvl1_without_contrib_is_a_clear_error():
    import cv2

    if hasattr(cv2, "optflow"):  # opencv-contrib installed: it must work instead
        frame = np.zeros((32, 32, 3), np.uint8)
        assert optical_flow(frame, frame, "tvl1").shape == (32, 32, 2)
    else:
        with pytest.raises(FeatxError, match="opencv-contrib"):
            optical_flow(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8), "tvl1")


def test_encoding_is_bounded_and_invertible_to_its_resolution():
    flow = np.array([[[0.0, 20.0], [-25.0, 3.3]]], np.float32)
    enc = encode_flow(flow)
    assert enc.dtype == np.uint8 and enc[0, 0, 0] in (127, 128) and enc[0, 0, 1] == 255 and enc[0, 1, 0] == 0
    np.testing.assert_allclose(decode_flow(enc), np.clip(flow, -20, 20), atol=20 / 127.5)


def test_stacks_hold_l_fields_per_frame_and_repeat_the_last():
    frames = np.stack([np.roll(np.repeat(_textured(48, 48)[:48, :48, None], 3, 2), k, axis=1) for k in range(4)])
    stacks = flow_stacks(frames, 3)
    assert stacks.shape == (4, 48, 48, 6)
    np.testing.assert_array_equal(stacks[0, ..., 2:4], stacks[1, ..., 0:2])  # field 1->2 in both
    np.testing.assert_array_equal(stacks[3, ..., 0:2], stacks[3, ..., 4:6])  # past the end: the last field
    assert abs(np.median(decode_flow(stacks[1, 10:-10, 10:-10, 0])) - 1) < 0.5  # rolled by 1 px in x


def test_cross_modality_init_averages_rgb_and_replicates_it():
    torch.manual_seed(0)
    rgb = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    w = rgb.conv1.weight.detach().clone()
    flow = cross_modality_init(rgb, 5)
    assert flow.conv1.weight.shape == (64, 10, 7, 7)
    torch.testing.assert_close(flow.conv1.weight, w.mean(1, keepdim=True).repeat(1, 10, 1, 1))
    with torch.no_grad():
        assert flow(torch.randn(1, 10, 64, 64)).shape == (1, 512)


def test_cross_modality_init_of_a_3d_network_takes_two_channel_flow_clips():
    from featx.backbones.inflate import InflatedConv

    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv3d(3, 4, (3, 5, 5)), torch.nn.ReLU(), torch.nn.Conv3d(4, 3, 1))
    wrapped = torch.nn.Sequential(InflatedConv(torch.nn.Conv2d(3, 4, 5), 3, 1, "mean"), torch.nn.ReLU())
    for model, first in ((plain, plain[0]), (wrapped, wrapped[0].conv)):
        w = first.weight.detach().clone()  # (4, 3, 3, 5, 5)
        cross_modality_init(model, 1)  # one field per time step: (2, T, H, W) clips
        assert first.weight.shape == (4, 2, 3, 5, 5) and first.in_channels == 2
        for channel in (0, 1):  # each flow channel gets the mean of the RGB filters (TSN)
            torch.testing.assert_close(first.weight[:, channel], (w[:, 0] + w[:, 1] + w[:, 2]) / 3)
        with torch.no_grad():
            assert model(torch.randn(1, 2, 4, 12, 12)).shape[:2] == (1, 4 if model is wrapped else 3)
    assert plain[2].in_channels == 4  # only the first convolution changes
