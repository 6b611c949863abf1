"""--resize-on device: the decoding workers send upright frames at their decoded size and the batch runner
resizes, crops and normalises them on the extraction device (featx.batches.resize_crop), with the CPU path's
geometry; the store records which path made it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import featx.decode_pool as decode_pool
from cli import app
from featx.backbones import load_backbone
from featx.batches import BatchRunner, check_device_filter, resize_crop
from featx.config import ExtractConfig
from featx.decode_pool import Frames, decode_events
from featx.errors import FeatxError
from featx.pipeline import RunOptions, extract
from featx.inputs import collect_inputs
from featx.store import load_sequences, read_config, read_manifest
from featx.video import FrameChunk, Preprocess, stream_frames
from tests.conftest import TINY, TINY_ARGS
from tests.helpers import encode_h264, one_error_line

# The smallest cosine similarity between a frame's features from the two paths, test_efficientnet with random
# weights (160 px input, shorter side to 168), measured: 0.9947 over the textured videos below (odd.mp4, yuv444p
# without chroma subsampling, 0.99998) and 0.9932 on the flat two-colour synthetic videos (tests/conftest.py's
# tiny_videos). The same network on wide.mp4's frames cropped one pixel off the centre gives 0.968 (two pixels:
# 0.950), so the bound still tells a wrong crop from the filters' difference.
MIN_COSINE = 0.985


def textured_video(path, size, frames=6, rotation=None, pix_fmt="yuv420p", seed=0):
    """A smooth random colour field panning right 2 px a frame with a dark disc, `size` (W, H): detail at every
    scale, so that resizing differences show. yuv444p allows odd sizes."""
    w, h = size
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (h // 6 + 2, w // 6 + 8, 3))
    field = np.kron(coarse, np.ones((6, 6, 1)))[:h]
    yy, xx = np.mgrid[0:h, 0:w]
    images = []
    for t in range(frames):
        image = field[:, 2 * t : 2 * t + w].copy()
        image[(yy - h / 2) ** 2 + (xx - w / 3 - 2 * t) ** 2 < (h / 5) ** 2] = 20
        images.append(image.astype(np.uint8))
    return encode_h264(path, images, 8, pix_fmt=pix_fmt, rotation=rotation, options={"qp": "10"})


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Textured videos: 240x180 (a downscale to 168), 75x51 (odd, an upscale) and a -90 rotated 96x64."""
    folder = tmp_path_factory.mktemp("resize_videos")
    textured_video(folder / "wide.mp4", (240, 180), seed=1)
    textured_video(folder / "odd.mp4", (75, 51), pix_fmt="yuv444p", seed=2)
    textured_video(folder / "turned.mp4", (96, 64), rotation=-90, seed=3)
    return folder


def run(folder, out, workers=0, **config):
    return extract(collect_inputs([folder]), out, ExtractConfig(**{**TINY, **config}),
                   RunOptions(batch_size=5, workers=workers, device="cpu", progress=False))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_the_device_path_writes_a_store_whose_features_are_close_to_the_cpu_paths(videos, tmp_path):
    assert run(videos, tmp_path / "cpu").ok == 3
    summary = run(videos, tmp_path / "device", resize_on="device")
    assert (summary.ok, summary.failed) == (3, 0)
    cpu, device = load_sequences(tmp_path / "cpu"), load_sequences(tmp_path / "device")
    assert sorted(device) == ["odd", "turned", "wide"]
    for vid in cpu:
        assert device[vid].shape == cpu[vid].shape == (6, 256)
        sims = cosines(cpu[vid], device[vid])
        assert sims.min() > MIN_COSINE, (vid, sims)
        assert not np.array_equal(cpu[vid], device[vid])  # another resize, so other numbers
    manifest = read_manifest(tmp_path / "device").set_index("video_id")
    assert (manifest.loc["turned", "width"], manifest.loc["turned", "height"]) == (64, 96)  # displayed size
    assert (manifest.loc["odd", "width"], manifest.loc["odd", "height"]) == (75, 51)


def test_the_store_records_the_path_and_refuses_a_write_from_the_other(videos, tmp_path):
    run(videos, tmp_path / "device", resize_on="device")
    assert read_config(tmp_path / "device").resize_on == "device"
    with pytest.raises(FeatxError, match=r"different config \(resize_on: 'device' != 'cpu'\)"):
        run(videos, tmp_path / "device")
    # through the CLI: one line, naming the setting
    result = CliRunner().invoke(app, ["extract", str(videos), "--out", str(tmp_path / "device"), *TINY_ARGS,
                                      "--no-progress", "--resize-on", "cpu"])
    one_error_line(result, "different config", "resize_on: 'device' != 'cpu'")


