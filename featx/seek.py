"""Decode only what a low --fps needs: seek to keyframes when that costs less than decoding everything.

A frame can only be decoded from the keyframe at or before it, so jumping to a sampled frame costs a seek plus
decoding its group of pictures (GOP) up to it. With keyframes every 250 frames and 10 frames wanted, seeking
decodes about as much as a full pass and pays 10 seeks on top (measured with PyAV: 4x a full decode); with
keyframes every 30 frames it costs 0.4x. The plan is made from the packets alone (demuxing reads the file but
decodes nothing): which frames the sampler keeps, and where each one's keyframe is. It yields exactly the
frames, frame numbers and timestamps that decoding everything would.

When seeking does not pay, the same plan still spares work: a full pass (`PassOver`) asks the decoder to skip the
frames the sampler drops that no other frame references (H.264's disposable B-frames, nal_ref_idc 0: half the
frames of x264's defaults). On 20 s 640x360 x264 videos (2 busy cores, interleaved, medians of 7) this decoded
294 of 500 frames at 25 fps (--fps 4), and stream_frames took 0.82-0.87x the CPU time per kept frame of decoding
everything at --fps 4 and 0.72x at --fps 1 (bench/pool_profile.py --kept has the stages). The frames, their
numbers, times and pixels are those of a full decode (tests/test_seek.py: h264 at 25, 29.97 and 30 fps, variable
frame rate, an edit list, mpeg4, vp9). A frame passed over is never decoded, so a damaged one goes unnoticed.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from featx import timegrid
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
    reorder: int = 0  # the most packets decoded before a packet and shown after it (`reorder_depth`)

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
        pts, key, hidden = [], [], []  # in decoding order
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            if packet.pts is None:
                return None
            pts.append(packet.pts)
            key.append(packet.is_keyframe)
            hidden.append(packet.is_discard)
    order = np.argsort(pts, kind="stable")
    shown = _shown_frames(np.asarray(pts, np.int64)[order], np.asarray(key, bool)[order], np.asarray(hidden, bool)[order])
    return PacketIndex(shown.pts, shown.keyframe, shown.seek_pts, reorder_depth(pts))


def reorder_depth(pts: list[int]) -> int:
    """The most packets decoded before a packet and shown after it (H.264's num_reorder_frames), from every
    packet's timestamp in decoding order: a decoder that holds back this many frames shows them all in order."""
    ranks = np.empty(len(pts), np.int64)
    ranks[np.argsort(pts, kind="stable")] = np.arange(len(pts))
    waiting, shown, depth = [], 0, 0  # ranks decoded but not yet shown (sorted); the next rank to show
    for rank in ranks.tolist():
        depth = max(depth, len(waiting) - bisect.bisect_right(waiting, rank))
        bisect.insort(waiting, rank)
        while waiting and waiting[0] == shown:
            waiting.pop(0)
            shown += 1
    return depth


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


@dataclass(frozen=True)
class SamplePlan:
    """What a video's packets say about sampling it: the frames, their times and the frames kept."""

    index: PacketIndex
    times: list[float]  # seconds of every shown frame, exactly as featx.video.FrameClock computes them
    targets: np.ndarray  # (K,) ascending frame numbers the sampler keeps
    runs: list[Run] | None  # how to reach the targets by seeking; None when a full pass costs less

    @property
    def frames(self) -> int:
        return len(self.times)


def sample_plan(path, stream, start: Fraction, fps: float) -> SamplePlan | None:
    """The sampling plan of `path` at `fps` (with seeking runs when seeking pays off), or None when a packet
    has no timestamp."""
    index = packet_index(path)
    if index is None or len(index.pts) == 0:
        return None
    base = stream.time_base or Fraction(1)
    times = [float(int(p) * base - start) for p in index.pts]  # exactly as FrameClock computes them
    targets = np.asarray(timegrid.sample_indices(times, fps), np.int64)
    runs, cost = plan(targets, np.flatnonzero(index.keyframe))
    return SamplePlan(index, times, targets, runs if worth_seeking(len(times), cost) else None)


def seeked_frames(container, stream, chosen: SamplePlan):
    """(frame number, time, frame) of the frames a `sample_plan` takes, decoded by seeking."""
    for n, frame in decode_runs(container, stream, chosen.index, chosen.runs):
        yield n, chosen.times[n], frame


def passes_over(chosen: SamplePlan, decoder_delay: int) -> bool:
    """Whether `PassOver` may decode this plan: some frame is dropped, and the decoder, holding back
    `decoder_delay` frames (codec_context.reorder_depth), shows every frame in order, so none is dropped as
    out of order (FFmpeg's H.264 decoder drops such frames)."""
    return len(chosen.targets) < chosen.frames and chosen.index.reorder <= decoder_delay


class OffPlan(Exception):
    """The decoder did not show the frames the packet index lists, in its order (a damaged or unusual stream)."""


class PassOver:
    """(frame number, time, frame) of the sampled frames, in one pass from the start that skips the dropped
    frames nothing references: each packet of a frame the sampler drops goes to the decoder with skip_frame
    NONREF (the decoder still decodes it when other frames need it). Frame numbers and times come from the plan.

    Every frame the decoder shows must be the next one of the index but for frames sent to be skipped, and the
    last frame must come out; otherwise (OffPlan) `fallback()` (a full decode from the start, with `end` and
    `last_duration`) gives the frames after those already yielded. `end` and `last_duration` as FullDecode's."""

    def __init__(self, container, stream, chosen: SamplePlan, fallback: Callable):
        self._args = container, stream, chosen
        self._fallback = fallback
        self.end = (0, 0.0)
        self.last_duration = 0.0
        self.decoded = 0  # frames the decoder showed
        self.fell_back = False

    def __iter__(self):
        yielded = -1
        try:
            for n, frame in self._shown():
                yield n, self._args[2].times[n], frame
                yielded = n
        except OffPlan:
            self.fell_back = True
            full = self._fallback()
            yield from ((n, t, frame) for n, t, frame in full if n > yielded)
            self.end, self.last_duration = full.end, full.last_duration

    def _shown(self):
        container, stream, chosen = self._args
        number = {int(p): k for k, p in enumerate(chosen.index.pts)}
        last = chosen.frames - 1
        targets = set(chosen.targets.tolist())
        needed = {int(chosen.index.pts[k]) for k in targets | {last}}  # the last frame gives the end
        skipped, previous = set(), -1  # frame numbers sent to be skipped; the last frame shown
        for packet in container.demux(stream):
            skip = packet.pts in number and packet.pts not in needed and not packet.is_discard
            stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            if skip:
                skipped.add(number[packet.pts])
            for frame in stream.decode(packet):
                k = number.get(frame.pts, -1)
                if k <= previous or not skipped.issuperset(range(previous + 1, k)):
                    raise OffPlan
                previous, self.decoded = k, self.decoded + 1
                if k in targets:
                    yield k, frame
                if k == last:
                    self.last_duration = float(frame.duration * frame.time_base) if frame.duration and frame.time_base else 0.0
        if previous != last:
            raise OffPlan
        self.end = (chosen.frames, chosen.times[-1])
