"""`featx.open_store(path)`: one handle on a store for notebooks and for stage 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.store.check import StoreProblems, verify_store
from featx.store.location import RemotePath, store_path
from featx.store.manifest import latest_rows, read_config, read_manifest, require_store
from featx.store.reader import load_features, load_sequences, store_info
from featx.timegrid import TimeGrid


class Store:
    """A store opened for reading: its config and manifest are read once, when it is opened.

    store = featx.open_store("store/")
    store.config.backbone, store.config.fps        # the frozen extraction config (the store's identity)
    store.videos()                                 # one row per video: status, error, fps, frames, rows, ...
    store.sequences()                              # {video_id: (T, D) float array}, in step order
    store.rows(columns=["video_id", "t_start"])    # the rows as pandas
    store.grid("a/x").to_seconds(3.5)              # where grid coordinate 3.5 of that video lies, in seconds
    store.verify()                                 # every page read; falsy when nothing is wrong
    """

    def __init__(self, root: Path | RemotePath, config: ExtractConfig, manifest: pd.DataFrame):
        self.root, self.config, self._manifest = root, config, manifest

    @property
    def path(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        ok = int((latest_rows(self._manifest)["status"] == "ok").sum())
        return f"Store({self.path!r}: {self.config.backbone}, {self.config.feature_dim}-d, {ok} videos ok)"

    def __str__(self) -> str:  # in messages, a store is its path
        return self.path

    def __fspath__(self) -> str:  # a Store goes wherever a store's path did (pandas, pyarrow, featx's functions)
        return self.path

    def videos(self, attempts: bool = False) -> pd.DataFrame:
        """The manifest: one row per video (its latest attempt), or with `attempts` every attempt ever made."""
        table = self._manifest if attempts else latest_rows(self._manifest)
        return table.copy()

    def ok_ids(self) -> list[str]:
        """The videos with feature rows, sorted."""
        latest = latest_rows(self._manifest)
        return sorted(latest.loc[latest["status"] == "ok", "video_id"])

    def sequences(self, ids=None, column: str = "feature") -> dict[str, np.ndarray]:
        """{video_id: (T, D) array} in step order, for every video with rows or the given `ids` (one id or a
        list; an id without rows is an error); `column`: "feature", or "flow_feature" in a two-stream store."""
        if column not in self._columns():
            raise FeatxError(f"{self.path} has no column {column!r} (its columns: {', '.join(self._columns())})")
        return load_sequences(self.root, video_ids=self._ids(ids), column=column)

    def rows(self, columns: list[str] | None = None, ids=None) -> pd.DataFrame:
        """The feature rows as pandas (the `feature` column holds one numpy array per row); `ids`: one id or a
        list (an id without rows is an error)."""
        if isinstance(columns, str):
            columns = [columns]
        unknown = [c for c in columns or [] if c not in self._columns()]
        if unknown:
            raise FeatxError(f"{self.path} has no column {unknown[0]!r} (its columns: {', '.join(self._columns())})")
        return load_features(self.root, columns=columns, video_ids=self._ids(ids))

    def _columns(self) -> list[str]:
        from featx.store.format import feature_schema

        return feature_schema(1, self.config.dtype, "{}", self.config.clips, self.config.stream == "both").names

    def _ids(self, ids) -> list[str] | None:
        """`ids` as a list of video ids with rows (one id may be given as a str); None: every video."""
        if ids is None:
            return None
        ids = [ids] if isinstance(ids, str) else list(ids) if isinstance(ids, (list, tuple, set)) else None
        if ids is None or not all(isinstance(i, str) for i in ids):
            raise FeatxError("ids must be a video id or a list of video ids (strings)")
        missing = sorted(set(ids) - set(self.ok_ids()))
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FeatxError(f"{self.path} has no rows of video {missing[0]!r}{more}")
        return ids

    def grids(self, ids=None) -> dict[str, TimeGrid]:
        """{video_id: its rows' time grid} (featx.timegrid: grid coordinate i is row i's centre)."""
        rows = self.rows(["video_id", "step", "t_start", "t_end"], ids).sort_values(["video_id", "step"])
        return {vid: TimeGrid.from_rows(group["t_start"].to_numpy(), group["t_end"].to_numpy())
                for vid, group in rows.groupby("video_id", sort=True)}

    def grid(self, video_id: str) -> TimeGrid:
        """One video's time grid."""
        if not isinstance(video_id, str):
            raise FeatxError(f"a video id is a string, not {video_id!r}")
        return self.grids([video_id])[video_id]

    def verify(self) -> StoreProblems:
        """Every check `featx info --verify` makes (every page read); falsy when nothing is wrong."""
        return verify_store(self.root)

    def info(self) -> dict:
        """What `featx info` prints, as a dict."""
        return store_info(self.root)


def open_store(path) -> Store:
    """Open the store at `path` (a folder, or a pyarrow filesystem URI: s3://, gs://, file:///...) for reading;
    one FeatxError line when it is not a store."""
    if isinstance(path, Store):
        return path
    from featx.inputs import path_argument

    root = store_path(path if isinstance(path, str) and "://" in path else path_argument(path, "open_store: path"))
    require_store(root)
    config = read_config(root)
    if config is None:
        raise FeatxError(f"{root} is not a featx store (no extraction config found)")
    return Store(root, config, read_manifest(root))
