import csv
import json
from fractions import Fraction

import av
import numpy as np
import pytest

from featx.errors import FeatxError
from featx.synth import easy_segments, hard_segments, make_trimmed, make_untrimmed
from featx.synth_draw import (BLUE, HARD_CLASSES, RED, TRIMMED_CLASSES, UNTRIMMED_CLASSES, YELLOW, Segment, hard_frame,
                              order_frame, trimmed_frame)
from featx.synth_video import FrameTimes, frame_rate


def _background(size=48, value=100):
    return np.full((size, size, 3), value, np.uint8)


def test_order_classes_share_their_frames_in_reverse_order():
    # the seed's point: every frame of A-then-B also appears in B-then-A, so pooling cannot tell them apart
    for a, b in [("red_then_blue", "blue_then_red"), ("green_then_yellow", "yellow_then_green")]:
        frames_a = [trimmed_frame(a, (k + 0.5) / 20, _background()) for k in range(20)]
        frames_b = [trimmed_frame(b, (k + 0.5) / 20, _background()) for k in range(20)]
        for k in range(20):
            np.testing.assert_array_equal(frames_a[k], frames_b[(k + 10) % 20])
        assert not np.array_equal(frames_a[0], frames_a[19])  # the two halves do differ


def test_trimmed_set_has_balanced_classes_with_train_and_val(tmp_path):
    result = make_trimmed(tmp_path, videos=8, seconds=1, fps=4, size=32)
    with open(result.labels) as fh:
        rows = list(csv.DictReader(fh))
    assert [set(r) for r in rows][0] == {"video_id", "label", "split"}
    assert sorted(r["video_id"] + ".mp4" for r in rows) == sorted(p.name for p in tmp_path.glob("*.mp4"))
    for label in TRIMMED_CLASSES:
        splits = [r["split"] for r in rows if r["label"] == label]
        assert sorted(splits) == ["train", "val"]
    with av.open(str(result.videos[0])) as c:
        assert c.streams.video[0].frames == 4 and c.streams.video[0].codec_context.width == 32


def test_the_same_seed_gives_the_same_videos(tmp_path):
    a = make_trimmed(tmp_path / "a", videos=2, seconds=1, fps=4, size=32, seed=5)
    b = make_trimmed(tmp_path / "b", videos=2, seconds=1, fps=4, size=32, seed=5)
    assert [p.read_bytes() for p in a.videos] == [p.read_bytes() for p in b.videos]


def _colour_share(rgb: np.ndarray, colour) -> float:
    return float((np.abs(rgb.astype(int) - colour).sum(-1) < 90).mean())


def test_untrimmed_annotations_are_activitynet_and_match_the_pixels(tmp_path):
    result = make_untrimmed(tmp_path, videos=2, seconds=20, fps=4, size=48, seed=2)
    anno = json.loads(result.labels.read_text())
    assert set(anno) >= {"version", "database"}
    for video_id, entry in anno["database"].items():
        assert entry["subset"] in ("training", "validation") and entry["duration"] == 20
        segments = sorted(a["segment"] for a in entry["annotations"])
        assert segments and all(0 <= s < e <= entry["duration"] for s, e in segments)
        assert all(e1 <= s2 for (_, e1), (s2, _) in zip(segments, segments[1:]))
        assert {a["label"] for a in entry["annotations"]} <= set(UNTRIMMED_CLASSES)
        with av.open(str(tmp_path / f"{video_id}.mp4")) as c:
            frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
        for a in entry["annotations"]:
            (s, e), label = a["segment"], a["label"]
            inside = [rgb for t, rgb in frames if s + 0.3 <= t < e - 0.3]
            colour = {"red_disc": RED, "blue_square": BLUE}.get(label)
            if colour is not None:
                assert min(_colour_share(rgb, colour) for rgb in inside) > 0.02
        outside = [rgb for t, rgb in frames if not any(x["segment"][0] - 0.3 <= t < x["segment"][1] + 0.3 for x in entry["annotations"])]
        assert max(_colour_share(rgb, RED) for rgb in outside) < 0.005


