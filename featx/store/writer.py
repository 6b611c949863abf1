"""Writing a store: whole videos appended in parts, each committed by one rename (see featx.store)."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featx.config import ExtractConfig
from featx import feature_cache
from featx.errors import FeatxError
from featx.store import location
from featx.store.check import DAMAGED_DIR, quick_check, read_every_page, repair_store
from featx.store.format import MANIFEST_DIR, PART_VIDEOS_KEY, feature_schema, manifest_table, video_table
from featx.store.lease import LEASE_DIR, WriterLease, pid_alive
from featx.store.location import store_path, tmp_path
from featx.store.manifest import ok_video_ids, read_config, read_manifest, repair_manifest
from featx.store.reader import small_enough_to_read


class StoreWriter:
    """Appends whole videos to a store; commits them in parts of about `part_mb` MB.

    Opening takes the writer's lease (featx.store.lease: a second writer of the same videos is refused), checks
    that the store's extraction config matches `config` (refusing with the differences), rebuilds manifest
    fragments lost in a crash, removes temp files of dead writers and repairs what featx.store.check finds
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
        foreign = [p for p in self.root.iterdir() if p.name not in ours and not location.is_tmp(p)] if self.root.exists() else []
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
        if not location.is_remote(self.root):  # object stores have no locks (see featx.store.lease)
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
            target = final if location.is_remote(final) else tmp_path(final)
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
                os.replace(tmp_path(self.root / self._part_name), self.root / self._part_name)
                feature_cache.clear(self.root)  # stale now (readers would see that too): free its disk early
        fragment = self.root / MANIFEST_DIR / f"{self._name}.parquet"
        location.write_atomic(manifest_table(self._records, self._config_json), fragment)
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
                tmp_path(self.root / self._part_name).unlink(missing_ok=True)
        self._reset()
        self._release()


def _remove_dead_tmp_files(root) -> None:
    if location.is_remote(root):  # nothing is written under temp names there
        return
    for tmp in list(root.glob(".*.tmp")) + list((root / MANIFEST_DIR).glob(".*.tmp")):
        pid = tmp.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or not pid_alive(int(pid)) or int(pid) == os.getpid():
            tmp.unlink(missing_ok=True)


def refuse_output_in_store(path: str | Path, option: str = "--out", folder: bool = False) -> None:
    """Before any work: refuse to write a file or folder into a store (or over one), where readers would take
    it for store data, or under a folder that does not exist or a file; with `folder`, refuse an existing
    file where the folder should be."""
    path = Path(path).absolute()
    if folder and path.exists() and not path.is_dir():
        raise FeatxError(f"{option} {path} is a file; give a folder")
    resolved = path.resolve()  # a symbolic link into a store leads inside it too
    for place in dict.fromkeys([path, *path.parents, resolved, *resolved.parents]):
        if place.is_dir() and (place / MANIFEST_DIR).is_dir():
            raise FeatxError(f"{option} {path} is inside the store {place}; write it elsewhere")
        if place.name == MANIFEST_DIR and (place.parent / MANIFEST_DIR).is_dir():
            raise FeatxError(f"{option} {path} is inside the store {place.parent}; write it elsewhere")
    existing = next(place for place in path.parents if place.exists())
    if not existing.is_dir():
        raise FeatxError(f"{option} {path}: {existing} is a file, not a folder")
    if existing != path.parent and path.suffix:  # a file's folder is not made for it
        raise FeatxError(f"{option} {path}: the folder {path.parent} does not exist")
    if not os.access(existing, os.W_OK):
        raise FeatxError(f"{option} {path}: cannot write in {existing} (permission denied or read-only)")