def test_stores_written_before_resize_on_was_recorded_read_as_the_cpu_path():
    old = ExtractConfig(**TINY).to_dict()
    del old["resize_on"]
    assert ExtractConfig.from_dict(old).resize_on == "cpu"
    assert ExtractConfig(**TINY).resize_on == "cpu"  # and cpu stays the default


@pytest.mark.slow
def test_decoding_workers_give_the_same_features_as_decoding_in_process(videos, tmp_path):
    run(videos, tmp_path / "w0", resize_on="device")
    run(videos, tmp_path / "w2", workers=2, resize_on="device")
    w0, w2 = load_sequences(tmp_path / "w0"), load_sequences(tmp_path / "w2")
    for vid in w0:
        np.testing.assert_array_equal(w0[vid], w2[vid])


def _frames(events, video):
    return np.concatenate([e.chunk.pixels for e in events if isinstance(e, Frames) and e.video == video])


@pytest.mark.slow
@pytest.mark.parametrize("slot_frames", [3, 0])  # a slot holds 3 frames of wide.mp4 / not even one
def test_frames_of_any_size_cross_the_shared_memory_in_pieces_that_fit_a_slot(videos, monkeypatch, slot_frames):
    pre = Preprocess(32, (32, 32), "bilinear", resize_on="device")
    paths = [videos / "wide.mp4", videos / "odd.mp4"]
    here = list(decode_events(paths, None, pre, workers=0))
    monkeypatch.setattr(decode_pool, "_DECODED_SLOT_BYTES", max(slot_frames * 240 * 180 * 3, 100))
    pooled = list(decode_events(paths, None, pre, workers=1))
    for video, shape in ((0, (6, 180, 240, 3)), (1, (6, 51, 75, 3))):
        assert _frames(here, video).shape == shape
        np.testing.assert_array_equal(_frames(pooled, video), _frames(here, video))
    sizes = [len(e.chunk.index) for e in pooled if isinstance(e, Frames) and e.video == 0]
    assert sizes == ([3, 3] if slot_frames else [6])  # 0: one frame does not fit, the chunk is pickled whole


def test_the_workers_send_upright_frames_at_their_decoded_size(videos):
    pre = Preprocess(32, (32, 32), "bicubic", resize_on="device")
    *chunks, decoded = stream_frames(videos / "turned.mp4", pre=pre)
    assert chunks[0].pixels.shape == (6, 96, 64, 3)  # coded 96x64 landscape, shown portrait
    full = np.concatenate([c.pixels for c in stream_frames(videos / "turned.mp4") if isinstance(c, FrameChunk)])
    np.testing.assert_array_equal(chunks[0].pixels, full)  # exactly what decoding without resizing gives
    assert (decoded.info.width, decoded.info.height) == (64, 96)


def test_resize_crop_keeps_the_centre_of_a_hand_computed_ramp():
    # A 40 x 20 frame whose column x holds 6x: halving (shorter side 20 -> 10) with the antialiased bilinear
    # (triangle) filter averages columns 2j-1 .. 2j+2 with weights 1/8, 3/8, 3/8, 1/8: 6 (2j + 0.5) = 12j + 3.
    # The 20 x 10 result is cropped to its centre 10 x 10: columns 5 .. 14.
    frame = np.broadcast_to((np.arange(40) * 6).astype(np.uint8)[None, :, None], (20, 40, 3))
    pre = Preprocess(10, (10, 10), "bilinear")
    assert pre.resized(40, 20) == (10, 20) and pre.crop_box(10, 20) == (0, 5)
    out = resize_crop(torch.from_numpy(np.ascontiguousarray(frame[None])), pre)[0].numpy()
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], np.tile(12 * np.arange(5, 15) + 3, (10, 1)))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()


def test_resize_crop_of_an_odd_frame_follows_the_cpu_paths_geometry():
    # 33 x 21 (W x H), shorter side to 10: width round(33 * 10 / 21) = round(15.71) = 16; crop 8 x 8 at
    # top (10 - 8) // 2 = 1, left (16 - 8) // 2 = 4. A frame whose pixels hold their own coordinates shows where
    # the crop came from (nearest-ish values, since the ramp is linear).
    pre = Preprocess(10, (8, 8), "bilinear")
    assert pre.resized(33, 21) == (10, 16) and pre.crop_box(10, 16) == (1, 4)
    yy, xx = np.mgrid[0:21, 0:33]
    frame = np.stack([xx * 7, yy * 11, np.zeros_like(xx)], axis=-1).astype(np.uint8)  # x in red, y in green
    out = resize_crop(torch.from_numpy(frame[None]), pre)[0].numpy().astype(float)
    assert out.shape == (8, 8, 3)
    # resized column j samples x = (j + 0.5) * 33 / 16 - 0.5; row i samples y = (i + 0.5) * 21 / 10 - 0.5
    x = (np.arange(4, 12) + 0.5) * 33 / 16 - 0.5
    y = (np.arange(1, 9) + 0.5) * 21 / 10 - 0.5
    np.testing.assert_allclose(out[0, :, 0], 7 * x, atol=1.0)
    np.testing.assert_allclose(out[:, 0, 1], 11 * y, atol=1.0)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(float) @ np.array([0.299, 0.587, 0.114])


