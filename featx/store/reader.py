"""Reading a store's rows: pandas tables, per-video sequences (through the read cache) and the summary `featx
info` prints."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from featx import feature_cache
from featx.errors import FeatxError
from featx.store import location
from featx.store.check import quick_check, refuse_problems
from featx.store.format import MANIFEST_DIR, PART_GLOB, READ_PAGES_BELOW
from featx.store.location import store_path
from featx.store.manifest import latest_rows, read_config, read_manifest, require_store


def videos_to_do(root: str | Path, video_ids) -> set[str]:
    """Of `video_ids`, those with no row in the manifest yet, or whose rows are in a missing or damaged part:
    what the next `featx extract` of them would do."""
    root = store_path(root)
    manifest = read_manifest(root)
    latest = latest_rows(manifest)
    problems = quick_check(root, manifest, read_footers=True)
    lost = set(latest[latest["part"].isin(list(problems.missing) + list(problems.damaged))]["video_id"])
    return (set(video_ids) - set(latest["video_id"])) | (lost & set(video_ids))


def _dataset(root) -> ds.Dataset:
    """The store's parts, once the manifest and the parts present agree (store_check)."""
    require_store(root)
    refuse_problems(root, quick_check(root, read_manifest(root), read_footers=True))  # footers: configs, row counts
    parts = sorted(root.glob(PART_GLOB))
    if not parts:
        raise FeatxError(f"{root} has no feature rows yet (every video failed, or none was extracted)")
    return location.dataset(parts)


def _read(root, columns, video_ids) -> pa.Table:
    """Rows of the store; a part that fails to read (truncated, a failed page checksum) is one error line."""
    try:
        return _dataset(root).to_table(columns=columns, filter=_filter(video_ids))
    except (OSError, pa.ArrowException) as exc:
        raise FeatxError(
            f"{root}: a part cannot be read ({str(exc).splitlines()[0][:200]}); `featx info --verify {root}` names "
            "it, `featx info --repair` sets it aside so that `featx extract` redoes its videos"
        ) from None


def _filter(video_ids):
    return None if video_ids is None else pc.field("video_id").isin(list(video_ids))


def load_features(root: str | Path, columns: list[str] | None = None, video_ids=None) -> pd.DataFrame:
    """The store's rows as a pandas DataFrame (the `feature` column holds one numpy array per row)."""
    return _read(store_path(root), columns, video_ids).to_pandas()


def load_sequences(
    root: str | Path, video_ids=None, column: str = "feature", cache: bool = True
) -> dict[str, np.ndarray]:
    """{video_id: (T, D) array of features in step order} for every (or the given) video, sorted by id.
    column: "feature", or "flow_feature" in a two-stream store. With `cache` (local stores), reads come from
    the store's read cache while its parts are unchanged, and a full read from the parts writes that cache
    (featx.feature_cache: memory speed instead of Parquet decoding, at the cost of a second copy on disk)."""
    root = store_path(root)
    if not cache or location.is_remote(root):
        return _sequences_from_parts(root, video_ids, column)[0]
    before = feature_cache.fingerprint(root, PART_GLOB, MANIFEST_DIR)
    try:
        cached = feature_cache.read(root, column, before, video_ids)
    except feature_cache.CacheDamaged as exc:
        warnings.warn(f"{exc}; reading the parts and rebuilding the cache", stacklevel=2)
        cached = None
    if cached is not None:
        return cached
    sequences, values, spans = _sequences_from_parts(root, video_ids, column)
    if video_ids is None and values is not None:
        try:
            feature_cache.write(root, column, before, values, spans)
        except OSError as exc:  # a read-only or full disk: reads stay correct, only slower
            warnings.warn(f"{root}: no read cache ({exc.strerror or exc}); reads decode the parts", stacklevel=2)
    return sequences


def _sequences_from_parts(root, video_ids, column):
    """(load_sequences' dict, the (N, D) values its arrays are views of, {video_id: (start, end) rows})."""
    table = _read(root, ["video_id", "step", column], video_ids)
    if table.num_rows == 0:
        return {}, None, {}
    ids = table.column("video_id").to_numpy(zero_copy_only=False)
    steps = table.column("step").to_numpy()
    if not _grouped_in_step_order(ids, steps):  # never for stores featx wrote; sorting copies every feature
        order = pc.sort_indices(table, [("video_id", "ascending"), ("step", "ascending")])
        table = table.take(order)
        ids, steps = ids[order.to_numpy()], steps[order.to_numpy()]
    feature = table.column(column).combine_chunks()
    values = feature.values.to_numpy(zero_copy_only=False).reshape(-1, feature.type.list_size)  # (N, D)
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    spans = {ids[s]: (int(s), int(e)) for s, e in zip(np.r_[0, cuts], np.r_[cuts, len(ids)])}
    return {vid: values[s:e] for vid, (s, e) in sorted(spans.items())}, values, spans


def _grouped_in_step_order(ids: np.ndarray, steps: np.ndarray) -> bool:
    """Whether each video's rows are one contiguous run with steps 0, 1, 2, ... (how parts are written)."""
    new = np.r_[True, ids[1:] != ids[:-1]]
    if len(set(ids[new])) != int(new.sum()):  # a video in two runs
        return False
    expected = np.arange(len(steps)) - np.maximum.accumulate(np.where(new, np.arange(len(steps)), 0))
    return bool(np.array_equal(steps, expected))


def small_enough_to_read(root, size: int | None = None) -> bool:
    """Whether opening the store reads every page of its parts: a local store of at most READ_PAGES_BELOW bytes
    (a fraction of a second); a larger or remote one is trusted by its footers (`featx info --verify` reads all)."""
    if location.is_remote(root):
        return False
    size = sum(p.stat().st_size for p in root.glob(PART_GLOB)) if size is None else size
    return size <= READ_PAGES_BELOW


def store_info(root: str | Path) -> dict:
    """A summary of a store: config, parts, rows, videos ok / failed (with reasons), and problems: missing or
    damaged parts and videos written twice (featx.store.check; every page of a small store, see
    small_enough_to_read, else footers only: `verify_store` reads all)."""
    root = store_path(root)
    require_store(root)
    parts = sorted(root.glob(PART_GLOB))
    manifest = read_manifest(root)
    latest = latest_rows(manifest)
    size = sum(p.stat().st_size for p in parts)
    pages_read = small_enough_to_read(root, size)
    if pages_read:  # a small store costs a fraction of a second to read whole: damage shows without --verify
        from featx.store.check import verify_store

        problems = verify_store(root)
    else:
        problems = quick_check(root, manifest, read_footers=True)
    rows = sum(location.parquet_metadata(p).num_rows for p in parts if p.name not in problems.damaged)
    failed = latest[latest["status"] == "error"]
    config = read_config(root)
    return {
        "store": str(root),
        "config": config.to_dict() if config else None,
        "feature_dim": config.feature_dim if config else None,
        "dtype": config.dtype if config else None,
        "parts": len(parts),
        "bytes": size,
        "pages_read": pages_read,  # every page read and its checksum verified (else footers only)
        "rows": rows,
        "videos_ok": int((latest["status"] == "ok").sum()),
        "videos_failed": len(failed),
        "failed": failed[["video_id", "path", "error"]].to_dict("records"),
        "shards": {
            str(shard): {"ok": int((group.status == "ok").sum()), "failed": int((group.status == "error").sum())}
            for shard, group in latest.groupby(latest["shard"].fillna("-"))
        } if "shard" in latest.columns else {},
        "problems": problems.lines(),
    }
