"""Seeking to keyframes at a low --fps: the plan's cost model by hand, and frames identical to a full decode."""

from fractions import Fraction

import numpy as np
import pytest

from featx import seek
from featx.frames_on_demand import FramesOnDemand
from featx.synth_video import FrameTimes, write_video
from featx.video import DecodedVideo, FrameChunk, Preprocess, stream_frames
from tests.helpers import edit_list_cut, gray_ramp_video


@pytest.mark.parametrize(
    ("targets", "runs", "cost"),
    [
        ([25], [(20, [25])], 2 + 25 - 20 + 1),  # decoding 26 frames from the start costs more than a seek
        ([3, 25], [(0, [3]), (20, [25])], 4 + 8),  # 0..3 from the start, then a seek to keyframe 20
        ([21, 23], [(20, [21, 23])], 4 + 2),  # 23 is two frames on from 21: decode on, no second seek
        ([9, 12], [(0, [9, 12])], 10 + 3),  # crossing keyframe 10 by decoding on beats seeking (2 + 3)
    ],
)
def test_plan_takes_the_cheaper_way_to_each_target(targets, runs, cost):
    got, got_cost = seek.plan(np.array(targets), np.array([0, 10, 20, 30]), seek_cost=2)
    assert [(r.start, r.targets) for r in got] == runs
    assert got_cost == cost


def _moving(n, size=64):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (size + n, size, 3), dtype=np.uint8)
    return (base[t : t + size] for t in range(n))


def test_seeking_yields_exactly_the_frames_of_a_full_decode(tmp_path, monkeypatch):
    path = tmp_path / "gop5.mp4"
    write_video(path, _moving(500), 25, 64, gop=5)
    pre = Preprocess(56, (48, 48), "bicubic")
    seeks = []
    original = seek.decode_runs
    monkeypatch.setattr(seek, "decode_runs", lambda *a: (seeks.append(len(a[3])), (yield from original(*a)))[1])
    seeked = list(stream_frames(path, 0.5, pre, seek=True))
    assert seeks and seeks[0] > 1  # several seeks happened
    full = list(stream_frames(path, 0.5, pre, seek=False))
    assert isinstance(seeked[-1], DecodedVideo) and seeked[-1] == full[-1]  # same frame count and end time
    a = [c for c in seeked if isinstance(c, FrameChunk)]
    b = [c for c in full if isinstance(c, FrameChunk)]
    for key in ("index", "time", "pixels"):
        np.testing.assert_array_equal(np.concatenate([getattr(c, key) for c in a]), np.concatenate([getattr(c, key) for c in b]))
    assert len(np.concatenate([c.index for c in a])) == 10  # 20 s at 0.5 fps


def test_no_seeking_when_keyframes_are_far_apart(tmp_path, monkeypatch):
    path = tmp_path / "gop250.mp4"
    write_video(path, _moving(250), 25, 64, gop=250)
    monkeypatch.setattr(seek, "decode_runs", lambda *a: pytest.fail("seeked"))
    chunks = [c for c in stream_frames(path, 1, Preprocess(56, (48, 48), "bicubic")) if isinstance(c, FrameChunk)]
    assert len(np.concatenate([c.index for c in chunks])) == 10


def _sampled(path, fps, pre):
    """Frame numbers (N,) and pixels (N, H, W, 3) of every sampled frame, as a full decode yields them."""
    chunks = [c for c in stream_frames(path, fps, pre, seek=False) if isinstance(c, FrameChunk)]
    return np.concatenate([c.index for c in chunks]), np.concatenate([c.pixels for c in chunks])


@pytest.mark.parametrize("fps", [None, 5.0])
def test_frames_on_demand_are_the_sampled_frames_and_skip_work(tmp_path, fps):
    path = tmp_path / "gop10.mp4"
    write_video(path, _moving(200), 25, 64, gop=10)
    pre = Preprocess(56, (48, 48), "bicubic")
    numbers, every = _sampled(path, fps, pre)
    source = FramesOnDemand(path, fps, pre)
    gaps = [0, 1, 0, 30, 2, 0]  # the 30 passes over several keyframes: a seek costs less than decoding on
    position = -1
    for gap in gaps:
        assert source.skip(gap) == gap
        position += gap + 1
        np.testing.assert_array_equal(source.take(), every[position])
    assert source.converted == len(gaps) and source.seeks >= 1
    assert source.decoded < numbers[position] + 1  # fewer than decoding through to the last frame taken
    rest = len(every) - position - 1
    assert source.skip(rest + 5) == rest and source.take() is None
    source.close()


def test_frames_on_demand_checks_the_end_like_a_full_decode(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, _moving(20), 25, 64, gop=5)
    source = FramesOnDemand(path, None, Preprocess(56, (48, 48), "bicubic"))
    assert source.skip(100) == 20 and source.take() is None and source.converted == 0


