"""The time grid comes from the rows' own times: per-frame rows sampled from real-world frame rates (10, 25,
29.97, 30 fps at --fps 4 and 2, variable frame rate) and overlapping clips (16 frames every 4)."""

import json
import time

import numpy as np
import pytest

from featx.config import ExtractConfig
from featx.store import StoreWriter, open_store
from seqmodels.detection.annotations import load_annotations
from seqmodels.detection.run import cell_targets, segment_targets
from featx.timegrid import TimeGrid, row_spans, sample_indices
from seqmodels.detection.step_data import load_steps

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
    data = load_steps(open_store(_clip_store(tmp_path / "s")), ["v"])
    grid = data.grids[0]
    assert grid.period == pytest.approx(0.5)  # 4 frames at 8 fps, not the 2 s a clip lasts
    assert grid.origin == pytest.approx(1.0)  # clip 0 spans 0..2 s
    assert grid.to_grid(10.0) == pytest.approx(18.0)  # clip 18 spans 9..11 s: its centre is 10 s
    start, end = grid.cells()
    assert (start[5], end[5]) == pytest.approx((3.25, 3.75))


def test_targets_and_decoding_on_a_clip_store_land_on_the_annotated_seconds(tmp_path):
    store = _clip_store(tmp_path / "s")
    anno = tmp_path / "a.json"
    anno.write_text(json.dumps({"database": {"v": {"subset": "training", "annotations": [
        {"segment": [10.0, 15.0], "label": "x"}]}}}))
    annotations = load_annotations(anno)
    data = load_steps(open_store(store), ["v"])
    (segments,) = segment_targets(data, annotations, ["x"])
    np.testing.assert_allclose(segments, [[18.0, 28.0, 0.0]])  # grid units: clips 18 .. 28 are centred inside
    np.testing.assert_allclose(data.grids[0].to_seconds(segments[0, :2]), [10.0, 15.0])  # decoding goes back
    (cells,) = cell_targets(data, annotations, ["x"])
    assert np.flatnonzero(cells).tolist() == list(range(18, 29))  # cells centred at 10 .. 15 s: half inside or more


def test_per_frame_rows_keep_their_frame_span_as_cell():
    t = np.arange(6) * 0.5
    grid = TimeGrid.from_rows(t, np.r_[t[1:], 3.0])
    assert (grid.origin, grid.period) == pytest.approx((0.25, 0.5))
    start, end = grid.cells()
    np.testing.assert_allclose(start, t)
    np.testing.assert_allclose(end, t + 0.5)


NTSC = 30000 / 1001  # 29.97 fps: every THUMOS and ActivityNet video is 25, 29.97 or 30 fps


def sampled_rows(frame_times: np.ndarray, fps: float, end: float):
    """t_start, t_end of the per-frame rows extraction writes (featx.video's sampling and row spans)."""
    kept = np.asarray(sample_indices(frame_times, fps))
    t_start = frame_times[kept]
    return t_start, row_spans(kept, t_start, len(frame_times), end)[1]


def first_frame_at_or_after(t: float, source_fps: float) -> float:
    """The time of the first frame j / source_fps at or after t, written out independently of featx's sampler."""
    return np.ceil(t * source_fps - 1e-9) / source_fps


@pytest.mark.parametrize("source_fps, fps", [(10, 4), (NTSC, 4), (NTSC, 2), (25, 4), (30, 4), (25, 2)])
def test_every_row_sits_at_its_own_centre_when_the_rate_does_not_divide_the_source(source_fps, fps):
    seconds = 60.0
    frames = np.arange(int(seconds * source_fps)) / source_fps
    t_start, t_end = sampled_rows(frames, fps, seconds)
    grid = TimeGrid.from_rows(t_start, t_end)
    # row i is the first frame at or after i / fps; its span runs to the next row's frame (hand-computed)
    starts = np.array([first_frame_at_or_after(i / fps, source_fps) for i in range(len(t_start))])
    centres = (starts + np.append(starts[1:], seconds)) / 2
    np.testing.assert_allclose(grid.to_seconds(np.arange(len(starts))), centres, atol=1e-9)
    np.testing.assert_allclose(grid.to_grid(centres), np.arange(len(starts)), atol=1e-6)


