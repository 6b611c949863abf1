"""A store's config and manifest as its files say them: the layer every reader, writer and check stands on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.store import location
from featx.store.format import CONFIG_KEY, MANIFEST_DIR, MANIFEST_SCHEMA, PART_GLOB, PART_VIDEOS_KEY, manifest_table
from featx.store.location import store_path


def require_store(root) -> None:
    """One error line unless `root` (a store_path) holds a store."""
    if not root.is_dir() or not (any(root.glob(PART_GLOB)) or (root / MANIFEST_DIR).is_dir()):
        raise FeatxError(f"{root} is not a featx store (no part-*.parquet files or {MANIFEST_DIR}/ folder)")


def read_config(root: str | Path) -> ExtractConfig | None:
    """The extraction config a store was written with (None for a new, empty directory). Files that cannot
    be read are passed over here (store_check reports them)."""
    root = store_path(root)
    for path in sorted(root.glob(PART_GLOB)) + sorted((root / MANIFEST_DIR).glob("*.parquet")):
        try:
            meta = location.read_schema(path).metadata or {}
        except (OSError, pa.ArrowException):
            continue
        if CONFIG_KEY in meta:
            return ExtractConfig.from_json(meta[CONFIG_KEY].decode())
    return None


MANIFEST_CORE = ("path", "video_id", "status", "rows", "part", "finished_at")  # in every fragment ever written


def is_fragment(table: pa.Table | None) -> bool:
    """Whether a table read from `_videos/` is a manifest fragment (and not a file someone put there)."""
    return table is not None and set(MANIFEST_CORE) <= set(table.column_names)


def read_manifest(root: str | Path) -> pd.DataFrame:
    """Every manifest row ever written (a video retried after an error has several), oldest first. Rows of a
    part whose fragment a crash left unwritten come from the part itself, so the manifest always agrees
    with the feature rows, even before the next run repairs the store."""
    root = store_path(root)
    fragments = [readable_table(p) for p in sorted((root / MANIFEST_DIR).glob("*.parquet"))]
    frames = [table.to_pandas() for table in fragments if is_fragment(table)]  # unreadable: rebuilt below
    frames += [table.to_pandas() for _, table in orphan_parts(root)]
    if not frames:
        return MANIFEST_SCHEMA.empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True).sort_values("finished_at", kind="stable", ignore_index=True)


def latest_manifest(root: str | Path) -> pd.DataFrame:
    """One row per video: its most recent attempt, so a video that failed once and then worked is ok."""
    return latest_rows(read_manifest(root))


def latest_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """latest_manifest of a manifest already read (read_manifest sorts it oldest first)."""
    return manifest.drop_duplicates("video_id", keep="last").reset_index(drop=True)


def ok_video_ids(root: str | Path) -> set[str]:
    """The videos whose latest attempt is ok: those with feature rows."""
    latest = latest_manifest(root)
    return set(latest.loc[latest["status"] == "ok", "video_id"])


def readable_table(path) -> pa.Table | None:
    try:
        return location.read_table(path)
    except (OSError, pa.ArrowException):
        return None


def orphan_parts(root):
    """(fragment path, manifest table from the part's footer) for each committed part whose fragment is
    missing (a writer stopped between the two renames of a flush) or unreadable. Parts that cannot be read
    themselves are left to featx.store.check."""
    for part in sorted(root.glob(PART_GLOB)):
        fragment = root / MANIFEST_DIR / part.name.removeprefix("part-")
        if fragment.exists() and readable_table(fragment) is not None:
            continue
        try:
            meta = location.parquet_metadata(part).metadata or {}
        except (OSError, pa.ArrowException):
            continue
        rows = [{**r, "part": part.name} for r in json.loads(meta.get(PART_VIDEOS_KEY, b"[]"))]  # even if renamed
        yield fragment, manifest_table(rows, meta.get(CONFIG_KEY, b"{}").decode())


def repair_manifest(root) -> list[str]:
    """Write the missing manifest fragment of every committed part that lacks one. Returns them."""
    repaired = []
    for fragment, table in orphan_parts(root):
        location.write_atomic(table, fragment)
        repaired.append(fragment.name)
    return repaired
