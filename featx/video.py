"""Open, probe and stream videos with PyAV; sample frames at a target rate by presentation time.

Nothing here holds a whole video in memory: frames are decoded, sampled, resized and handed on in chunks.
No torch imports: this module runs inside the decoding worker processes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from featx.seek import PassOver, passes_over, sample_plan, seeked_frames
from featx.errors import FeatxError
from featx.timegrid import TimeSampler

# A stream that decodes fewer than this share of its declared frames is reported as truncated.
_MIN_DECODED_SHARE = 0.9


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # average frame rate the container declares
    frames: int  # declared frame count (0 when the container does not say)
    duration: float  # seconds
    width: int
    height: int


@dataclass(frozen=True)
class Preprocess:
    """How a decoded frame becomes a backbone input: resize the shorter side, centre-crop, RGB uint8."""

    resize_shorter: int  # shorter side after resizing, in pixels
    crop: tuple[int, int]  # (H, W) of the centre crop
    interpolation: str = "bicubic"
    # "cpu": the decoder resizes and crops (FFmpeg's scaler); "device": the decoder only turns frames upright RGB
    # at their decoded size, and featx.batches resizes and crops them on the extraction device (same geometry)
    resize_on: str = "cpu"
    # (H, W) every frame is resized to, its aspect ratio ignored, instead of its shorter side to resize_shorter
    # (torchvision's video transforms with two sizes, e.g. r3d_18's 128 x 171)
    resize_to: tuple[int, int] | None = None

    @classmethod
    def from_config(cls, input_size: tuple[int, int, int], crop_pct: float, interpolation: str,
                    resize_on: str = "cpu", resize_size: tuple[int, int] | None = None) -> "Preprocess":
        _, h, w = input_size
        to = tuple(resize_size) if resize_size is not None else None
        return cls(math.floor(min(h, w) / crop_pct), (h, w), interpolation, resize_on, to)

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """(height, width) of an upright width x height frame once its shorter side is `resize_shorter`
        (rounded, and never smaller than the crop), or `resize_to` when set."""
        if self.resize_to is not None:
            return self.resize_to
        scale = self.resize_shorter / min(width, height)
        return max(self.crop[0], round(height * scale)), max(self.crop[1], round(width * scale))

    def crop_box(self, height: int, width: int) -> tuple[int, int]:
        """(top, left) of the centre crop of a resized height x width frame: rounded down, or with `resize_to` as
        torchvision's center_crop rounds (half to even: 29.5 -> 30 for r3d_18's 171 -> 112), so that those
        models see the pixels their own transforms give."""
        if self.resize_to is not None:
            return int(round((height - self.crop[0]) / 2.0)), int(round((width - self.crop[1]) / 2.0))
        return (height - self.crop[0]) // 2, (width - self.crop[1]) // 2


@dataclass
class FrameChunk:
    """Consecutive sampled frames of one video."""

    index: np.ndarray  # (N,) int64 frame number in decode order
    time: np.ndarray  # (N,) float64 seconds from the stream's start
    pixels: np.ndarray  # (N, H, W, 3) uint8 RGB


@dataclass(frozen=True)
class DecodedVideo:
    """What is known once a video has been decoded to the end."""

    info: VideoInfo
    frames_decoded: int
    end_time: float  # seconds: the end of the last decoded frame


def open_video(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise FeatxError(_not_a_file(path))
    if path.stat().st_size == 0:
        raise FeatxError("empty file (0 bytes)")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise FeatxError(f"not a readable video ({ffmpeg_reason(exc)})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise FeatxError(f"no video stream (streams: {', '.join(kinds)})")
    return container


def _not_a_file(path: Path) -> str:
    if path.is_dir():
        return f"{path}: a folder, not a video file (give folders as INPUT arguments, not inside a list)"
    if path.exists():
        return f"{path}: not a regular file (a pipe, socket or device); give a video file"
    return f"{path}: no such file"


def ffmpeg_reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0]


def container_info(container) -> VideoInfo:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or 0
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000
    return VideoInfo(
        fps=float(rate),
        frames=int(stream.frames or 0),
        duration=duration,
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
    )


def probe(path: str | Path) -> VideoInfo:
    """Container metadata of a video: fps, declared frames, duration, size. Decodes nothing."""
    container = open_video(path)
    try:
        return container_info(container)
    finally:
        container.close()


class FrameClock:
    """Seconds of each decoded frame, in decode order, from its timestamp. A frame without one (the first
    frames of some streams) continues the clock by one frame period; when timestamps then appear, they are
    shifted if needed so that the clock never runs backwards (the invented times and the real ones join up).
    Timestamps that exist are used as they are."""

    def __init__(self, start: Fraction, step: float):
        self.start, self.step = start, step
        self.last: float | None = None
        self.offset = 0.0
        self._invented = False  # the last time given was invented

    def time(self, pts, time_base) -> float:
        if pts is None or time_base is None:
            t = 0.0 if self.last is None else self.last + self.step
            self._invented = True
        else:
            t = float(pts * time_base - self.start) + self.offset
            if self._invented and t < self.last + self.step / 2:
                self.offset += self.last + self.step - t
                t = self.last + self.step
            self._invented = False
        self.last = t
        return t


def quarter_turns(frame) -> int:
    """Counter-clockwise quarter turns that show `frame` upright: its display matrix's rotation (a phone's
    portrait video is coded landscape with -90 here), rounded to a multiple of 90 degrees."""
    return round((getattr(frame, "rotation", 0) or 0) / 90) % 4


# swscale threads per conversion. PyAV 17's default (0: one per core) starts and stops a thread pool for every
# frame, since each frame gets its own scaler: on 2 cores that made converting a 340x256 frame 11x slower in
# wall time (0.67 ms vs 0.061 ms), and decoding workers already use every core (bench/pool_profile.py).
# PyAV before 17 converts in the calling thread and has no such option.
SWS_THREADS = 1


def sws_options(**options) -> dict:
    return {**options, "threads": SWS_THREADS} if _pyav_threads_scaling() else options


@functools.cache
def _pyav_threads_scaling() -> bool:
    import av

    return int(av.__version__.split(".")[0]) >= 17


def to_rgb(frame, pre: Preprocess | None) -> np.ndarray:
    """The frame upright (its rotation applied), RGB; with `pre`, resized and centre-cropped as displayed, unless
    `pre` resizes on the device (then at its decoded size, as without `pre`)."""
    turns = quarter_turns(frame)
    if pre is None or pre.resize_on == "device":
        pixels = frame.to_ndarray(**sws_options(format="rgb24"))
        return np.ascontiguousarray(np.rot90(pixels, turns)) if turns else pixels
    shown_w, shown_h = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    height, width = pre.resized(shown_w, shown_h)
    coded_w, coded_h = (height, width) if turns % 2 else (width, height)
    rgb = frame.reformat(**sws_options(width=coded_w, height=coded_h, format="rgb24", interpolation=pre.interpolation.upper()))
    pixels = np.rot90(rgb.to_ndarray(), turns) if turns else rgb.to_ndarray()
    top, left = pre.crop_box(height, width)
    return pixels[top : top + pre.crop[0], left : left + pre.crop[1]]


# Resizing the shorter side to the backbone's input size makes the longer side this many times the input size at
# most: a 4096 x 1 "video" would otherwise become a 917,504-pixel-wide image per frame.
_MAX_ASPECT = 16


def check_shape(info: VideoInfo, pre: Preprocess | None) -> None:
    if pre is None or info.width <= 0 or info.height <= 0:
        return
    if max(info.width, info.height) > _MAX_ASPECT * min(info.width, info.height):
        raise FeatxError(
            f"frames of {info.width}x{info.height} pixels are too narrow to resize for the backbone "
            f"(aspect ratio above {_MAX_ASPECT}:1)"
        )


def upright(info: VideoInfo, turns: int) -> VideoInfo:
    """The info of a video shown with `turns` quarter turns: width and height as displayed."""
    return replace(info, width=info.height, height=info.width) if turns % 2 else info


def stream_frames(
    path: str | Path, fps: float | None = None, pre: Preprocess | None = None, chunk: int = 16, threads: int = 0,
    seek: bool = True,
) -> Iterator[FrameChunk | DecodedVideo]:
    """Decode `path`, yielding the sampled frames in chunks of up to `chunk`, then one DecodedVideo.
    threads: the decoder's threads (0: FFmpeg's choice, one per core). seek: at an --fps below the native
    rate, decode only what the sampled frames need: seek to keyframes when that decodes much less than a full
    pass, else skip the dropped frames that no frame references (featx.seek); same frames either way.
    seek=False decodes every frame.

    Raises FeatxError for files that cannot be opened, fail to decode, or decode far fewer frames than the
    container declares (a truncated file).
    """
    import av

    container = open_video(path)
    try:
        stream = decoding(container, threads)
        info = container_info(container)
        check_shape(info, pre)
        start = Fraction(stream.start_time or 0) * (stream.time_base or 1)
        step = 1.0 / info.fps if info.fps > 0 else 0.0
        spare = bool(seek and fps and fps < info.fps)  # frames are dropped: decode only what the kept ones need
        frames, plan = sampled_frames(path, container, stream, (start, step), fps, spare, threads)
        idx, times, pixels = [], [], []
        turns = None
        try:
            for n, t, frame in frames:
                turns = quarter_turns(frame) if turns is None else turns
                idx.append(n)
                times.append(t)
                pixels.append(to_rgb(frame, pre))
                if len(idx) == chunk:
                    yield FrameChunk(np.array(idx, np.int64), np.array(times), np.stack(pixels))
                    idx, times, pixels = [], [], []
        except av.FFmpegError as exc:
            raise FeatxError(f"decoding failed ({ffmpeg_reason(exc)})") from None
        n, last = (plan.frames, plan.times[-1]) if plan else frames.end
        check_whole(info, n, last, step, "found" if plan else "decoded")
        if idx:
            yield FrameChunk(np.array(idx, np.int64), np.array(times), np.stack(pixels))
        # the last frame lasts its own duration when the stream says it (variable frame rate), else one period
        last_frame = step if plan else frames.last_duration or step
        yield DecodedVideo(info=upright(info, turns or 0), frames_decoded=n, end_time=last + last_frame)
    finally:
        container.close()


def decoding(container, threads: int):
    """The first video stream of `container`, set to decode with `threads` (0: one per core), frame threading."""
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.thread_count = threads
    return stream


def sampled_frames(path, container, stream, clock: tuple[Fraction, float], fps: float | None, spare: bool, threads: int):
    """(frames, plan): the iterable of (frame number, time, frame) that `stream_frames` takes, and the seeking plan
    when it seeks (else None). spare: decode only what the sampled frames need (seeking or skipping frames);
    else every frame is decoded. clock: (start, step) as FrameClock's."""
    start, step = clock
    chosen = sample_plan(path, stream, start, fps) if spare else None
    if chosen and chosen.runs:
        return seeked_frames(container, stream, chosen), chosen
    if chosen and passes_over(chosen, stream.codec_context.reorder_depth):
        return PassOver(container, stream, chosen, lambda: FullDecode.of_file(path, threads, start, step, fps)), None
    return FullDecode(container, stream, start, step, fps), None