@pytest.mark.parametrize("source_fps, fps", [(10, 4), (NTSC, 4), (NTSC, 2), (30, 4)])
def test_a_segment_at_known_seconds_decodes_back_to_those_seconds(source_fps, fps):
    seconds = 60.0
    frames = np.arange(int(seconds * source_fps)) / source_fps
    grid = TimeGrid.from_rows(*sampled_rows(frames, fps, seconds))
    segment = np.array([41.3, 52.85])
    on_grid = grid.to_grid(segment)
    np.testing.assert_allclose(grid.to_seconds(on_grid), segment, atol=1e-9)
    # and the rows whose cells hold the boundaries are the rows whose frames show them (to a step)
    start, end = grid.cells()
    first = np.flatnonzero((start <= segment[0]) & (segment[0] < end))
    assert len(first) == 1 and abs(grid.to_seconds(first[0]) - segment[0]) <= 1 / fps


def test_a_uniform_period_from_the_median_gap_would_drift_seconds_off_on_a_29_97_fps_video():
    """The failure this grid replaces: 4 fps from 29.97 fps alternates 7- and 8-frame gaps, so the median gap
    (either one) as a period puts the end of a one-minute video seconds away; the grid is exact there."""
    frames = np.arange(int(60 * NTSC)) / NTSC
    t_start, t_end = sampled_rows(frames, 4, 60.0)
    gaps = np.round(np.diff(t_start) * NTSC).astype(int)
    assert set(gaps) == {7, 8}
    median_period = np.median(np.diff(t_start))
    grid = TimeGrid.from_rows(t_start, t_end)
    last = len(t_start) - 1
    true_centre = (t_start[last] + t_end[last]) / 2
    assert abs(grid.centres[0] + last * median_period - true_centre) > 1.0  # what the median clock did
    assert grid.to_seconds(last) == pytest.approx(true_centre, abs=1e-9)


def test_variable_frame_rate_rows_keep_their_own_times():
    rng = np.random.default_rng(0)
    frames = np.cumsum(rng.choice([1 / 30, 1 / 20, 1 / 24], size=900))  # jittering frame gaps
    frames -= frames[0]
    t_start, t_end = sampled_rows(frames, 4, frames[-1] + 1 / 30)
    grid = TimeGrid.from_rows(t_start, t_end)
    np.testing.assert_allclose(grid.to_seconds(np.arange(len(t_start))), (t_start + t_end) / 2, atol=1e-9)
    for seconds in (3.217, 10.5, 27.9):
        assert grid.to_seconds(grid.to_grid(seconds)) == pytest.approx(seconds, abs=1e-9)


def test_cells_tile_the_video_and_each_holds_its_row_centre():
    frames = np.arange(int(20 * NTSC)) / NTSC
    t_start, t_end = sampled_rows(frames, 4, 20.0)
    grid = TimeGrid.from_rows(t_start, t_end)
    start, end = grid.cells()
    # from half a mean spacing before the first centre to half one after the last (the video: 0 .. 20 s)
    assert 0.0 <= start[0] < 0.02 and 19.98 < end[-1] <= 20.0
    np.testing.assert_allclose(start[1:], end[:-1])  # no gap, no overlap
    assert np.all((start < grid.centres) & (grid.centres < end))


def test_outside_the_rows_the_grid_extends_at_the_mean_spacing_and_seconds_clamp_to_the_video():
    t = np.array([0.0, 0.3, 0.5, 0.8, 1.0])
    grid = TimeGrid.from_rows(t, np.r_[t[1:], 1.2])  # centres 0.15, 0.4, 0.65, 0.9, 1.1; starts 0.25 apart on average
    assert grid.period == pytest.approx(0.25)
    assert grid.to_grid(0.15 - 0.25) == pytest.approx(-1.0)
    assert grid.to_grid(1.1 + 2 * 0.25) == pytest.approx(6.0)
    assert grid.to_seconds(-3.0) == pytest.approx(0.0)  # clamped to the first row's start
    assert grid.to_seconds(-3.0, clamp=False) == pytest.approx(0.15 - 3 * 0.25)
    assert grid.to_seconds(10.0) == pytest.approx(1.2)


def test_uniform_fit_goes_through_the_typical_row_and_reports_the_odd_one():
    centres = np.array([0.1, 0.35, 0.6, 0.9])  # 0.25 apart, the last one 0.05 late
    grid = TimeGrid.from_rows(centres - 0.05, centres + 0.05)
    origin, error = grid.uniform_fit(0.25)
    assert origin == pytest.approx(0.1)  # the median of 0.1, 0.1, 0.1, 0.15
    assert error == pytest.approx(0.05)


def test_clip_rows_offset_is_half_their_window_in_steps(tmp_path):
    grid = load_steps(open_store(_clip_store(tmp_path / "s")), ["v"]).grids[0]
    assert grid.half_window_steps == pytest.approx(2.0)  # 16-frame clips every 4 frames: feat_offset 8 / 4
