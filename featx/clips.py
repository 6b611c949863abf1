"""Clips for clip (3D) backbones: a sliding window over a video's sampled frames.

Clip k holds sampled frames [k * stride, k * stride + length). Only the frames of clips still to come are
kept, so memory stays at about one clip per video however long the video is. The tail policy decides the
frames after the last full clip: "pad" adds one more clip starting at the next stride position, filled up by
repeating the video's last frame (so a video shorter than one clip still gets a row); "drop" leaves them out.
"""

from __future__ import annotations

import numpy as np


class ClipWindow:
    def __init__(self, length: int, stride: int, tail: str = "pad"):
        self.length, self.stride, self.tail = length, stride, tail
        self._frames: list[np.ndarray] = []  # sampled frames from number self._first on
        self._first = 0
        self._next = 0  # the start of the next clip, in sampled frames
        self.seen = 0  # sampled frames pushed so far
        self.starts: list[int] = []  # start of every clip emitted

    def push(self, pixels: np.ndarray) -> np.ndarray | None:
        """Add consecutive sampled frames (n, H, W, 3); returns the clips they complete, (k, L, H, W, 3), or None."""
        self._frames.extend(pixels)
        self.seen += len(pixels)
        clips = []
        while self._next + self.length <= self.seen:
            at = self._next - self._first
            clips.append(np.stack(self._frames[at : at + self.length]))
            self.starts.append(self._next)
            self._next += self.stride
        self._forget()
        return np.stack(clips) if clips else None

    def finish(self) -> np.ndarray | None:
        """At the end of the video: the padded tail clip (1, L, H, W, 3) under "pad", else None."""
        covered = self.starts[-1] + self.length if self.starts else 0
        if self.tail != "pad" or self._next >= self.seen or covered >= self.seen:
            return None
        at = self._next - self._first
        frames = self._frames[at:]
        frames += [frames[-1]] * (self.length - len(frames))
        self.starts.append(self._next)
        self._frames = []
        return np.stack(frames)[None]

    def _forget(self) -> None:
        drop = min(self._next - self._first, len(self._frames))
        if drop > 0:
            del self._frames[:drop]
            self._first += drop

    @property
    def held(self) -> int:
        return len(self._frames)
