"""Encoding synthetic videos with exact frame times: constant rates as exact fractions (29.97 is the NTSC rate
30000/1001), and variable frame rate (`FrameTimes`), written with those timestamps and durations."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from featx.errors import FeatxError

# The NTSC rates: a decimal --video-fps within NTSC_TOLERANCE of n * 1000 / 1001 for one of these n is that exact rate.
NTSC_BASES = (24, 30, 48, 60, 120)
NTSC_TOLERANCE = 5e-4
MAX_FPS = 1000


def frame_rate(value: int | float | str | Fraction) -> Fraction:
    """A frame rate as an exact fraction: 25 -> 25, "30000/1001" -> 30000/1001, and the decimals people write for
    NTSC rates (29.97, 23.976, 59.94) -> n * 1000 / 1001, the rate such a video really has; other decimals as
    written (12.5 -> 25/2). Raises FeatxError unless it is a rate from 1 to MAX_FPS frames per second."""
    wrong = FeatxError(f"--video-fps must be a frame rate from 1 to {MAX_FPS} (25, 29.97, 30000/1001), not {str(value)!r}")
    try:
        rate = Fraction(value.strip()) if isinstance(value, str) else Fraction(value)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        raise wrong from None
    if not 1 <= rate <= MAX_FPS:
        raise wrong
    for n in NTSC_BASES:
        ntsc = Fraction(n * 1000, 1001)
        if rate != n and abs(rate - ntsc) < NTSC_TOLERANCE:
            return ntsc
    return rate.limit_denominator(1001)


def rate_json(rate: Fraction) -> int | str:
    """The rate in a synth folder's marker: an int when whole (as before fractional rates), else "30000/1001"."""
    return rate.numerator if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


@dataclass(frozen=True, eq=False)
class FrameTimes:
    """When each frame of a video shows: frame j from boundary j to boundary j + 1, boundary k at
    ticks[k] * time_base seconds (exact). Constant rate: ticks are 0, 1, 2, ... of 1 / rate; variable rate
    (`variable`): each frame lasts 2 or 3 ticks of 1 / (2 rate), at random.

    `position(t)` is the frame position of time t (boundary k at position k, linear in between); segment and
    occlusion times are boundaries, `at(k)`, so they stay exact relative to the frames shown."""

    ticks: np.ndarray  # (frames + 1,) int64: start of every frame, then the end of the last, in time_base units
    time_base: Fraction  # seconds per tick
    rate: Fraction  # the nominal rate (constant rate: the rate; variable: the fastest one)
    constant: bool

    @classmethod
    def regular(cls, frames: int, rate: Fraction) -> "FrameTimes":
        return cls(np.arange(frames + 1, dtype=np.int64), 1 / rate, rate, True)

    @classmethod
    def variable(cls, rng: np.random.Generator, seconds: float, rate: Fraction) -> "FrameTimes":
        """Frames lasting 1 or 1.5 periods of `rate` at random, until `seconds` are covered (at least one frame)."""
        time_base = 1 / (2 * rate)
        gaps = rng.choice(np.array([2, 3], np.int64), size=max(1, math.ceil(seconds * rate)))
        ticks = np.concatenate([[0], np.cumsum(gaps)])
        frames = max(1, int(np.searchsorted(ticks * float(time_base), seconds - 1e-9)))
        return cls(ticks[: frames + 1], time_base, rate, False)

    @property
    def frames(self) -> int:
        return len(self.ticks) - 1

    @property
    def duration(self) -> float:
        return self.at(self.frames)

    def at(self, k: int) -> float:
        """Seconds of boundary k (the start of frame k; k = frames: the end of the video)."""
        return float(int(self.ticks[k]) * self.time_base)

    def start(self, j: int) -> float:
        return self.at(j)

    def centre(self, j: int) -> float:
        return float(Fraction(int(self.ticks[j]) + int(self.ticks[j + 1]), 2) * self.time_base)

    def position(self, t: float) -> float:
        if self.constant:
            return t * float(self.rate)  # the arithmetic of integer rates before FrameTimes: same videos per seed
        return float(np.interp(t, self.ticks * float(self.time_base), np.arange(len(self.ticks))))

    def nearest(self, t: float) -> int:
        return min(self.frames, round(self.position(t)))

    def frames_in(self, first: int, seconds: float) -> int:
        """Frames from boundary `first` to the boundary nearest `seconds` later (at least one)."""
        if self.constant:
            return max(1, round(seconds * float(self.rate)))
        return max(1, self.nearest(self.at(first) + seconds) - first)


def write_video(
    path: Path, frames, fps: int | Fraction, size: int | tuple[int, int], codec: str = "libx264", intra_only: bool = False,
    gop: int | None = None, times: FrameTimes | None = None,
) -> None:
    """Encode an iterable of (H, W, 3) uint8 RGB frames at a constant `fps` (an int or an exact Fraction such as
    30000/1001); size is (W, H), or one int for square frames. gop: keyframe spacing in frames (default: the
    encoder's). times: each frame's timestamp and duration (a variable frame rate); `fps` is then nominal.

    intra_only: every frame a keyframe at a constant quantiser, so a frame's coding artefacts depend on
    its content alone, never on its position in the video (inter coding degrades the frames after a cut,
    which would let order-blind models tell "A then B" from "B then A")."""
    import av

    # written under a hidden name and renamed when complete: an interrupted synth never leaves a short video
    # that plays (and would extract) as if it were whole
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    with av.open(str(partial), "w") as container:
        options = {"qp": "20"} if intra_only else {}
        if times is not None:  # no B-frames: decode order is display order, so the container's duration is exact
            options["bf"] = "0"
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = (size, size) if isinstance(size, int) else size
        stream.pix_fmt = "yuv420p"
        if intra_only or gop:
            stream.gop_size = 1 if intra_only else gop
        durations = {}  # pts -> duration: the muxer would give the last frame the one before it
        if times is not None:
            stream.codec_context.time_base = stream.time_base = times.time_base
            durations = {int(a): int(b - a) for a, b in zip(times.ticks[:-1], times.ticks[1:])}
        for j, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(times.ticks[j]), times.time_base
            for packet in stream.encode(frame):
                _mux(container, packet, durations)
        for packet in stream.encode():
            _mux(container, packet, durations)
    os.replace(partial, path)


def _mux(container, packet, durations: dict) -> None:
    if durations and packet.pts in durations:
        packet.duration = durations[packet.pts]
    container.mux(packet)
