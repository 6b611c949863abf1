"""The step clock comes from the rows' own times: per-frame rows and overlapping clips (16 frames every 4)."""

import json
import time

import numpy as np
import pytest

from featx.config import ExtractConfig
from featx.store import StoreWriter
from seqmodels.detection.annotations import load_annotations
from seqmodels.detection.run import cell_targets, segment_targets
from seqmodels.detection.steps import StepClock, load_steps

DIM = 4


def _clip_store(root, steps=40):
    """8 fps sampling, clips of 16 frames every 4: clip i spans frames [4i, 4i + 16), 0.5 i .. 0.5 i + 2 s."""
    config = ExtractConfig(backbone="toy", weights="random-init", fps=8.0, clip_len=16, clip_stride=4, feature_dim=DIM,
                           weights_sha256="ab" * 32, input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3,
                           interpolation="bicubic", crop_pct=1.0, versions={"featx": "test"})
    frames = np.arange(steps) * 4
    with StoreWriter(root, config) as writer:
        record = {"path": "/v.mp4", "video_id": "v", "error": None, "fps": 8.0, "frames": int(frames[-1] + 16),
                  "duration": (frames[-1] + 16) / 8, "width": 8, "height": 8, "seconds": 0.1, "finished_at": time.time()}
        feats = np.zeros((steps, DIM), np.float32)
        writer.add_video(record, writer.table("v", frames / 8, (frames + 16) / 8, frames, frames + 16, feats))
    return root


def test_overlapping_clips_tick_at_their_stride_and_sit_at_their_centre(tmp_path):
    data = load_steps(_clip_store(tmp_path / "s"), ["v"])
    clock = data.clocks[0]
    assert clock.period == pytest.approx(0.5)  # 4 frames at 8 fps, not the 2 s a clip lasts
    assert clock.origin == pytest.approx(1.0)  # clip 0 spans 0..2 s
    assert clock.to_grid(10.0) == pytest.approx(18.0)  # clip 18 spans 9..11 s: its centre is 10 s
    start, end = clock.cells()
    assert (start[5], end[5]) == pytest.approx((3.25, 3.75))


def test_targets_and_decoding_on_a_clip_store_land_on_the_annotated_seconds(tmp_path):
    store = _clip_store(tmp_path / "s")
    anno = tmp_path / "a.json"
    anno.write_text(json.dumps({"database": {"v": {"subset": "training", "annotations": [
        {"segment": [10.0, 15.0], "label": "x"}]}}}))
    annotations = load_annotations(anno)
    data = load_steps(store, ["v"])
    (segments,) = segment_targets(data, annotations, ["x"])
    np.testing.assert_allclose(segments, [[18.0, 28.0, 0.0]])  # grid units: clips 18 .. 28 are centred inside
    np.testing.assert_allclose(data.clocks[0].to_seconds(segments[0, :2]), [10.0, 15.0])  # decoding goes back
    (cells,) = cell_targets(data, annotations, ["x"])
    assert np.flatnonzero(cells).tolist() == list(range(18, 29))  # cells centred at 10 .. 15 s: half inside or more


def test_per_frame_rows_keep_their_frame_span_as_cell():
    t = np.arange(6) * 0.5
    clock = StepClock.from_rows(t, np.r_[t[1:], 3.0])
    assert (clock.origin, clock.period) == pytest.approx((0.25, 0.5))
    start, end = clock.cells()
    np.testing.assert_allclose(start, t)
    np.testing.assert_allclose(end, t + 0.5)
