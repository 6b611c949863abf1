"""The per-step data of some videos of a store: features and each video's time grid (featx.timegrid, from the
rows' own times: a step's time is its own row's time, never a uniform period's)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featx.store import Store
from featx.timegrid import TimeGrid
from seqmodels.data import finite_sequences


@dataclass
class StepData:
    """Per-step features and time grids of some videos of a store."""

    ids: list[str]
    features: list[np.ndarray]  # (T, D)
    grids: list[TimeGrid]

    def subset(self, keep: list[str]) -> "StepData":
        pos = {v: i for i, v in enumerate(self.ids)}
        idx = [pos[v] for v in keep]
        return StepData([self.ids[i] for i in idx], [self.features[i] for i in idx], [self.grids[i] for i in idx])

    def columns(self, cols: slice) -> "StepData":
        """The same videos with only these feature columns (one stream of several; views, no copies)."""
        return StepData(self.ids, [f[:, cols] for f in self.features], self.grids)


def load_steps(store: Store, video_ids: list[str] | None = None, columns=("feature",)) -> StepData:
    """Features (the `columns`, concatenated per step) and time grids of `video_ids` (all the store's videos when
    None), in that order."""
    feats = finite_sequences(store, video_ids, columns)
    grids = store.grids(video_ids)
    ids = list(video_ids) if video_ids is not None else sorted(feats)
    return StepData(ids, [feats[v] for v in ids], [grids[v] for v in ids])