def test_a_lead_in_shows_the_background_alone_before_the_action():
    bg = _background()
    assert np.array_equal(trimmed_frame("red_then_blue", 0.2, bg.copy(), lead=0.4), bg)  # background only
    assert not np.array_equal(trimmed_frame("red_then_blue", 0.45, bg.copy(), lead=0.4), bg)
    np.testing.assert_array_equal(
        trimmed_frame("red_then_blue", 0.45, bg.copy(), lead=0.4), trimmed_frame("red_then_blue", 0.1, bg.copy())
    )  # red first: the first colour fills [0.4, 0.7)
    np.testing.assert_array_equal(
        trimmed_frame("red_then_blue", 0.75, bg.copy(), lead=0.4), trimmed_frame("red_then_blue", 0.9, bg.copy())
    )  # then blue


def test_flashes_show_one_colour_at_a_time_at_the_given_times():
    from featx.synth_draw import flash_frame

    bg = _background()
    at = lambda p: flash_frame("green_then_yellow", p, bg.copy(), first_at=0.2, second_at=0.6, length=0.1)  # noqa: E731
    assert np.array_equal(at(0.1), bg) and np.array_equal(at(0.45), bg) and np.array_equal(at(0.75), bg)
    np.testing.assert_array_equal(at(0.25), trimmed_frame("green_then_yellow", 0.1, bg.copy()))
    np.testing.assert_array_equal(at(0.65), trimmed_frame("green_then_yellow", 0.9, bg.copy()))


def _gaps(segments):
    return [b.start - a.end for a, b in zip(segments, segments[1:])]


def test_easy_segments_keep_their_lengths_and_gaps():
    # the easy kind is unchanged by the hard one: 3-8 s actions, at least 2 s apart (up to frame rounding)
    for seed in range(5):
        segments = easy_segments(np.random.default_rng(seed), 60.0, 4)
        assert segments and {s.label for s in segments} <= set(UNTRIMMED_CLASSES)
        assert all(3.0 - 0.25 <= s.end - s.start <= 8.0 + 0.25 and not s.occluded for s in segments)
        assert all(gap >= 2.0 - 0.25 for gap in _gaps(segments))


def test_hard_segments_are_short_to_long_apart_and_on_frames():
    lengths, labels, occluded = [], set(), 0
    for seed in range(5):
        segments = hard_segments(np.random.default_rng(seed), 50.0, 4)
        assert 0 < segments[0].start and segments[-1].end <= 50.0
        assert all(gap > 0 for gap in _gaps(segments))  # background between every two actions
        for s in segments:
            assert (s.start * 4).is_integer() and (s.end * 4).is_integer()
            for a, b in s.occluded:  # inside the middle 60%, at most a quarter of the action each
                assert s.start + 0.2 * (s.end - s.start) <= a < b <= s.end - 0.2 * (s.end - s.start)
                assert b - a <= (s.end - s.start) / 4 and (a * 4).is_integer() and (b * 4).is_integer()
        lengths += [s.end - s.start for s in segments]
        labels |= {s.label for s in segments}
        occluded += sum(bool(s.occluded) for s in segments)
    assert min(lengths) < 1.0 and max(lengths) > 10.0 and max(lengths) <= 20.0
    assert labels == set(HARD_CLASSES) and occluded > 0


def _textured(size=32, seed=0):
    return np.random.default_rng(seed).integers(60, 170, (size, size, 3), dtype=np.uint8)


def test_occluded_stretches_show_the_background_alone():
    bg = _textured()
    segment = Segment(1.0, 5.0, "bar_then_ring", occluded=((2.0, 2.5),))
    for t in (2.0, 2.25, 2.4):
        np.testing.assert_array_equal(hard_frame(segment, t, bg.copy()), bg)
    for t in (1.5, 2.5, 4.5):
        assert not np.array_equal(hard_frame(segment, t, bg.copy()), bg)
    np.testing.assert_array_equal(hard_frame(None, 2.2, bg.copy()), bg)


def test_order_pairs_draw_the_same_shapes_in_reverse_order():
    # no single frame tells "A then B" from "B then A": the frame at progress p of one is the other's at 1 - p
    bg = _textured()
    for a, b in [("disc_then_square", "square_then_disc"), ("bar_then_ring", "ring_then_bar")]:
        for n in (9, 10):
            for k in range(n):
                p, t = (k + 0.5) / n, 0.3 * k
                if p != 0.5:
                    np.testing.assert_array_equal(order_frame(a, p, t, bg.copy()), order_frame(b, 1 - p, t, bg.copy()))
        assert not np.array_equal(order_frame(a, 0.1, 1.0, bg.copy()), order_frame(a, 0.9, 1.0, bg.copy()))


