"""Batches spanning videos: features come back to the right video, in order, padded or not.

FEATX_TEST_DEVICE=cuda runs these on a GPU (the pinned, in-flight path); CI runs them on the CPU."""

import os

import numpy as np
import pytest
import torch

from featx.backbones import load_backbone
from featx.batches import Batcher, BatchRunner
from featx.config import ExtractConfig
from tests.conftest import TINY


DEVICE = os.environ.get("FEATX_TEST_DEVICE", "cpu")


def _tiny():  # torch's module: the tests hook its forward and torch.compile it
    return load_backbone(ExtractConfig(**TINY, precision="float32", runtime="torch"), DEVICE)


@pytest.fixture(scope="module")
def backbone():
    return _tiny()


def _chunks(backbone, sizes, seed=0):
    rng = np.random.default_rng(seed)
    _, h, w = backbone.config.input_size
    return [rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8) for n in sizes]


@pytest.mark.slow
@pytest.mark.parametrize("pad", [False, True])
def test_each_video_gets_its_own_frames_features_in_order(backbone, pad):
    chunks = _chunks(backbone, [3, 5, 2, 7])  # video k owns chunk k; batches of 4 straddle them
    batcher = Batcher(BatchRunner(backbone, 4, pad=pad), 4)
    got = {k: [] for k in range(len(chunks))}
    for k, pixels in enumerate(chunks):
        batcher.put(k, pixels)
        while batcher.ready():
            for i, feats in batcher.run():
                got[i].append(feats)
    while batcher.queued:
        for i, feats in batcher.run():
            got[i].append(feats)
    for i, feats in batcher.drain():
        got[i].append(feats)
    assert batcher.queued == 0 and batcher.pending == 0
    for k, pixels in enumerate(chunks):
        alone = torch.cat([backbone.embed(torch.from_numpy(p[None])) for p in pixels]).numpy()
        np.testing.assert_allclose(np.concatenate(got[k]), alone, rtol=1e-4, atol=1e-5)


def test_a_padded_runner_always_calls_the_model_with_the_full_batch(backbone):
    shapes = []
    handle = backbone.model.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    try:
        runner = BatchRunner(backbone, 4, pad=True)
        out = runner.submit(_chunks(backbone, [1, 2])) + runner.drain()  # 3 frames, padded to 4
    finally:
        handle.remove()
    assert [s[0] for s in shapes] == [4]
    assert out[0].shape == (3, backbone.config.feature_dim)


@pytest.mark.slow
def test_compiled_backbone_gives_the_same_features(backbone):
    compiled = _tiny()
    compiled.compile(4)
    pixels = torch.from_numpy(_chunks(backbone, [4], seed=1)[0])
    ref = backbone.embed(pixels).numpy()
    np.testing.assert_allclose(compiled.embed(pixels).numpy(), ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())
