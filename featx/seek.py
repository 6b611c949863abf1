"""Decode only what a low --fps needs: seek to keyframes when that costs less than decoding everything.

A frame can only be decoded from the keyframe at or before it, so jumping to a sampled frame costs a seek plus
decoding its group of pictures (GOP) up to it. With keyframes every 250 frames and 10 frames wanted, seeking
decodes about as much as a full pass and pays 10 seeks on top (measured with PyAV: 4x a full decode); with
keyframes every 30 frames it costs 0.4x. The plan is made from the packets alone (demuxing reads the file but
decodes nothing): which frames the sampler keeps, and where each one's keyframe is. It yields exactly the
frames, frame numbers and timestamps that decoding everything would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featx.errors import FeatxError

# A seek (flush the decoder, jump, restart at a keyframe) costs about as much as decoding this many frames.
SEEK_COST_FRAMES = 16
# Seek only when the plan decodes at most this share of what a full pass would.
SEEK_WHEN_BELOW = 0.5


@dataclass(frozen=True)
class PacketIndex:
    """The video stream's shown frames in presentation order: frame k of a full decode is entry k here.

    A packet the container marks to discard (the pre-roll an MP4 edit list hides, e.g. after `ffmpeg -ss T -c
    copy`) is decoded but never shown, so it is no frame; a group of pictures whose keyframe is hidden starts,
    for seeking, at its first shown frame, and a seek there goes to the hidden keyframe (`seek_pts`).
    """

    pts: np.ndarray  # (N,) int64 presentation timestamps, in the stream's time base, ascending
    keyframe: np.ndarray  # (N,) bool: decoding can start at this frame's group (after a seek to seek_pts)
    seek_pts: np.ndarray  # (N,) int64: where to seek to start decoding at this frame's group

    def shown_first(self, frame: int) -> bool:
        """Whether the first frame a seek for `frame`'s group yields is that group's keyframe itself."""
        return bool(self.seek_pts[frame] == self.pts[frame])


@dataclass(frozen=True)
class Run:
    """Seek to frame `start` (a keyframe), then decode forward through `targets` (frame numbers, ascending)."""

    start: int
    targets: list[int]


def packet_index(path: str | Path) -> PacketIndex | None:
    """Demux `path`'s first video stream; None when a packet has no timestamp (then seeking is not safe)."""
    import av

    with av.open(str(path), metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        pts, key, hidden = [], [], []
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            key.append(packet.is_keyframe)
            hidden.append(packet.is_discard)
    order = np.argsort(pts, kind="stable")
    return _shown_frames(np.asarray(pts, np.int64)[order], np.asarray(key, bool)[order], np.asarray(hidden, bool)[order])


def _shown_frames(pts: np.ndarray, key: np.ndarray, hidden: np.ndarray) -> PacketIndex:
    """The index of the frames shown, from every packet's pts, keyframe flag and discard flag (pts order)."""
    shown_pts, group_start, seek_to = [], [], []
    pending_key = None  # pts of a hidden keyframe whose group has shown no frame yet
    for p, k, h in zip(pts.tolist(), key.tolist(), hidden.tolist()):
        if h:
            if k:
                pending_key = p
            continue
        starts = bool(k) or pending_key is not None
        shown_pts.append(p)
        group_start.append(starts)
        seek_to.append(p if k or pending_key is None else pending_key)
        pending_key = None
    return PacketIndex(np.asarray(shown_pts, np.int64), np.asarray(group_start, bool), np.asarray(seek_to, np.int64))


def reach(position: int, target: int, keyframes: np.ndarray, seek_cost: int = SEEK_COST_FRAMES) -> tuple[int, int, int]:
    """How to get from `position` (the last frame decoded, -1 before the first) to frame `target`:
    (its keyframe, frame decodes going on, frame decodes of a seek to that keyframe counting `seek_cost`)."""
    key = int(keyframes[np.searchsorted(keyframes, target, side="right") - 1])
    onward = target - position if position >= 0 else target + 1  # from the start no seek is needed
    return key, onward, seek_cost + target - key + 1


def plan(targets: np.ndarray, keyframes: np.ndarray, seek_cost: int = SEEK_COST_FRAMES) -> tuple[list[Run], int]:
    """Runs that decode every target frame, and their cost in frame decodes (a seek counts `seek_cost`).

    targets: ascending frame numbers wanted; keyframes: ascending frame numbers of keyframes (0 among them).
    From the last decoded frame, a target is reached either by decoding on (one decode per frame in between)
    or by seeking to its keyframe; the cheaper is taken, target by target.
    """
    runs: list[Run] = []
    cost, position = 0, -1  # position: the last frame decoded
    for target in map(int, targets):
        key, onward, jump = reach(position, target, keyframes, seek_cost)
        if onward <= jump:
            if not runs:
                runs.append(Run(0, []))
            runs[-1].targets.append(target)
            cost += onward
        else:
            runs.append(Run(key, [target]))
            cost += jump
        position = target
    return runs, cost


def worth_seeking(total_frames: int, cost: int) -> bool:
    return cost <= SEEK_WHEN_BELOW * total_frames


def decode_runs(container, stream, index: PacketIndex, runs: list[Run]):
    """Yield (frame number, frame) for every target of `runs`, seeking to each run's keyframe."""
    for run in runs:
        container.seek(int(index.seek_pts[run.start]), stream=stream, backward=True, any_frame=False)
        wanted = iter(run.targets)
        target = next(wanted)
        for frame in container.decode(stream):
            if frame.pts is None or frame.pts < index.pts[target]:
                continue
            if frame.pts > index.pts[target]:
                raise FeatxError(f"seeking missed frame {target} (pts {index.pts[target]}, got {frame.pts})")
            yield target, frame
            target = next(wanted, None)
            if target is None:
                break
        else:
            raise FeatxError(f"the stream ended before frame {target}")


class FramesOnDemand:
    """The sampled frames of a video (those `featx.video.stream_frames` yields, same pixels), for a reader that
    knows before each frame whether it needs it (a Skip RNN: featx predict --adaptive). `skip(n)` passes over
    n sampled frames and `take()` returns the next one, resized and cropped (None after the last); a frame
    passed over is never converted to RGB or resized, and when a needed frame lies further on than a seek to
    its keyframe costs (`reach`, the cost model of `plan`), the frames in between are not even decoded.

    Frame numbers come from the packets (as `plan`'s); a stream whose packets lack timestamps is decoded
    through, converting only the frames taken. At the end, the checks of a full decode apply
    (`featx.video.check_whole`). Counters: `decoded` frames, `converted` frames, `seeks`. `times` holds the
    seconds of every sampled frame passed or taken and, at the end, `end_time` the end of the last frame: the
    times a store's rows get (featx.video.row_spans).
    """

    def __init__(self, path, fps: float | None, pre, threads: int = 0):
        from fractions import Fraction

        from featx import video

        self._video, self.path, self.pre = video, path, pre
        self._container = video._open(path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type, self._stream.thread_count = "AUTO", threads
        self.info = video._info(self._container)
        video._check_shape(self.info, pre)
        self._start = Fraction(self._stream.start_time or 0) * (self._stream.time_base or 1)
        self._step = 1.0 / self.info.fps if self.info.fps > 0 else 0.0
        self.decoded = self.converted = self.seeks = 0
        self.times: list[float] = []
        self.end_time: float | None = None
        self._index = packet_index(path)
        if self._index is None or len(self._index.pts) == 0:  # no timestamps to seek by: decode through
            self._full = video._FullDecode(self._container, self._stream, self._start, self._step, fps)
            self._frames, self._targets = iter(self._full), None
        else:
            base = self._stream.time_base or 1
            times = [float(int(p) * base - self._start) for p in self._index.pts]  # as FrameClock computes them
            self._targets = np.asarray(video.sample_indices(times, fps), np.int64)
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
        return self._video._to_rgb(frame, self.pre)

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

        key, onward, jump = reach(self._position, target, self._keyframes)
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
        return FeatxError(f"decoding failed ({self._video._ffmpeg_reason(exc)})")

    def _finish(self, n: int, last: float, verb: str) -> None:
        self._video.check_whole(self.info, n, last, self._step, verb)
        self.end_time = last + self._step  # as featx.video.stream_frames's DecodedVideo.end_time