def test_hard_untrimmed_videos_have_activitynet_annotations(tmp_path):
    result = make_untrimmed(tmp_path, videos=2, seconds=12, fps=4, size=32, seed=1, val_fraction=0.5, hard=True)
    anno = json.loads(result.labels.read_text())
    assert [c["nodeName"] for c in anno["taxonomy"]] == list(HARD_CLASSES)
    assert sorted(e["subset"] for e in anno["database"].values()) == ["training", "validation"]
    for video_id, entry in anno["database"].items():
        assert entry["duration"] == 12 and entry["annotations"]
        for a in entry["annotations"]:
            assert a["label"] in HARD_CLASSES and all((x * 4).is_integer() for x in a["segment"])
        with av.open(str(tmp_path / f"{video_id}.mp4")) as c:
            assert c.streams.video[0].frames == 48


def test_cli_synth_hard_is_for_untrimmed_only(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["synth", str(tmp_path / "t"), "--hard"])
    assert result.exit_code == 1 and "--hard applies to --kind untrimmed only" in result.output
    args = ["synth", str(tmp_path / "u"), "--kind", "untrimmed", "--hard", "--videos", "1", "--seconds", "6", "--video-fps", "4", "--size", "32"]
    assert runner.invoke(app, args).exit_code == 0
    labels = {a["label"] for e in json.loads((tmp_path / "u" / "annotations.json").read_text())["database"].values() for a in e["annotations"]}
    assert labels <= set(HARD_CLASSES)


# --- real-world and variable frame rates -------------------------------------------------------------------


