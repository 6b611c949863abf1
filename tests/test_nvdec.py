"""--decoder nvdec (featx.nvdec): the one-line fallback to PyAV when PyNvVideoCodec or CUDA is missing and what the
store then records; the frame selection from NVDEC's timestamps against PyAV's choice; tensor frames through the
device-side resize; and, on a GPU with PyNvVideoCodec only, nvdec stores against pyav stores."""

from __future__ import annotations

import json
import os
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from featx.backbones import extraction_config, load_backbone
from featx.batches import BatchRunner
from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.pipeline import RunOptions, extract
from featx.inputs import collect_inputs
from featx.nvdec import FrameSelector, select_frames, unavailable
from featx.store import load_features, load_sequences, read_config, read_manifest
from featx.video import Preprocess
from tests.conftest import TINY, TINY_ARGS
from tests.helpers import edit_list_cut, encode_h264, one_error_line

WARNING = "warning: --decoder nvdec unavailable"


def write_video(path, size=(96, 64), frames=24, fps=8, rotation=None, bframes=2, seed=0):
    """A textured h264 video with B-frames (output order differs from decode order) panning 2 px a frame."""
    w, h = size
    rng = np.random.default_rng(seed)
    field = np.kron(rng.uniform(0, 255, (h // 4 + 1, w // 4 + 2 * frames, 3)), np.ones((4, 4, 1)))[:h]
    images = (field[:, 2 * t : 2 * t + w].astype(np.uint8) for t in range(frames))
    return encode_h264(path, images, fps, rotation=rotation, options={"bf": str(bframes), "qp": "12"})


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nvdec_videos")
    write_video(folder / "wide.mp4", (96, 64), seed=1)
    write_video(folder / "turned.mp4", (96, 64), frames=12, rotation=-90, seed=2)
    return folder


@pytest.fixture
def no_pynvvideocodec(monkeypatch):
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # `import PyNvVideoCodec` raises ModuleNotFoundError


def fake_module(tmp_path, monkeypatch, body: str) -> None:
    """A stand-in package named PyNvVideoCodec whose __init__ runs `body`."""
    package = tmp_path / "fake" / "PyNvVideoCodec"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # so that the stand-in leaves sys.modules afterwards
    monkeypatch.delitem(sys.modules, "PyNvVideoCodec")
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))


# --- why NVDEC cannot decode: one short reason ---

def test_the_reason_names_a_missing_module(no_pynvvideocodec):
    assert unavailable(torch.device("cuda")) == "PyNvVideoCodec is not installed (pip install 'featx[nvdec]')"


def test_the_reason_gives_the_first_line_of_an_import_error(tmp_path, monkeypatch):
    # PyNvVideoCodec without an NVIDIA driver raises a RuntimeError with a long troubleshooting guide, and logs more
    fake_module(tmp_path, monkeypatch, "import logging\nlogging.getLogger('PyNvVideoCodec').error('noise')\n"
                                       "raise RuntimeError('Failed to load NVENC library: libnvidia-encode.so.1\\n\\n"
                                       "=== TROUBLESHOOTING STEPS ===')\n")
    why = unavailable(torch.device("cuda"))
    assert why == "PyNvVideoCodec failed to import (RuntimeError: Failed to load NVENC library: libnvidia-encode.so.1)"


def test_the_reason_names_a_missing_cuda_device(tmp_path, monkeypatch):
    fake_module(tmp_path, monkeypatch, "")
    assert unavailable(torch.device("cpu")) == "no CUDA device (--device is cpu)"


# --- the fallback: one warning line, PyAV with the device-side resize, the store saying so ---

@pytest.mark.slow
def test_nvdec_without_pynvvideocodec_warns_once_and_writes_a_pyav_store_with_frames_resized_on_the_device(
        videos, tmp_path, no_pynvvideocodec):
    result = CliRunner().invoke(app, ["extract", str(videos), "--out", str(tmp_path / "nv"), *TINY_ARGS,
                                      "--no-progress", "--decoder", "nvdec"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(WARNING) and "PyNvVideoCodec is not installed" in lines[0], lines[0]
    config = read_config(tmp_path / "nv")
    assert (config.decoder, config.resize_on) == ("pyav", "device")  # what actually decoded
    # exactly the PyAV device path's store: same rows, same features
    extract(collect_inputs([videos]), tmp_path / "pyav", ExtractConfig(**TINY, resize_on="device"),
            RunOptions(batch_size=32, workers=0, device="cpu", progress=False))
    a, b = load_features(tmp_path / "nv"), load_features(tmp_path / "pyav")
    for column in ("video_id", "frame_start", "frame_end", "t_start", "t_end"):
        np.testing.assert_array_equal(a[column], b[column])
    np.testing.assert_array_equal(np.stack(a["feature"]), np.stack(b["feature"]))
    # the fallback store takes rows from a plain `--resize-on device` run (the same identity)
    again = CliRunner().invoke(app, ["extract", str(videos), "--out", str(tmp_path / "nv"), *TINY_ARGS,
                                     "--no-progress", "--resize-on", "device"])
    assert again.exit_code == 0 and "skipped 2" in again.output, again.output


def test_nvdec_on_the_cpu_device_says_so(videos, tmp_path, monkeypatch):
    fake_module(tmp_path, monkeypatch, "")
    summary = extract(collect_inputs([videos / "wide.mp4"]), tmp_path / "s", ExtractConfig(**TINY, decoder="nvdec",
                      resize_on="device"), RunOptions(workers=0, device="cpu", progress=False))
    assert summary.ok == 1 and read_config(tmp_path / "s").decoder == "pyav"


# --- the config: the decoder is identity; older stores read pyav ---

def test_the_decoder_is_recorded_only_when_not_pyav_and_older_stores_read_as_pyav():
    assert "decoder" not in json.loads(ExtractConfig(**TINY).to_json())  # pyav stores keep their metadata
    nv = ExtractConfig(**TINY, decoder="nvdec", resize_on="device")
    assert json.loads(nv.to_json())["decoder"] == "nvdec"
    assert ExtractConfig.from_json(nv.to_json()) == nv
    old = ExtractConfig(**TINY).to_dict()
    del old["decoder"]
    assert ExtractConfig.from_dict(old).decoder == "pyav"
    assert nv.differences(ExtractConfig(**TINY, resize_on="device")) == ["decoder: 'nvdec' != 'pyav'"]


def test_nvdec_resizes_on_the_device_by_default_and_refuses_resize_on_cpu(videos, tmp_path):
    assert extraction_config(**TINY, decoder="nvdec", resize_on=None).resize_on == "device"
    assert extraction_config(**TINY, resize_on=None).resize_on == "cpu"
    with pytest.raises(FeatxError, match="leave out --resize-on cpu"):
        ExtractConfig(**TINY, decoder="nvdec")
    with pytest.raises(FeatxError, match="--decoder must be one of pyav, nvdec, not 'gpu'"):
        ExtractConfig(**TINY, decoder="gpu")
    for args, needle in ((["--decoder", "nvdec", "--resize-on", "cpu"], "leave out --resize-on cpu"),
                         (["--decoder", "nvdec", "--clip-len", "4"], "--resize-on device embeds single RGB frames")):
        result = CliRunner().invoke(app, ["extract", str(videos), "--out", str(tmp_path / "s"), *TINY_ARGS,
                                          "--no-progress", *args])
        one_error_line(result, needle)


# --- frame selection from NVDEC's timestamps: the same frames, numbers and times as PyAV's path ---

def _pyav_output(path):
    """(timestamps of the decoded frames in output order, time_base, start, step): what NVDEC gives per frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [frame.pts for frame in container.decode(stream)]
        start = Fraction(stream.start_time or 0) * stream.time_base
        return pts, stream.time_base, start, 1 / float(stream.average_rate)


@pytest.mark.parametrize("fps", [None, 3.0, 2.5, 100.0])
def test_frames_selected_from_decoder_timestamps_match_the_rows_featx_extract_writes(videos, tmp_path, fps):
    path = videos / "wide.mp4"
    pts, time_base, start, step = _pyav_output(path)
    extract(collect_inputs([path]), tmp_path / "s", ExtractConfig(**TINY, fps=fps, resize_on="device"),
            RunOptions(workers=0, device="cpu", progress=False))
    rows = load_features(tmp_path / "s")
    index, times, shown, last = select_frames(pts, time_base, start, step, fps)
    np.testing.assert_array_equal(rows["frame_start"], index)
    np.testing.assert_array_equal(rows["t_start"], times)
    np.testing.assert_array_equal(rows["frame_end"], index[1:] + [shown])
    np.testing.assert_allclose(rows["t_end"], times[1:] + [last + step])
    assert shown == read_manifest(tmp_path / "s")["frames"].iloc[0] == 24
    if fps is not None and fps < 8:
        assert len(index) < 24  # the grid really thinned the frames out


def test_pre_roll_an_edit_list_hides_is_neither_numbered_nor_kept():
    # NVDEC decodes every packet it is given; frames timed before the stream's start are what FFmpeg hides
    tb, step = Fraction(1, 16384), 1 / 8
    shown = [k * 2048 for k in range(10)]
    hidden = [-4 * 2048, -3 * 2048, -2048]
    assert select_frames(hidden + shown, tb, Fraction(0), step, 4.0) == select_frames(shown, tb, Fraction(0), step, 4.0)
    index, times, n, last = select_frames(hidden + shown, tb, Fraction(0), step, 4.0)
    assert index == [0, 2, 4, 6, 8] and times == [0, 0.25, 0.5, 0.75, 1.0] and (n, last) == (10, 1.125)


def test_frames_without_a_timestamp_continue_the_clock_as_in_pyavs_path():
    tb = Fraction(1, 8)
    selector = FrameSelector(tb, Fraction(0), 1 / 8, None)
    assert [selector.push(p) for p in (-(2**63), None, 2, 3)] == [(0, 0.0), (1, 0.125), (2, 0.25), (3, 0.375)]


# --- frames already on the device (what featx.nvdec hands on) through the device-side resize ---

def test_tensor_frames_are_resized_and_embedded_as_the_staged_frames_are():
    backbone = load_backbone(ExtractConfig(**TINY, runtime="torch"), "cpu")  # torch takes any frame size
    pre = Preprocess(48, (40, 40), "bilinear", resize_on="device")
    rng = np.random.default_rng(0)
    pieces = [rng.integers(0, 256, (3, 60, 80, 3), dtype=np.uint8), rng.integers(0, 256, (2, 60, 80, 3), dtype=np.uint8),
              rng.integers(0, 256, (4, 90, 50, 3), dtype=np.uint8)]
    staged = BatchRunner(backbone, 9, resize=pre).submit(pieces)
    tensors = BatchRunner(backbone, 9, resize=pre).submit([torch.from_numpy(p) for p in pieces])
    assert len(staged) == len(tensors) == 1 and staged[0].shape == (9, backbone.config.feature_dim)
    np.testing.assert_array_equal(staged[0], tensors[0])


# --- on a GPU with PyNvVideoCodec: nvdec stores against pyav stores (bench/gpu_check.sh runs this) ---

# The smallest per-frame cosine accepted between the nvdec and the pyav (--resize-on device) features of the tiny
# random network. A guess until measured: the paths differ only in the YUV -> RGB conversion (NVDEC's kernel vs
# swscale); the CPU vs device resize paths give 0.985 and more (tests/test_resize_on_device.py).
MIN_GPU_COSINE = 0.98


def _cosines(a, b):
    a, b = a.astype(np.float32), b.astype(np.float32)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _gpu_ready():
    """Skip unless NVDEC can decode here: a CUDA device and PyNvVideoCodec importing (pytest.importorskip would not
    do: without an NVIDIA driver the package raises RuntimeError, not ImportError)."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if (why := unavailable(torch.device("cuda"))) is not None:
        pytest.skip(why)


def _report(name: str, data: dict) -> None:
    """Print the measurement, and add it to $FEATX_GPU_REPORT (a JSON lines file) when set."""
    print(name, json.dumps(data))
    if report := os.environ.get("FEATX_GPU_REPORT"):
        with open(report, "a") as f:
            f.write(json.dumps({"test": name, **data}) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("fps", [None, 3.0])
def test_gpu_nvdec_store_matches_the_pyav_store(videos, tmp_path, fps):
    _gpu_ready()
    options = RunOptions(batch_size=16, workers=0, device="cuda", progress=False)
    config = dict(**TINY, fps=fps, resize_on="device", precision="float32", dtype="float32")
    extract(collect_inputs([videos]), tmp_path / "pyav", ExtractConfig(**config), options)
    summary = extract(collect_inputs([videos]), tmp_path / "nv", ExtractConfig(**config, decoder="nvdec"), options)
    assert (summary.ok, summary.failed) == (2, 0), summary.failures
    assert read_config(tmp_path / "nv").decoder == "nvdec"
    a, b = load_features(tmp_path / "nv"), load_features(tmp_path / "pyav")
    for column in ("video_id", "frame_start", "frame_end"):
        np.testing.assert_array_equal(a[column], b[column])
    np.testing.assert_allclose(a["t_start"], b["t_start"], atol=1e-9)
    np.testing.assert_allclose(a["t_end"], b["t_end"], atol=1e-9)
    ma, mb = read_manifest(tmp_path / "nv").set_index("video_id"), read_manifest(tmp_path / "pyav").set_index("video_id")
    for column in ("frames", "width", "height"):
        assert ma[column].to_dict() == mb[column].to_dict(), column
    nv, py = load_sequences(tmp_path / "nv"), load_sequences(tmp_path / "pyav")
    sims = {vid: _cosines(nv[vid], py[vid]) for vid in py}
    _report("nvdec_vs_pyav", {"fps": fps, **{vid: {"mean": float(s.mean()), "min": float(s.min())}
                                             for vid, s in sims.items()}})
    for vid, s in sims.items():
        assert s.min() > MIN_GPU_COSINE, (vid, s)


@pytest.mark.slow
def test_gpu_nvdec_decodes_an_edit_list_cut_as_pyav_shows_it(tmp_path):
    _gpu_ready()
    full = write_video(tmp_path / "full.mp4", (64, 64), frames=40, bframes=0)
    cut = edit_list_cut(full, tmp_path / "cut.mp4", Fraction(20, 8))  # the first 2.5 s hidden by an edit list
    options = RunOptions(batch_size=16, workers=0, device="cuda", progress=False)
    extract(collect_inputs([cut]), tmp_path / "pyav", ExtractConfig(**TINY, resize_on="device"), options)
    summary = extract(collect_inputs([cut]), tmp_path / "nv", ExtractConfig(**TINY, decoder="nvdec",
                                                                              resize_on="device"), options)
    assert summary.failed == 0, summary.failures
    a, b = load_features(tmp_path / "nv"), load_features(tmp_path / "pyav")
    _report("edit_list_cut", {"nvdec_rows": len(a), "pyav_rows": len(b)})
    np.testing.assert_array_equal(a["frame_start"], b["frame_start"])
    np.testing.assert_allclose(a["t_start"], b["t_start"], atol=1e-9)
