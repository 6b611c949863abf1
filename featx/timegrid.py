"""Every time grid featx uses, in one module: which frames sampling keeps, the spans its rows stand for, the
grid of imported arrays, seconds <-> step coordinates, and the evenly spaced grid that other tools configure.

1. **Sampling** (`TimeSampler`, `sample_indices`): the grid 0, 1/fps, 2/fps, ... takes the first frame at or
   after each point, by timestamp only, so variable frame rate needs nothing special.
2. **Row spans** (`row_spans`, `clip_spans`): a per-frame row stands for its frame up to the next sampled frame
   (the last one to the video's end); a clip row from its first frame's start to its last real frame's end.
3. **Import grids** (`import_grid_times`): row i of a foreign array spans source frames [i*S, i*S + W).
4. **Seconds <-> steps** (`TimeGrid`), from the rows' own times, and
5. **the tools' grid** (`tool_grid`): the best evenly spaced grid for ActionFormer and OpenTAD, with its error.

About 4, seconds <-> steps:
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

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

# A frame whose timestamp lies this close below a grid point counts as on it (timestamps are rounded).
_GRID_EPS = 1e-6


# -- 1. sampling ---------------------------------------------------------------------------------------------
def grid_slot(t: float, fps: float) -> int:
    """Index of the last sampling-grid point k / fps at or before time t."""
    return math.floor(t * fps + _GRID_EPS)


class TimeSampler:
    """Decides frame by frame, in decode order, whether a frame is kept when sampling at `fps`.

    The grid is 0, 1/fps, 2/fps, ...; each grid point takes the first frame at or after it, and a frame is
    kept once even when several grid points fall on it (fps above the native rate keeps every frame).
    Variable frame rate is handled because only timestamps count, never frame numbers. fps=None keeps all.
    """

    def __init__(self, fps: float | None):
        self.fps = fps
        self._last_slot: int | None = None

    def keep(self, t: float) -> bool:
        if self.fps is None:
            return True
        slot = grid_slot(t, self.fps)
        if self._last_slot is not None and slot <= self._last_slot:
            return False
        self._last_slot = slot
        return True


def sample_indices(times: Iterable[float], fps: float | None) -> list[int]:
    """Indices of the frames kept when sampling timestamps `times` at `fps` (see TimeSampler)."""
    sampler = TimeSampler(fps)
    return [i for i, t in enumerate(times) if sampler.keep(t)]


# -- 2. row spans --------------------------------------------------------------------------------------------
def row_spans(frame_starts: np.ndarray, t_starts: np.ndarray, n_frames: int, end_time: float):
    """Frame and time ranges each sampled frame stands for: up to the next sampled frame (the last one to the
    end of the video). Returns (frame_end, t_end) arrays aligned with the inputs."""
    frame_end = np.append(frame_starts[1:], n_frames).astype(np.int64)
    t_end = np.append(t_starts[1:], max(end_time, float(t_starts[-1]) if len(t_starts) else end_time))
    return frame_end, t_end.astype(np.float64)


def clip_spans(starts: list[int], length: int, frame_start: np.ndarray, frame_end: np.ndarray,
               t_start: np.ndarray, t_end: np.ndarray):
    """Per clip: (frame_start, frame_end, t_start, t_end) from the spans of its first and last real frames."""
    first = np.asarray(starts, np.int64)
    last = np.minimum(first + length, len(frame_start)) - 1
    return frame_start[first], frame_end[last], t_start[first], t_end[last]


# -- 3. import grids -----------------------------------------------------------------------------------------
def import_grid_times(rows: int, fps: float, stride: int, window: int):
    """(t_start, t_end, frame_start, frame_end) of rows 0..rows-1: row i spans frames [i*stride, i*stride + window)
    of a video at `fps`, i.e. seconds [i*stride/fps, (i*stride + window)/fps)."""
    start = np.arange(rows, dtype=np.int64) * stride
    return start / fps, (start + window) / fps, start, start + window


# -- 4. seconds <-> steps ------------------------------------------------------------------------------------
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


# -- 5. the tools' evenly spaced grid -----------------------------------------------------------------------
def _clean(x: float) -> float | int:
    """Float noise of timestamp arithmetic removed (4.0000000001 -> 4): grid values are read by people."""
    x = round(float(x), 6)
    return int(x) if x.is_integer() else x


def _integral(x: float) -> bool:
    return abs(x - round(x)) < 1e-6


def tool_grid(t_start, t_end, frame_start, frame_end, clock_fps: float | None) -> dict:
    """One video's rows as an evenly spaced grid, in frames of `clock_fps` (the sampling rate, or the source's
    when every frame was kept) and in the keys ActionFormer and OpenTAD configure.

    The grid puts row i's centre at offset + i * stride frames, i.e. at (i * stride + offset) / clock_fps seconds.
    ActionFormer maps feature i to (i * feat_stride + 0.5 * num_frames) / fps seconds (libs/modeling/meta_archs.py,
    postprocessing), so feat_stride = stride, num_frames = 2 * offset. OpenTAD's padding datasets put feature i
    at frame i * feature_stride + offset_frames of a clock frame / duration; both must be integers there (int()),
    so the clock is doubled (or tripled...) when the offset is half a frame (per-frame rows).

    Rows need not be evenly spaced (4 fps from 29.97 fps keeps frames 7 and 8 frames apart in turn), so the grid
    is fitted to all of them (TimeGrid.uniform_fit): the stride is the rows' mean spacing, rounded
    to whole clock frames when that is within 1 %; the offset is the median one, rounded to a half frame
    when that moves it by at most a tenth of a step. `grid_error_s` is how far the rows' actual centres lie from
    the grid (a padded last clip, the sampling's half-frame jitter): featx itself always uses the rows' times."""
    t_start, t_end = np.asarray(t_start, np.float64), np.asarray(t_end, np.float64)
    rows = TimeGrid.from_rows(t_start, t_end)
    clock = float(clock_fps) if clock_fps and math.isfinite(clock_fps) else 1 / rows.period
    stride = _snap(rows.period * clock, 1.0, 0.01 * rows.period * clock)
    period = stride / clock
    origin, _ = rows.uniform_fit(period)
    offset = _snap(origin * clock, 0.5, 0.1 * stride)
    error = float(np.max(np.abs(rows.centres - (offset / clock + np.arange(rows.steps) * period))))
    source_stride = np.median(np.diff(frame_start)) if len(frame_start) > 1 else frame_end[0] - frame_start[0]
    grid = {
        "clock_fps": clock,
        "stride_frames": _clean(stride),
        "window_frames": _clean(2 * rows.half_window * clock),
        "offset_frames": _clean(offset),
        "stride_source_frames": _clean(source_stride),
        "window_source_frames": int(np.median(np.asarray(frame_end) - np.asarray(frame_start))),
        "first_t_start": float(t_start[0]),
        "last_t_end": float(t_end[-1]),
        "period_s": period,
        "grid_error_s": error,
    }
    grid["actionformer"] = {"fps": clock, "feat_stride": grid["stride_frames"], "num_frames": _clean(2 * offset)}
    grid["opentad"] = _opentad(clock, grid["stride_frames"], grid["offset_frames"])
    return grid


def _snap(value: float, unit: float, tolerance: float) -> float:
    """`value` rounded to a multiple of `unit` when that moves it by at most `tolerance` (and keeps it > 0)."""
    snapped = round(value / unit) * unit
    return float(snapped) if snapped > 0 and abs(snapped - value) <= tolerance else float(value)


def _opentad(clock: float, stride: float, offset: float) -> dict | None:
    for k in (1, 2, 3, 4):
        if _integral(k * stride) and _integral(k * offset):
            return {"fps": clock * k, "feature_stride": round(k * stride), "offset_frames": round(k * offset)}
    return None  # not on any whole-frame grid OpenTAD can express