def check_whole(info: VideoInfo, n: int, last: float, step: float, verb: str = "decoded") -> None:
    """Raise FeatxError when `n` frames (the last at `last` seconds) are not the whole video `info` declares."""
    if n == 0:
        raise FeatxError("no frames could be decoded")
    # An edit list (any `-c copy` cut) hides pre-roll frames that the frame count still declares: the video
    # is whole when its decoded frames span the declared (edited) duration.
    spans_duration = info.duration > 0 and last + step >= _MIN_DECODED_SHARE * info.duration
    if info.frames and n < _MIN_DECODED_SHARE * info.frames and not spans_duration:
        raise FeatxError(f"truncated: {verb} {n} of {info.frames} declared frames")
    # containers that declare no frame count (Matroska, WebM) still declare a duration: the frames must span it
    if not info.frames and info.duration > 0 and not spans_duration:
        raise FeatxError(f"truncated: {verb} {n} frames up to {last + step:.2f} s of {info.duration:.2f} s declared")


class FullDecode:
    """(frame number, time, frame) of the sampled frames, decoding every frame; `end` is then
    (frames decoded, time of the last one)."""

    def __init__(self, container, stream, start: Fraction, step: float, fps: float | None, owned: bool = False):
        self._args = container, stream, start, step, fps
        self._owned = owned  # close the container once decoded through
        self.end = (0, 0.0)
        self.last_duration = 0.0  # seconds the last decoded frame lasts, by its own duration (0: not given)

    @classmethod
    def of_file(cls, path, threads: int, start: Fraction, step: float, fps: float | None) -> "FullDecode":
        """A full decode of `path` on a container of its own."""
        container = open_video(path)
        return cls(container, decoding(container, threads), start, step, fps, owned=True)

    def __iter__(self):
        container, stream, start, step, fps = self._args
        sampler = TimeSampler(fps)
        clock = FrameClock(start, step)
        t, n = None, 0
        try:
            for frame in container.decode(stream):
                t = clock.time(frame.pts, frame.time_base)
                if sampler.keep(t):
                    yield n, t, frame
                n += 1
                self.end = (n, t)
                duration = getattr(frame, "duration", None)
                self.last_duration = float(duration * frame.time_base) if duration and frame.time_base else 0.0
        finally:
            if self._owned:
                container.close()
