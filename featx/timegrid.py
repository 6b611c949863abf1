"""The time grid of a video's rows: seconds <-> step coordinates, from the rows' own times.

Row i of a video sits at its centre, (t_start + t_end) / 2: for clip rows the clip's centre, for per-frame
rows the middle of the frame's span up to the next sampled frame. Grid coordinate i is row i's centre, exactly,
and coordinates between rows interpolate the two neighbouring centres linearly. Nothing assumes the rows are
evenly spaced: sampling 4 fps from a 29.97 fps video keeps frames 7 and 8 frames apart in turn, and a variable
frame rate video has no period at all. (The median spacing of such rows is 0.2336 s or 0.2669 s depending on the
row count; taking it as the period put predicted segments up to 7 % of the video's length off.)

Before the first centre and after the last one the grid extends at the rows' mean spacing (`period`, a
summary, never used between rows). Each row owns a *cell*: from the midpoint with the previous centre to the
midpoint with the next one (half a mean spacing at the ends), within the video's span [first t_start, last
t_end]. Step heads label and decode cells; segment heads work in grid coordinates.

`uniform_fit` is the other direction: the best evenly spaced grid for tools that only know a stride and an
offset (ActionFormer, OpenTAD), with how far the rows' actual centres lie from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class TimeGrid:
    """Seconds <-> grid coordinates of one video's rows (row i's centre is at coordinate i)."""

    centres: np.ndarray  # (T,) seconds, strictly increasing
    start: float  # t_start of the first row: nothing of the video before it
    end: float  # t_end of the last row
    half_window: float  # seconds: half of a row's typical span (a clip's half length; half a frame gap per frame)
    period: float  # mean seconds between consecutive rows' starts: a summary, used only outside the rows

    @classmethod
    def from_rows(cls, t_start, t_end) -> "TimeGrid":
        t_start, t_end = np.asarray(t_start, np.float64), np.asarray(t_end, np.float64)
        if t_start.ndim != 1 or len(t_start) == 0 or t_start.shape != t_end.shape:
            raise ValueError("a time grid needs one t_start and one t_end per row, and at least one row")
        centres = (t_start + t_end) / 2
        # rows are in step order; a store never holds two rows at one instant, but imported grids could:
        # nudge ties apart so the mapping stays invertible
        if np.any(np.diff(centres) <= 0):
            for i in range(1, len(centres)):
                centres[i] = max(centres[i], centres[i - 1] + 1e-9)
        half = max(float(np.median(t_end - t_start)) / 2, 0.0)
        # from the starts, not the centres: a padded last clip ends early and would pull a centres' mean in
        period = float((t_start[-1] - t_start[0]) / (len(t_start) - 1)) if len(t_start) > 1 else 2 * half
        return cls(centres, float(min(t_start[0], centres[0])), float(max(t_end[-1], centres[-1])), half,
                   period if period > 0 else 1.0)

    @property
    def steps(self) -> int:
        return len(self.centres)

    @property
    def origin(self) -> float:
        """Seconds at row 0's centre."""
        return float(self.centres[0])

    @property
    def half_window_steps(self) -> float:
        """Half a row's span in grid units (ActionFormer's `feat_offset`: 0.5 * num_frames / feat_stride)."""
        return self.half_window / self.period

    def to_grid(self, seconds) -> np.ndarray:
        """Seconds -> grid coordinates: exact at every row's centre, linear between, mean spacing outside."""
        s = np.asarray(seconds, np.float64)
        rows = np.arange(self.steps, dtype=np.float64)
        inside = np.interp(s, self.centres, rows)
        before = (s - self.centres[0]) / self.period
        after = rows[-1] + (s - self.centres[-1]) / self.period
        return np.where(s < self.centres[0], before, np.where(s > self.centres[-1], after, inside))

    def to_seconds(self, grid, clamp: bool = True) -> np.ndarray:
        """Grid coordinates -> seconds (the inverse of `to_grid`), clamped to the video's span unless told not."""
        g = np.asarray(grid, np.float64)
        rows = np.arange(self.steps, dtype=np.float64)
        inside = np.interp(g, rows, self.centres)
        before = self.centres[0] + g * self.period
        after = self.centres[-1] + (g - rows[-1]) * self.period
        seconds = np.where(g < 0, before, np.where(g > rows[-1], after, inside))
        return np.clip(seconds, self.start, self.end) if clamp else seconds

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) seconds of each row's cell: grid coordinates i - 0.5 .. i + 0.5, within the video."""
        rows = np.arange(self.steps, dtype=np.float64)
        return self.to_seconds(rows - 0.5), self.to_seconds(rows + 0.5)

    def uniform_fit(self, period: float) -> tuple[float, float]:
        """(origin, error): the evenly spaced grid origin + i * period (seconds) through the rows' centres (the
        median offset, so one odd row, such as a padded last clip, does not move it), and the largest distance of
        a centre from it, in seconds."""
        ideal = np.arange(self.steps) * period
        origin = float(np.median(self.centres - ideal))
        return origin, float(np.max(np.abs(self.centres - (origin + ideal))))