def _edit_list_cut(tmp_path, frames=40):
    """A `-c copy` cut 23 frames into a video with keyframes every 10: frames 20-22 are decoded (their group
    starts at keyframe 20) but hidden by the MP4's edit list; `frames` - 23 frames are shown."""
    full = gray_ramp_video(tmp_path / "full.mp4", frames, gop=10)
    return edit_list_cut(full, tmp_path / "cut.mp4", Fraction(23, 8))


def _take_every_third(source):
    taken = []
    while source.skip(2) == 2 and (pixels := source.take()) is not None:
        taken.append(pixels)
    return np.stack(taken)


def test_an_edit_list_cut_hides_its_pre_roll_from_the_packet_index(tmp_path):
    index = seek.packet_index(_edit_list_cut(tmp_path))
    assert len(index.pts) == 17 and index.keyframe.sum() == 2 and index.pts[0] == 0  # the hidden frames 20-22 are not frames
    assert index.keyframe[0] and not index.shown_first(0)  # a seek for frame 0 goes to the hidden keyframe
    assert index.seek_pts[0] < 0 and index.keyframe[7] and index.shown_first(7)  # frame 7 is keyframe 30


def test_frames_on_demand_of_an_edit_list_cut_are_the_frames_shown(tmp_path):
    cut = _edit_list_cut(tmp_path, frames=80)
    pre = Preprocess(28, (24, 24), "bilinear")
    _, every = _sampled(cut, None, pre)
    assert len(every) == 57
    np.testing.assert_array_equal(_take_every_third(FramesOnDemand(cut, None, pre)), every[2::3])
    source = FramesOnDemand(cut, None, pre)
    assert source.take() is not None and source.skip(36) == 36  # frame 37 is keyframe 60: a seek is cheaper
    np.testing.assert_array_equal(source.take(), every[37])
    assert source.seeks == 1


def test_seeking_an_edit_list_cut_yields_the_frames_of_a_full_decode(tmp_path, monkeypatch):
    cut = _edit_list_cut(tmp_path, frames=80)  # at 0.25 fps: frames 0 and 32; a seek reaches 32 from frame 27
    runs = []
    original = seek.decode_runs
    monkeypatch.setattr(seek, "decode_runs", lambda *a: (runs.append(a[3]), (yield from original(*a)))[1])
    pre = Preprocess(28, (24, 24), "bilinear")
    seeked = [c for c in stream_frames(cut, 0.25, pre, seek=True) if isinstance(c, FrameChunk)]
    assert [(r.start, r.targets) for r in runs[0]] == [(0, [0]), (27, [32])]
    full = [c for c in stream_frames(cut, 0.25, pre, seek=False) if isinstance(c, FrameChunk)]
    for key in ("index", "time", "pixels"):
        np.testing.assert_array_equal(np.concatenate([getattr(c, key) for c in seeked]), np.concatenate([getattr(c, key) for c in full]))
    assert np.concatenate([c.time for c in full])[0] == 0.0


def test_frames_on_demand_seek_in_a_file_whose_packets_all_claim_to_be_keyframes(tmp_path, monkeypatch):
    cut = _edit_list_cut(tmp_path, frames=60)  # a GOP of 10; the container below flags every packet a keyframe
    honest = seek.packet_index(cut)
    claimed = seek.PacketIndex(honest.pts, np.ones_like(honest.keyframe), honest.pts)
    monkeypatch.setattr(seek, "packet_index", lambda path: claimed)
    pre = Preprocess(28, (24, 24), "bilinear")
    _, every = _sampled(cut, None, pre)
    source = FramesOnDemand(cut, None, pre)
    assert source.skip(25) == 25  # a seek to frame 25, a "keyframe", is cheaper than decoding 26 frames
    np.testing.assert_array_equal(source.take(), every[25])
    assert source.seeks == 1


@pytest.mark.parametrize(
    ("pts", "depth"),
    [
        ([0, 1, 2, 3], 0),  # no B-frames: shown as decoded
        ([0, 2, 1, 4, 3], 1),  # one B-frame between references
        ([0, 4, 2, 1, 3], 2),  # a B-pyramid: 1 is decoded after 4 and 2, and shown before both
        ([0, 3, 1, 2, 6, 4, 5], 1),  # two B-frames without a pyramid: each is shown before its P-frame only
    ],
)
def test_reorder_depth_counts_the_frames_decoded_before_a_frame_and_shown_after_it(pts, depth):
    assert seek.reorder_depth(pts) == depth


