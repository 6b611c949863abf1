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
from fractions import Fraction
from pathlib import Path

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


def seek_plan(path, stream, start: Fraction, fps: float):
    """(runs, frames, time of the last frame) when seeking pays off, else None."""
    index = packet_index(path)
    if index is None or len(index.pts) == 0:
        return None
    base = stream.time_base or Fraction(1)
    times = [float(int(p) * base - start) for p in index.pts]  # exactly as FrameClock computes them
    targets = np.asarray(timegrid.sample_indices(times, fps))
    runs, cost = plan(targets, np.flatnonzero(index.keyframe))
    if not worth_seeking(len(times), cost):
        return None
    return (index, runs, times), len(times), times[-1]


def seeked_frames(container, stream, chosen):
    """(frame number, time, frame) of the frames a `seek_plan` takes, decoded by seeking."""
    (index, runs, times), _, _ = chosen
    for n, frame in decode_runs(container, stream, index, runs):
        yield n, times[n], frame