def test_the_device_resize_is_aligned_with_ffmpegs_and_close_in_luma(videos):
    # The backbone's inputs from the two paths. Luma differs by under a grey level on average (measured 0.79 on
    # wide.mp4): the filters are alike. RGB differs more on these saturated random colours (10 levels on
    # wide.mp4): FFmpeg's one-step conversion scales the half-resolution chroma planes straight to the resize
    # size, while the device path resizes RGB that FFmpeg converted at the decoded size. Any one-pixel shift of
    # the crop matches worse than none (same geometry).
    cpu_pre = Preprocess.from_config((3, 160, 160), 0.95, "bicubic")
    on_device = dataclasses.replace(cpu_pre, resize_on="device")
    for name in ("wide.mp4", "odd.mp4", "turned.mp4"):
        cpu = np.concatenate([c.pixels for c in stream_frames(videos / name, pre=cpu_pre) if isinstance(c, FrameChunk)])
        full = np.concatenate([c.pixels for c in stream_frames(videos / name, pre=on_device) if isinstance(c, FrameChunk)])
        device = resize_crop(torch.from_numpy(full), cpu_pre).numpy()
        assert device.shape == cpu.shape == (6, 160, 160, 3)
        assert np.abs(luma(device) - luma(cpu)).mean() < 1.5, name
        inner = luma(device)[:, 1:-1, 1:-1]
        shifted = {(dy, dx): np.abs(inner - luma(cpu)[:, 1 + dy : 159 + dy, 1 + dx : 159 + dx]).mean()
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
        assert min(shifted, key=shifted.get) == (0, 0), (name, shifted)


def test_a_padded_batch_of_mixed_sizes_gives_the_features_of_each_frame_alone():
    backbone = load_backbone(ExtractConfig(**TINY, runtime="torch"), "cpu")  # torch takes any frame size
    pre = Preprocess(40, (32, 32), "bicubic")
    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 256, (2, 50, 70, 3), dtype=np.uint8), rng.integers(0, 256, (1, 41, 33, 3), dtype=np.uint8)]
    runner = BatchRunner(backbone, batch_size=6, pad=True, resize=pre)
    (feats,) = runner.submit(pieces) + runner.drain()
    assert feats.shape == (3, 256)
    alone = [backbone.embed(resize_crop(torch.from_numpy(p[k : k + 1]), pre)) for p in pieces for k in range(len(p))]
    np.testing.assert_allclose(feats, torch.cat(alone).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("extra, needle", [
    (["--resize-on", "gpu"], "--resize-on must be one of cpu, device"),
    (["--resize-on", "device", "--clip-len", "2", "--inflate", "mean"], "--resize-on device embeds single RGB frames"),
    (["--resize-on", "device", "--stream", "both"], "--resize-on device embeds single RGB frames"),
])
def test_what_the_device_path_cannot_do_is_one_error_line(videos, tmp_path, extra, needle):
    result = CliRunner().invoke(app, ["extract", str(videos), "--out", str(tmp_path / "s"), *TINY_ARGS,
                                      "--no-progress", *extra])
    one_error_line(result, needle)
    assert not (tmp_path / "s").exists()


def test_a_filter_torch_cannot_run_is_refused():
    check_device_filter("bicubic", "resnet18")
    with pytest.raises(FeatxError, match="--resize-on device resizes with bilinear or bicubic, but vit_x asks for lanczos"):
        check_device_filter("lanczos", "vit_x")


def test_cpu_path_stores_keep_the_metadata_they_had_and_device_path_stores_name_the_path():
    import json

    cpu, device = ExtractConfig(**TINY), ExtractConfig(**TINY, resize_on="device")
    assert "resize_on" not in json.loads(cpu.to_json())  # as before the setting existed: older featx read it
    assert json.loads(device.to_json())["resize_on"] == "device"  # older featx refuse it (an unknown key)
    assert ExtractConfig.from_json(cpu.to_json()) == cpu and ExtractConfig.from_json(device.to_json()) == device
    assert cpu.differences(device) == ["resize_on: 'cpu' != 'device'"]
