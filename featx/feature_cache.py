"""A read cache of a store's feature matrix: `load_sequences` at memory speed on the second read.

Decoding Parquet is the limit of a read (float16 values are 2-byte fixed-length byte arrays, decoded one by one
behind CRC page checks, after the manifest check): 1M x 512 float16 rows read at 0.02x `np.load` (bench/read.py).
So the first full read of a local store also writes what it read, as it came out, beside the parts:

    _cache/<column>-<token>.npy   (N, D) feature values, each video's rows contiguous and in step order
    _cache/<column>.json          the fingerprint of the files they were read from, the .npy's name and, per
                                  video: id, first row, rows, digest

Later reads whose fingerprint still matches copy each video's rows out of the memory-mapped .npy and check them
against their digest (a flipped byte is an error, never other numbers). The fingerprint is every part's and manifest
fragment's (name, size, mtime, inode): any writer (this featx or an older one, a repair, a copy by hand) that
adds, replaces or removes a part changes it, and the next full read rebuilds the cache; the manifest check the
parts passed when the cache was built holds as long as they are unchanged. The folder starts with "_", so
pandas, pyarrow and DuckDB's `part-*.parquet` never see it; deleting it is always safe. Plain file I/O only.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np

CACHE_DIR = "_cache"
CACHE_VERSION = 1  # of the files above; a cache of another version is rebuilt

try:  # ~10 GB/s, so checking a cache stays a fraction of reading it; zlib's CRC32 (~1.5 GB/s) otherwise
    import xxhash

    DIGEST = "xxh3_64"

    def _digest(values: np.ndarray) -> int:
        return xxhash.xxh3_64_intdigest(memoryview(values).cast("B"))

except ImportError:  # pragma: no cover - xxhash is a dependency; an install without it still reads
    DIGEST = "crc32"

    def _digest(values: np.ndarray) -> int:
        return zlib.crc32(memoryview(values).cast("B"))


def fingerprint(root: Path, part_glob: str, manifest_dir: str) -> str:
    """A digest of what a read depends on: each part and manifest fragment's name, size, mtime and inode."""
    files = sorted(root.glob(part_glob)) + sorted((root / manifest_dir).glob("*.parquet"))
    entries = []
    for path in files:
        try:
            st = path.stat()
        except FileNotFoundError:  # removed while listing: the next read sees the new state
            continue
        entries.append(f"{path.parent.name}/{path.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


class CacheDamaged(ValueError):
    """A video's cached rows fail their digest: read the parts instead, and rebuild."""


def _index_path(root: Path, column: str) -> Path:
    return root / CACHE_DIR / f"{column}.json"


def _index(root: Path, column: str, print_: str) -> dict | None:
    """The cache's index when it belongs to `print_` (the store's current fingerprint), else None."""
    try:
        index = json.loads(_index_path(root, column).read_text())
    except (OSError, ValueError):
        return None
    same = index.get("version") == CACHE_VERSION and index.get("digest") == DIGEST
    return index if same and index.get("fingerprint") == print_ else None


def read(root: Path, column: str, print_: str, video_ids=None) -> dict[str, np.ndarray] | None:
    """{video_id: (T, D)} from the cache, sorted by id, or None when there is no cache for this fingerprint.
    Raises CacheDamaged naming the video whose rows fail their digest."""
    index = _index(root, column, print_)
    if index is None:
        return None
    values_path = root / CACHE_DIR / index["file"]
    try:
        matrix = np.load(values_path, mmap_mode="r")  # (N, D)
    except (OSError, ValueError):
        return None
    if list(matrix.shape) != index["shape"] or str(matrix.dtype) != index["dtype"]:
        return None
    wanted = None if video_ids is None else set(video_ids)
    out = {}
    for vid, start, rows, digest in zip(index["ids"], index["starts"], index["rows"], index["digests"]):
        if wanted is not None and vid not in wanted:
            continue
        values = np.array(matrix[start : start + rows])  # (T, D), a copy: the file may be replaced later
        if _digest(values) != digest:
            raise CacheDamaged(f"{values_path}: the rows of {vid!r} fail their {DIGEST} digest")
        out[vid] = values
    return out


def write(root: Path, column: str, print_: str, values: np.ndarray, spans: dict[str, tuple[int, int]]) -> None:
    """Cache `values` (N, D), of which video v holds rows spans[v] = (start, end), under fingerprint `print_`.
    The .npy (a new name each time) goes first and the index naming it last, each under a temp name renamed
    into place: a reader sees the old cache or the whole new one, whatever other readers write at the same
    time. Raises OSError (a read-only store, a full disk) with nothing left behind."""
    values = np.ascontiguousarray(values)
    folder, index_path = root / CACHE_DIR, _index_path(root, column)
    values_path = folder / f"{column}-{os.getpid()}-{os.urandom(4).hex()}.npy"
    ids = sorted(spans)
    index = {
        "version": CACHE_VERSION, "fingerprint": print_, "digest": DIGEST, "column": column, "file": values_path.name,
        "shape": list(values.shape), "dtype": str(values.dtype), "ids": ids,
        "starts": [int(spans[v][0]) for v in ids], "rows": [int(spans[v][1] - spans[v][0]) for v in ids],
        "digests": [_digest(values[spans[v][0] : spans[v][1]]) for v in ids],
    }
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{values_path.name}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.save(f, values)
        os.replace(tmp, values_path)
        tmp = folder / f".{index_path.name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(index))
        os.replace(tmp, index_path)
    except BaseException:
        values_path.unlink(missing_ok=True)
        raise
    finally:
        tmp.unlink(missing_ok=True)
    for old in folder.glob(f"{column}-*.npy"):  # earlier caches of this column (a reader may still map one)
        if old != values_path:
            old.unlink(missing_ok=True)


def clear(root: Path) -> None:
    """Remove the cache (a writer changed the parts; the next full read rebuilds it). Missing is fine."""
    folder = root / CACHE_DIR
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # a reader wrote a new file meanwhile: it carries its own fingerprint
        pass