def _decoded_times(path) -> tuple[Fraction, list[Fraction], Fraction]:
    """(average rate, start time of every decoded frame, end of the stream), exact, in seconds."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        starts = [Fraction(f.pts) * stream.time_base for f in c.decode(stream)]
        return stream.average_rate, starts, Fraction(stream.duration) * stream.time_base


@pytest.mark.parametrize("given, rate", [("29.97", Fraction(30000, 1001)), ("30000/1001", Fraction(30000, 1001)),
                                         ("23.976", Fraction(24000, 1001)), (29.97, Fraction(30000, 1001)),
                                         (25, Fraction(25)), ("25", Fraction(25)), ("12.5", Fraction(25, 2))])
def test_frame_rate_reads_ntsc_decimals_as_their_exact_fraction(given, rate):
    assert frame_rate(given) == rate


@pytest.mark.parametrize("given", [0, "0", -25, "abc", "1/0", "nan", "inf", "", 1001])
def test_frame_rate_refuses_what_is_not_a_rate(given):
    with pytest.raises(FeatxError, match="--video-fps must be a frame rate"):
        frame_rate(given)


@pytest.mark.parametrize("fps, rate", [("29.97", Fraction(30000, 1001)), (25, Fraction(25))])
def test_untrimmed_videos_at_real_world_rates_decode_at_that_rate(tmp_path, fps, rate):
    result = make_untrimmed(tmp_path, videos=1, seconds=3, fps=fps, size=32, seed=1)
    average, starts, end = _decoded_times(result.videos[0])
    n = round(3 * rate)  # 90 frames at 29.97, 75 at 25
    assert average == rate and len(starts) == n
    assert starts == [j / rate for j in range(n)]  # frame j at j * 1001 / 30000 s, exactly
    assert end == n / rate
    entry = json.loads(result.labels.read_text())["database"]["untrimmed_000"]
    assert entry["duration"] == float(n / rate)


def test_variable_frame_times_last_one_or_one_and_a_half_periods():
    times = FrameTimes.variable(np.random.default_rng(0), 10.0, Fraction(30))
    gaps = {Fraction(int(b - a)) * times.time_base for a, b in zip(times.ticks[:-1], times.ticks[1:])}
    assert gaps == {Fraction(1, 30), Fraction(1, 20)}
    assert 10.0 <= times.duration < 10.0 + 1 / 20 and times.frames > 10 * 20


def test_a_vfr_video_shows_its_frames_at_the_promised_times(tmp_path):
    result = make_untrimmed(tmp_path, videos=1, seconds=4, fps=30, size=32, seed=3, vfr=True)
    _, starts, end = _decoded_times(result.videos[0])
    gaps = {b - a for a, b in zip(starts, starts[1:])}
    assert starts[0] == 0 and gaps == {Fraction(1, 30), Fraction(1, 20)}
    assert float(end) == json.loads(result.labels.read_text())["database"]["untrimmed_000"]["duration"]
    again = FrameTimes.variable(np.random.default_rng(3), 4.0, Fraction(30))  # the option's promise, drawn first
    assert starts == [Fraction(int(t)) * again.time_base for t in again.ticks[:-1]]


def _shown(rgb: np.ndarray) -> float:
    return max(_colour_share(rgb, colour) for colour in (RED, BLUE, YELLOW))


@pytest.mark.parametrize("fps, vfr", [("29.97", False), ("30000/1001", True)])
def test_segments_start_and_end_on_the_boundaries_of_shown_frames(tmp_path, fps, vfr):
    result = make_untrimmed(tmp_path, videos=2, seconds=14, fps=fps, size=32, seed=4, vfr=vfr)
    database = json.loads(result.labels.read_text())["database"]
    for path in result.videos:
        _, starts, end = _decoded_times(path)
        boundaries = {float(t) for t in starts} | {float(end)}
        with av.open(str(path)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        segments = [a["segment"] for a in database[path.stem]["annotations"]]
        assert segments
        for s, e in segments:
            assert s in boundaries and e in boundaries
            first, after = [float(t) for t in starts].index(s), [float(t) for t in starts].index(e)
            # the action shows from the segment's first frame to its last, and not in the frames either side
            assert _shown(frames[first]) > 0.02 and _shown(frames[after - 1]) > 0.02
            assert _shown(frames[first - 1]) < 0.005 and _shown(frames[after]) < 0.005


def test_the_featx_decoder_times_vfr_frames_by_their_timestamps(tmp_path):
    from featx.video import FrameChunk, stream_frames

    result = make_untrimmed(tmp_path, videos=1, seconds=3, fps=30, size=32, seed=5, vfr=True)
    _, starts, _ = _decoded_times(result.videos[0])
    every = [t for item in stream_frames(result.videos[0]) if isinstance(item, FrameChunk) for t in item.time]
    np.testing.assert_allclose(every, [float(t) for t in starts], atol=1e-9)
    sampled = [t for item in stream_frames(result.videos[0], fps=4) if isinstance(item, FrameChunk) for t in item.time]
    expected = sorted({min(t for t in starts if t >= Fraction(k, 4)) for k in range(12)})  # first frame at or after k / 4
    np.testing.assert_allclose(sampled, [float(t) for t in expected], atol=1e-9)


def test_a_vfr_videos_last_row_ends_with_its_last_frame_not_an_average_period_later(tmp_path):
    from featx.video import DecodedVideo, stream_frames

    result = make_untrimmed(tmp_path, videos=1, seconds=3, fps=30, size=32, seed=5, vfr=True)
    _, starts, end = _decoded_times(result.videos[0])
    (decoded,) = [item for item in stream_frames(result.videos[0]) if isinstance(item, DecodedVideo)]
    assert decoded.end_time == pytest.approx(float(end), abs=1e-6)  # the last frame's own duration


@pytest.mark.parametrize("args, needle", [(["--video-fps", "abc"], "--video-fps must be a frame rate"), (["--video-fps", "0"], "not '0'"),
                                          (["--fps", "8"], "No such option: --fps (Possible options: --vfr, --video-fps)"),
                                          (["--vfr"], "--vfr applies to --kind untrimmed only")])
def test_cli_synth_refuses_bad_rates_in_one_line(tmp_path, args, needle):
    from typer.testing import CliRunner

    from cli import app
    from tests.helpers import one_error_line

    one_error_line(CliRunner().invoke(app, ["synth", str(tmp_path / "s"), *args]), needle)
    assert not (tmp_path / "s").exists()


def test_cli_synth_writes_ntsc_vfr_videos(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    args = ["synth", str(tmp_path / "u"), "--kind", "untrimmed", "--video-fps", "29.97", "--vfr", "--videos", "1",
            "--seconds", "2", "--size", "32"]
    assert CliRunner().invoke(app, args).exit_code == 0
    _, starts, _ = _decoded_times(tmp_path / "u" / "untrimmed_000.mp4")
    assert {b - a for a, b in zip(starts, starts[1:])} == {Fraction(1001, 30000), Fraction(3003, 60000)}
