"""The Parquet feature store: the contract between extraction and everything downstream.

Layout of a store directory (see README, "The store"):
    part-<run>-<seq>.parquet          feature rows, one row per (video, step); many whole videos per part
    _videos/<run>-<seq>.parquet       manifest fragment: one row per video attempted in that flush
    .<name>.<pid>.tmp                 files being written (readers never see them)

A flush commits by renaming the finished part into place: that rename is the one moment its videos become
visible. The part's own metadata repeats its manifest rows, so a fragment lost to a crash between the two
renames is rebuilt from the part on the next open. Plain Parquet I/O only: no torch, no decoding.
"""

from __future__ import annotations

import json
import os
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from featx import feature_cache, location
from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.lease import LEASE_DIR, WriterLease
from featx.location import store_path
from featx.store_check import DAMAGED_DIR, quick_check, read_every_page, refuse_problems, repair_store

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


def _tmp_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def _is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _manifest_table(rows: list[dict], config_json: str) -> pa.Table:
    table = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    return table.replace_schema_metadata({CONFIG_KEY: config_json.encode()})


def _write_atomic(table: pa.Table, final, **options) -> None:
    if location.is_remote(final):  # an object appears whole when its upload completes
        location.write_table(table, final, **options)
        return
    tmp = _tmp_path(final)
    location.write_table(table, tmp, **options)
    os.replace(tmp, final)