def _encode(path, images, codec, rate, options=None, b_frames=None, times=None):
    """`images` encoded with `codec` at `rate` (B-frames up to `b_frames` when given; `times`: a FrameTimes, each
    frame's timestamp, a variable frame rate with the encoder's B-frames, unlike write_video's)."""
    import av

    images = list(images)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.height, stream.width = images[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if b_frames is not None:
            stream.codec_context.max_b_frames = b_frames
        if times is not None:
            stream.codec_context.time_base = stream.time_base = times.time_base
        for j, image in enumerate(images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(times.ticks[j]), times.time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _smooth(n, size=(48, 64)):
    """Frames of a smooth pan with a moving square: content for which x264 uses its B-frames."""
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(n):
        image = np.stack([(xx * 3 + t * 2) % 256, (yy * 4 + t) % 256, (xx + yy + t * 3) % 256], -1).astype(np.uint8)
        image[10 + t % 20 : 20 + t % 20, 5 + t % 40 : 15 + t % 40] = 255
        yield image


def _test_video(tmp_path, kind):
    """A video of `kind`, and whether its frames include some that no other frame references."""
    path = tmp_path / f"{kind}.{'webm' if kind == 'vp9' else 'mp4'}"
    rates = {"h264-25": 25, "h264-29.97": Fraction(30000, 1001), "h264-30": 30}
    if kind in rates:  # x264's defaults: B-frames, half of them referenced by none
        return _encode(path, _smooth(120), "libx264", rates[kind]), True
    if kind == "h264-vfr":
        times = FrameTimes.variable(np.random.default_rng(0), 5.0, Fraction(25))
        return _encode(path, _smooth(times.frames), "libx264", 25, times=times), True
    if kind == "h264-edit-list":
        full = _encode(tmp_path / "full.mp4", _smooth(120), "libx264", 25)
        return edit_list_cut(full, path, Fraction(37, 25)), True
    if kind == "mpeg4":
        return _encode(path, _smooth(120), "mpeg4", 25, b_frames=2), True
    return _encode(path, _smooth(50), "libvpx-vp9", 25), False


@pytest.mark.parametrize("kind", ["h264-25", "h264-29.97", "h264-30", "h264-vfr", "h264-edit-list", "mpeg4", "vp9"])
@pytest.mark.parametrize("fps", [4.0, 1.0])
def test_passing_over_unsampled_frames_yields_exactly_the_frames_of_a_full_decode(tmp_path, monkeypatch, kind, fps):
    path, disposable = _test_video(tmp_path, kind)
    passes = []
    original = seek.PassOver.__init__
    monkeypatch.setattr(seek.PassOver, "__init__", lambda self, *a: (passes.append(self), original(self, *a))[1])
    monkeypatch.setattr(seek, "decode_runs", lambda *a: pytest.fail("seeked"))  # keyframes too far apart here
    pre = Preprocess(56, (48, 48), "bicubic")
    spared = list(stream_frames(path, fps, pre, chunk=5))
    full = list(stream_frames(path, fps, pre, chunk=5, seek=False))
    assert len(passes) == 1 and not passes[0].fell_back
    assert spared[-1] == full[-1]  # frames decoded, end time
    for key in ("index", "time", "pixels"):
        got = np.concatenate([getattr(c, key) for c in spared if isinstance(c, FrameChunk)])
        np.testing.assert_array_equal(got, np.concatenate([getattr(c, key) for c in full if isinstance(c, FrameChunk)]))
    frames = full[-1].frames_decoded
    assert passes[0].decoded < 0.8 * frames if disposable else passes[0].decoded == frames


def test_a_decoder_showing_other_frames_than_the_packets_list_falls_back_to_a_full_decode(tmp_path, monkeypatch):
    path, _ = _test_video(tmp_path, "h264-25")
    honest = seek.packet_index(path)
    phantom = np.insert(honest.pts, 60, honest.pts[59] + 1)  # a frame the packets list but no decoder shows
    claimed = seek.PacketIndex(phantom, np.insert(honest.keyframe, 60, False), phantom, honest.reorder)
    monkeypatch.setattr(seek, "packet_index", lambda path: claimed)
    passes = []
    original = seek.PassOver.__init__
    monkeypatch.setattr(seek.PassOver, "__init__", lambda self, *a: (passes.append(self), original(self, *a))[1])
    pre = Preprocess(56, (48, 48), "bicubic")
    spared = list(stream_frames(path, 4.0, pre, chunk=5))
    full = list(stream_frames(path, 4.0, pre, chunk=5, seek=False))
    assert passes[0].fell_back and spared[-1] == full[-1]
    for key in ("index", "time", "pixels"):
        got = np.concatenate([getattr(c, key) for c in spared if isinstance(c, FrameChunk)])
        np.testing.assert_array_equal(got, np.concatenate([getattr(c, key) for c in full if isinstance(c, FrameChunk)]))


def test_no_frames_are_passed_over_when_the_decoder_would_show_them_out_of_order():
    index = seek.PacketIndex(np.arange(10), np.zeros(10, bool), np.arange(10), reorder=2)
    chosen = seek.SamplePlan(index, [k / 25 for k in range(10)], np.array([0, 5]), None)
    assert seek.passes_over(chosen, decoder_delay=2)
    assert not seek.passes_over(chosen, decoder_delay=1)  # a decoder holding back too few frames drops some
    every = seek.SamplePlan(index, chosen.times, np.arange(10), None)
    assert not seek.passes_over(every, decoder_delay=2)  # nothing to pass over
