"""Frames decoded only when a reader needs them: `FramesOnDemand`, for a reader that knows before each frame
whether it wants it (a Skip RNN: `featx predict --adaptive`), seeking past what it skips when that is cheaper
(featx.seek's cost model)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from featx import seek, timegrid, video
from featx.errors import FeatxError


class FramesOnDemand:
    """The sampled frames of a video (those `featx.video.stream_frames` yields, same pixels), for a reader that
    knows before each frame whether it needs it (a Skip RNN: featx predict --adaptive). `skip(n)` passes over
    n sampled frames and `take()` returns the next one, resized and cropped (None after the last); a frame
    passed over is never converted to RGB or resized, and when a needed frame lies further on than a seek to
    its keyframe costs (`reach`, the cost model of `plan`), the frames in between are not even decoded.

    Frame numbers come from the packets (as `featx.seek.plan`'s); a stream whose packets lack timestamps is decoded
    through, converting only the frames taken. At the end, the checks of a full decode apply
    (`featx.video.check_whole`). Counters: `decoded` frames, `converted` frames, `seeks`. `times` holds the
    seconds of every sampled frame passed or taken and, at the end, `end_time` the end of the last frame: the
    times a store's rows get (featx.timegrid.row_spans).
    """

    def __init__(self, path, fps: float | None, pre, threads: int = 0):
        self.path, self.pre = path, pre
        self._container = video.open_video(path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type, self._stream.thread_count = "AUTO", threads
        self.info = video.container_info(self._container)
        video.check_shape(self.info, pre)
        self._start = Fraction(self._stream.start_time or 0) * (self._stream.time_base or 1)
        self._step = 1.0 / self.info.fps if self.info.fps > 0 else 0.0
        self.decoded = self.converted = self.seeks = 0
        self.times: list[float] = []
        self.end_time: float | None = None
        self._index = seek.packet_index(path)
        if self._index is None or len(self._index.pts) == 0:  # no timestamps to seek by: decode through
            self._full = video.FullDecode(self._container, self._stream, self._start, self._step, fps)
            self._frames, self._targets = iter(self._full), None
        else:
            base = self._stream.time_base or 1
            times = [float(int(p) * base - self._start) for p in self._index.pts]  # as FrameClock computes them
            self._targets = np.asarray(timegrid.sample_indices(times, fps), np.int64)
            self._target_times = np.asarray(times, float)[self._targets] if len(self._targets) else np.zeros(0)
            self._keyframes = np.flatnonzero(self._index.keyframe)
            self._last_time = times[-1] if times else 0.0
            self._decoder, self._position = None, -1
        self._next = 0  # sampled frames passed or taken so far

    def skip(self, n: int) -> int:
        """Pass over the next `n` sampled frames; returns how many there were (fewer at the end)."""
        if self._targets is not None:
            passed = min(n, len(self._targets) - self._next)
            self.times.extend(self._target_times[self._next : self._next + passed].tolist())
            self._next += passed
            return passed
        passed = 0
        while passed < n and self._next_full() is not None:
            passed += 1
        return passed

    def take(self):
        """The next sampled frame as the backbone's input, (H, W, 3) uint8 RGB, or None after the last."""
        if self._targets is None:
            frame = self._next_full()
        elif self._next < len(self._targets):
            frame = self._decode_to(int(self._targets[self._next]))
            self.times.append(float(self._target_times[self._next]))
            self._next += 1
        else:
            self._finish(len(self._index.pts), self._last_time, "found")
            return None
        if frame is None:
            return None
        self.converted += 1
        return video.to_rgb(frame, self.pre)

    def close(self) -> None:
        self._container.close()

    def _next_full(self):
        """The next sampled frame of a decode through (None at the end, after the end checks)."""
        import av

        try:
            n, t, frame = next(self._frames)
        except StopIteration:
            self.decoded = self._full.end[0]
            self._finish(*self._full.end, "decoded")
            return None
        except av.FFmpegError as exc:
            raise self._failed(exc) from None
        self.decoded = n + 1
        self.times.append(float(t))
        return frame

    def _decode_to(self, target: int):
        """Frame number `target`: decoding on from the current position, or seeking to its keyframe first."""
        import av

        key, onward, jump = seek.reach(self._position, target, self._keyframes)
        seeked = jump < onward
        if seeked:
            self._container.seek(int(self._index.seek_pts[key]), stream=self._stream, backward=True, any_frame=False)
            self.seeks += 1
            seeked = self._index.shown_first(key)  # else the group's keyframe is hidden: the first shown is not one
            self._decoder = self._container.decode(self._stream)
        elif self._decoder is None:  # decoding from the start
            self._decoder = self._container.decode(self._stream)
        want = self._index.pts[target]
        try:
            for frame in self._decoder:
                self.decoded += 1
                if seeked and not frame.key_frame:  # the file marks frames as keyframes that are not
                    return self._restart_without_seeking(target)
                seeked = False
                if frame.pts is None or frame.pts < want:
                    continue
                if frame.pts > want:
                    raise FeatxError(f"seeking missed frame {target} (pts {want}, got {frame.pts})")
                self._position = target
                return frame
        except av.FFmpegError as exc:
            raise self._failed(exc) from None
        raise FeatxError(f"the stream ended before frame {target}")

    def _restart_without_seeking(self, target: int):
        """Decode from the start to `target`, never seeking again: a seek landed on a frame the file called a
        keyframe but the decoder did not (decoding on from there would give other pixels)."""
        self._keyframes = np.array([0])
        self._container.seek(int(self._index.seek_pts[0]), stream=self._stream, backward=True, any_frame=False)
        self._decoder, self._position = self._container.decode(self._stream), -1
        return self._decode_to(target)

    def _failed(self, exc) -> Exception:
        return FeatxError(f"decoding failed ({video.ffmpeg_reason(exc)})")

    def _finish(self, n: int, last: float, verb: str) -> None:
        video.check_whole(self.info, n, last, self._step, verb)
        self.end_time = last + self._step  # as featx.video.stream_frames's DecodedVideo.end_time
