"""Frame conversion runs in the decoding thread: no swscale thread pool per frame, same pixels as PyAV's default."""

import os
import sys

import numpy as np
import pytest

from featx import video
from featx.synth_video import write_video
from featx.video import Preprocess


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    import av

    path = tmp_path_factory.mktemp("threads") / "v.mp4"
    rng = np.random.default_rng(0)
    write_video(path, (rng.integers(0, 256, (48, 80, 3), dtype=np.uint8) for _ in range(12)), 25, (80, 48))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        return list(container.decode(stream))


@pytest.mark.parametrize("pre", [None, Preprocess(40, (32, 32), "bicubic"), Preprocess(64, (56, 56), "bilinear")])
def test_single_threaded_conversion_gives_pyav_s_default_pixels(frames, pre, monkeypatch):
    monkeypatch.setattr(video, "SWS_THREADS", 0)  # PyAV's default: one thread per core
    default = [video.to_rgb(f, pre) for f in frames]
    monkeypatch.setattr(video, "SWS_THREADS", 1)
    for frame, want in zip(frames, default):
        np.testing.assert_array_equal(video.to_rgb(frame, pre), want)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc/self/task")
def test_converting_frames_starts_no_threads(frames):
    before = len(os.listdir("/proc/self/task"))
    pixels = [video.to_rgb(f, Preprocess(40, (32, 32), "bicubic")) for f in frames]  # frames (and scalers) kept
    assert len(pixels) == 12 and len(os.listdir("/proc/self/task")) <= before
