"""The time grid of a store's rows, read from the rows' own times, and the per-step data of some videos.

Row i of a video sits at its centre: (t_start + t_end) / 2, which for clip rows is the clip's `t_center`
and for per-frame rows the middle of the frame's span up to the next sampled frame. Rows are uniformly
spaced at a store's `--fps` (and `--clip-stride`), so a video's rows form a grid: row i at
origin + i * period, where the period is the spacing of consecutive `t_start` values, not a row's own
length (a 16-frame clip every 4 frames lasts 4 periods). Each row owns the cell of one period around its
centre; step heads label and decode those cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featx.store import load_features
from seqmodels.data import finite_sequences


@dataclass(frozen=True)
class StepClock:
    """Seconds <-> step-grid coordinates of one video (row i's centre is at grid coordinate i)."""

    origin: float  # seconds at row 0's centre
    period: float  # seconds between consecutive rows
    start: float  # t_start of the first row
    end: float  # t_end of the last row
    steps: int

    @classmethod
    def from_rows(cls, t_start: np.ndarray, t_end: np.ndarray) -> "StepClock":
        t_start, t_end = np.asarray(t_start, float), np.asarray(t_end, float)
        gaps = np.diff(t_start)
        period = float(np.median(gaps)) if len(gaps) else float(t_end[0] - t_start[0])
        period = period if period > 0 else 1.0
        return cls(float((t_start[0] + t_end[0]) / 2), period, float(t_start[0]), float(t_end[-1]), len(t_start))

    def to_grid(self, seconds):
        return (np.asarray(seconds, float) - self.origin) / self.period

    def to_seconds(self, grid):
        """Grid coordinates to seconds, clamped to the video's span."""
        return np.clip(self.origin + np.asarray(grid, float) * self.period, self.start, self.end)

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) seconds of each row's cell: its centre +- half a period, within the video."""
        grid = np.arange(self.steps)
        return self.to_seconds(grid - 0.5), self.to_seconds(grid + 0.5)


@dataclass
class StepData:
    """Per-step features and clocks of some videos of a store."""

    ids: list[str]
    features: list[np.ndarray]  # (T, D)
    clocks: list[StepClock]

    def subset(self, keep: list[str]) -> "StepData":
        pos = {v: i for i, v in enumerate(self.ids)}
        idx = [pos[v] for v in keep]
        return StepData([self.ids[i] for i in idx], [self.features[i] for i in idx], [self.clocks[i] for i in idx])

    def columns(self, cols: slice) -> "StepData":
        """The same videos with only these feature columns (one stream of several; views, no copies)."""
        return StepData(self.ids, [f[:, cols] for f in self.features], self.clocks)


def load_steps(store, video_ids: list[str] | None = None, columns=("feature",)) -> StepData:
    """Features (the `columns`, concatenated per step) and clocks of `video_ids` (all the store's videos when
    None), in that order."""
    feats = finite_sequences(store, video_ids, columns)
    times = load_features(store, columns=["video_id", "step", "t_start", "t_end"], video_ids=video_ids)
    times = times.sort_values(["video_id", "step"], kind="stable")
    clocks = {vid: StepClock.from_rows(g.t_start.to_numpy(), g.t_end.to_numpy()) for vid, g in times.groupby("video_id", sort=False)}
    ids = list(video_ids) if video_ids is not None else sorted(feats)
    return StepData(ids, [feats[v] for v in ids], [clocks[v] for v in ids])
