"""What a store is on disk: its file names, the feature and manifest schemas, and the metadata keys.

Layout of a store directory (see docs/store.md):
    part-<run>-<seq>.parquet          feature rows, one row per (video, step); many whole videos per part
    _videos/<run>-<seq>.parquet       manifest fragment: one row per video attempted in that flush
    .<name>.<pid>.tmp                 files being written (readers never see them)
    _damaged/                         parts and stray files set aside by a repair (never deleted)
    _leases/                          the writers' locks (featx.store.lease)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

CONFIG_KEY = b"featx"
PART_VIDEOS_KEY = b"featx.videos"
MANIFEST_DIR = "_videos"
PART_GLOB = "part-*.parquet"
# `featx info` and a writer opening a store read every page (checksums verified) of a store up to this size;
# above it, parts are trusted by their footers.
READ_PAGES_BELOW = 256 * 2**20

MANIFEST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("video_id", pa.string()),
        ("status", pa.string()),  # "ok" or "error"
        ("error", pa.string()),  # why, for status "error"
        ("fps", pa.float64()),
        ("frames", pa.int64()),  # frames decoded (declared count when decoding failed)
        ("duration", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("rows", pa.int64()),  # feature rows written
        ("part", pa.string()),  # the part file holding the rows
        ("seconds", pa.float64()),  # wall time spent on this video
        ("finished_at", pa.float64()),  # unix time; the latest row of a video is its current status
        ("shard", pa.string()),  # "i/N" when written by `featx extract --shard i/N`, else null
    ]
)


def feature_schema(dim: int, dtype: str, config_json: str, clips: bool = False, flow: bool = False) -> pa.Schema:
    """Feature rows; clip stores (clip backbones) add `t_center`, the middle of the clip's time span; two-stream
    stores (--stream both) add `flow_feature` beside `feature` (RGB)."""
    value = pa.float16() if dtype == "float16" else pa.float32()
    times = [("t_start", pa.float64()), ("t_end", pa.float64())] + ([("t_center", pa.float64())] if clips else [])
    return pa.schema(
        [
            ("video_id", pa.string()),
            ("step", pa.int32()),
            *times,
            ("frame_start", pa.int64()),
            ("frame_end", pa.int64()),
            ("feature", pa.list_(value, dim)),
            *([("flow_feature", pa.list_(value, dim))] if flow else []),
        ],
        metadata={CONFIG_KEY: config_json.encode()},
    )


def video_table(
    schema: pa.Schema, video_id: str, t_start, t_end, frame_start, frame_end, features, flow_features=None
) -> pa.Table:
    """One video's rows. `features` (and `flow_features`, two-stream stores) are (T, D); times in seconds;
    frame ranges [start, end)."""
    n, dim = features.shape
    value_type = schema.field("feature").type.value_type

    def vectors(array):
        values = pa.array(np.ascontiguousarray(array, dtype=value_type.to_pandas_dtype()).reshape(-1))
        return pa.FixedSizeListArray.from_arrays(values, dim)

    t_start, t_end = np.asarray(t_start, np.float64), np.asarray(t_end, np.float64)
    columns = {
        "video_id": pa.array([video_id] * n, pa.string()),
        "step": pa.array(np.arange(n, dtype=np.int32)),
        "t_start": pa.array(t_start),
        "t_end": pa.array(t_end),
        "t_center": pa.array((t_start + t_end) / 2),
        "frame_start": pa.array(np.asarray(frame_start, np.int64)),
        "frame_end": pa.array(np.asarray(frame_end, np.int64)),
        "feature": vectors(features),
        "flow_feature": vectors(flow_features) if flow_features is not None else None,
    }
    return pa.table([columns[name] for name in schema.names], schema=schema)


def manifest_table(rows: list[dict], config_json: str) -> pa.Table:
    """Manifest rows (MANIFEST_SCHEMA) carrying the store's config in their metadata."""
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    return table.replace_schema_metadata({CONFIG_KEY: config_json.encode()})