class StoreWriter:
    """Appends whole videos to a store; commits them in parts of about `part_mb` MB.

    Opening takes the writer's lease (featx.lease: a second writer of the same videos is refused), checks
    that the store's extraction config matches `config` (refusing with the differences), rebuilds manifest
    fragments lost in a crash, removes temp files of dead writers and repairs what featx.store_check finds
    (missing or damaged parts: their videos are redone; second copies of a video: removed). `repairs` says
    what was repaired, one line each.
    """

    def __init__(
        self,
        root: str | Path,
        config: ExtractConfig,
        part_mb: float = 64,
        row_group_mb: float = 8,
        flush_seconds: float = 120,
        shard: str | None = None,  # "i/N", recorded in every manifest row this writer adds
    ):
        if not config.resolved:
            raise ValueError("StoreWriter needs a resolved config (load the backbone first)")
        self.root = store_path(root)
        self.config = config
        self._config_json = config.to_json()
        self._part_bytes = part_mb * 2**20
        self._row_group_bytes = row_group_mb * 2**20
        self._flush_seconds = flush_seconds
        self._shard = shard
        self._schema = feature_schema(
            config.feature_dim, config.dtype, self._config_json, config.clips, config.stream == "both"
        )
        # names sort in time order (microseconds), and never clash between concurrent writers (random suffix)
        self._run = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:6]}"
        self._seq = 0
        self._lease = None
        try:
            self._open_store()
        except BaseException:
            self._release()
            raise
        self._reset()

    # -- opening ---------------------------------------------------------------------------------------
    def _open_store(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise FeatxError(f"--out {self.root} exists and is not a directory")
        if not location.is_remote(self.root):
            outer = next((p for p in self.root.absolute().parents if (p / MANIFEST_DIR).is_dir()), None)
            if outer is not None:
                raise FeatxError(f"--out {self.root} is inside the store {outer}; readers of that store would see it")
        existing = read_config(self.root) if self.root.exists() else None
        ours = {MANIFEST_DIR, LEASE_DIR, DAMAGED_DIR, feature_cache.CACHE_DIR}
        foreign = [p for p in self.root.iterdir() if p.name not in ours and not _is_tmp(p)] if self.root.exists() else []
        if existing is None and foreign:
            raise FeatxError(f"--out {self.root} is a non-empty folder but not a featx store; choose a new folder")
        if existing is not None:
            diff = existing.differences(self.config)
            if diff:
                raise FeatxError(
                    f"{self.root} was extracted with a different config ({'; '.join(diff)}); "
                    "use another --out or the store's settings"
                )
        try:
            (self.root / MANIFEST_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FeatxError(f"--out {self.root}: cannot create the store ({exc.strerror or exc})") from None
        if not location.is_remote(self.root):  # object stores have no locks (see featx.lease)
            shard = tuple(int(x) for x in self._shard.split("/")) if self._shard else None
            self._lease = WriterLease(self.root, shard).acquire()
        _remove_dead_tmp_files(self.root)
        repair_manifest(self.root)
        problems = quick_check(self.root, read_manifest(self.root), read_footers=True)
        self.pages_read = small_enough_to_read(self.root)
        if self.pages_read:  # a flipped byte in a page is found now, and its videos redone, not trusted
            read_every_page(self.root, problems)
        self.repairs = repair_store(self.root, problems)
        self.ok_ids = ok_video_ids(self.root)

    # -- writing ---------------------------------------------------------------------------------------
    def _reset(self) -> None:
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_bytes = 0
        self._part_written = 0
        self._records: list[dict] = []
        self._first_at: float | None = None

    @property
    def _name(self) -> str:
        return f"{self._run}-{self._seq:05d}"

    def table(self, video_id: str, t_start, t_end, frame_start, frame_end, features, flow_features=None) -> pa.Table:
        return video_table(self._schema, video_id, t_start, t_end, frame_start, frame_end, features, flow_features)

    def add_video(self, record: dict, table: pa.Table) -> None:
        """Queue one whole video's rows with its manifest record (status ok)."""
        self._first_at = self._first_at or time.monotonic()
        self._pending.append(table)
        self._pending_bytes += table.nbytes
        self._records.append({**record, "status": "ok", "rows": table.num_rows, "part": self._part_name, "shard": self._shard})
        if self._pending_bytes >= self._row_group_bytes:
            self._write_pending()
        self._maybe_flush()

    def add_error(self, record: dict) -> None:
        self._first_at = self._first_at or time.monotonic()
        self._records.append({**record, "status": "error", "rows": 0, "part": None, "shard": self._shard})
        self._maybe_flush()

    @property
    def _part_name(self) -> str:
        return f"part-{self._name}.parquet"

    def _write_pending(self) -> None:
        if not self._pending:
            return
        if self._writer is None:
            # No dictionary encoding for the features: float16 values are 2-byte fixed-length byte arrays
            # in Parquet, and decoding them through a dictionary made reading 5.7x slower (bench/read.py).
            final = self.root / self._part_name
            target = final if location.is_remote(final) else _tmp_path(final)
            self._writer = location.parquet_writer(target, self._schema, use_dictionary=["video_id"])
        self._writer.write_table(pa.concat_tables(self._pending))
        self._part_written += self._pending_bytes
        self._pending, self._pending_bytes = [], 0

    def _maybe_flush(self) -> None:
        too_big = self._part_written + self._pending_bytes >= self._part_bytes
        too_old = self._first_at is not None and time.monotonic() - self._first_at >= self._flush_seconds
        if too_big or too_old:
            self.flush()

    def flush(self) -> None:
        """Commit everything queued: the part (one rename), then its manifest fragment."""
        if not self._records:
            return
        self._write_pending()
        if self._writer is not None:
            ok = [r for r in self._records if r["status"] == "ok"]
            self._writer.add_key_value_metadata({PART_VIDEOS_KEY: json.dumps(ok)})
            self._writer.close()  # on an object store this completes the upload: the part appears now
            if not location.is_remote(self.root):
                os.replace(_tmp_path(self.root / self._part_name), self.root / self._part_name)
                feature_cache.clear(self.root)  # stale now (readers would see that too): free its disk early
        fragment = self.root / MANIFEST_DIR / f"{self._name}.parquet"
        _write_atomic(_manifest_table(self._records, self._config_json), fragment)
        self._seq += 1
        self._reset()

    def close(self) -> None:
        """Commit what is queued; if that fails (a full disk), drop it, leaving nothing half-written."""
        try:
            self.flush()
        except BaseException:
            self._abandon()
            raise
        finally:
            self._release()

    def _release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:  # commit the videos finished before an error (or Ctrl-C)
            self.close()
        except Exception:
            if exc_type is None:
                raise
            # committing failed too: the first error is the one to report

    def _abandon(self) -> None:
        """Drop what is not committed: the part being written and its temp file (its videos are redone)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:
                pass
            if not location.is_remote(self.root):
                _tmp_path(self.root / self._part_name).unlink(missing_ok=True)
        self._reset()
        self._release()


def _remove_dead_tmp_files(root) -> None:
    if location.is_remote(root):  # nothing is written under temp names there
        return
    for tmp in list(root.glob(".*.tmp")) + list((root / MANIFEST_DIR).glob(".*.tmp")):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():
            tmp.unlink(missing_ok=True)


def _readable_table(path) -> pa.Table | None:
    try:
        return location.read_table(path)
    except (OSError, pa.ArrowException):
        return None


def _orphan_parts(root):
    """(fragment path, manifest table from the part's footer) for each committed part whose fragment is
    missing (a writer stopped between the two renames of a flush) or unreadable. Parts that cannot be read
    themselves are left to featx.store_check."""
    for part in sorted(root.glob(PART_GLOB)):
        fragment = root / MANIFEST_DIR / part.name.removeprefix("part-")
        if fragment.exists() and _readable_table(fragment) is not None:
            continue
        try:
            meta = location.parquet_metadata(part).metadata or {}
        except (OSError, pa.ArrowException):
            continue
        rows = [{**r, "part": part.name} for r in json.loads(meta.get(PART_VIDEOS_KEY, b"[]"))]  # even if renamed
        yield fragment, _manifest_table(rows, meta.get(CONFIG_KEY, b"{}").decode())


def repair_manifest(root) -> list[str]:
    """Write the missing manifest fragment of every committed part that lacks one. Returns them."""
    repaired = []
    for fragment, table in _orphan_parts(root):
        _write_atomic(table, fragment)
        repaired.append(fragment.name)
    return repaired


# -- reading -------------------------------------------------------------------------------------------
def refuse_output_in_store(path: str | Path, option: str = "--out", folder: bool = False) -> None:
    """Before any work: refuse to write a file or folder into a store (or over one), where readers would take
    it for store data, or under a folder that does not exist or a file; with `folder`, refuse an existing
    file where the folder should be."""
    path = Path(path).absolute()
    if folder and path.exists() and not path.is_dir():
        raise FeatxError(f"{option} {path} is a file; give a folder")
    for place in [path, *path.parents]:
        if place.is_dir() and (place / MANIFEST_DIR).is_dir():
            raise FeatxError(f"{option} {path} is inside the store {place}; write it elsewhere")
    existing = next(place for place in path.parents if place.exists())
    if not existing.is_dir():
        raise FeatxError(f"{option} {path}: {existing} is a file, not a folder")
    if existing != path.parent and path.suffix:  # a file's folder is not made for it
        raise FeatxError(f"{option} {path}: the folder {path.parent} does not exist")
    if not os.access(existing, os.W_OK):
        raise FeatxError(f"{option} {path}: cannot write in {existing} (permission denied or read-only)")


def _require_store(root) -> None:
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


def read_manifest(root: str | Path) -> pd.DataFrame:
    """Every manifest row ever written (a video retried after an error has several), oldest first. Rows of a
    part whose fragment a crash left unwritten come from the part itself, so the manifest always agrees
    with the feature rows, even before the next run repairs the store."""
    root = store_path(root)
    fragments = [_readable_table(p) for p in sorted((root / MANIFEST_DIR).glob("*.parquet"))]
    frames = [table.to_pandas() for table in fragments if table is not None]  # unreadable: rebuilt below
    frames += [table.to_pandas() for _, table in _orphan_parts(root)]
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
    _require_store(root)
    refuse_problems(root, quick_check(root, read_manifest(root)))
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
    damaged parts and videos written twice (featx.store_check; every page of a small store, see
    small_enough_to_read, else footers only: `verify_store` reads all)."""
    root = store_path(root)
    _require_store(root)
    parts = sorted(root.glob(PART_GLOB))
    manifest = read_manifest(root)
    latest = latest_rows(manifest)
    size = sum(p.stat().st_size for p in parts)
    pages_read = small_enough_to_read(root, size)
    if pages_read:  # a small store costs a fraction of a second to read whole: damage shows without --verify
        from featx.store_check import verify_store

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
