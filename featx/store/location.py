"""Where a store lives: a local directory, or a path on any pyarrow filesystem given as a URI
(`s3://bucket/store`, `gs://bucket/store`, `hdfs://host/store`, `file:///abs/store`).

`store_path(root)` returns a `pathlib.Path` for local paths and a `RemotePath` otherwise; RemotePath offers the
few Path operations the store uses, on top of `pyarrow.fs`. The Parquet helpers below take either.

Committing differs: locally a file is written under a hidden temp name and renamed into place; on object
stores a file is written straight to its final name, because an object appears only when its upload
completes (S3, GCS: whole-object writes are atomic), and object stores have no rename.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from featx.errors import FeatxError, exception_line


@dataclass(frozen=True)
class _Stat:
    st_size: int


class RemotePath:
    """A path on a pyarrow filesystem, with the pathlib.Path operations the store needs."""

    def __init__(self, fs, path: str, uri: str):
        self.fs, self.path, self.uri = fs, path.rstrip("/"), uri.rstrip("/")

    def __truediv__(self, name: str) -> "RemotePath":
        return RemotePath(self.fs, f"{self.path}/{name}", f"{self.uri}/{name}")

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"RemotePath({self.uri!r})"

    def __lt__(self, other: "RemotePath") -> bool:
        return self.path < other.path

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and (self.fs, self.path) == (other.fs, other.path)

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def _info(self):
        return self.fs.get_file_info(self.path)

    def exists(self) -> bool:
        from pyarrow.fs import FileType

        return self._info().type != FileType.NotFound

    def is_dir(self) -> bool:
        from pyarrow.fs import FileType

        return self._info().type == FileType.Directory

    def iterdir(self):
        from pyarrow.fs import FileSelector

        for info in self.fs.get_file_info(FileSelector(self.path, allow_not_found=True)):
            yield self / info.base_name

    def glob(self, pattern: str):
        return [p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern)]

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.fs.create_dir(self.path, recursive=parents)

    def stat(self) -> _Stat:
        return _Stat(self._info().size or 0)

    def unlink(self, missing_ok: bool = False) -> None:
        if missing_ok and not self.exists():
            return
        self.fs.delete_file(self.path)


def store_path(root) -> Path | RemotePath:
    """A local Path, or a RemotePath for a URI with a scheme (s3://, gs://, hdfs://, file://...)."""
    if isinstance(root, (Path, RemotePath)):
        return root
    text = os.fspath(root) if isinstance(root, os.PathLike) else str(root)  # a featx.Store gives its path
    if "://" not in text:
        return Path(text)
    from pyarrow.fs import FileSystem

    scheme = text.partition("://")[0].lower()
    if scheme == "file" and not text[len("file://"):].startswith("/"):
        raise FeatxError(f"{text}: a file:// URI takes an absolute path (file:///data/store); or give the path itself")
    try:
        fs, path = FileSystem.from_uri(text)
    except (pa.ArrowException, ValueError) as exc:
        known = "s3://, gs://, hdfs://, abfs:// or file:///absolute/path"
        raise FeatxError(f"{text}: not a store location featx can open ({exception_line(exc)}); "
                         f"use a local path or {known}") from None
    return RemotePath(fs, path, text)


def is_remote(path) -> bool:
    return isinstance(path, RemotePath)


def read_schema(path):
    return pq.read_schema(path.path, filesystem=path.fs) if is_remote(path) else pq.read_schema(path)


def parquet_metadata(path):
    if is_remote(path):
        with path.fs.open_input_file(path.path) as f:
            return pq.ParquetFile(f).metadata
    return pq.ParquetFile(path).metadata


# Every Parquet file featx writes carries page checksums (CRC32), and every read verifies them: a flipped
# byte in a part is an error, never silently different numbers. Files without checksums read as before.
CHECKSUMS = {"write_page_checksum": True}
VERIFY = {"page_checksum_verification": True}


def read_table(path):
    if is_remote(path):
        return pq.read_table(path.path, filesystem=path.fs, **VERIFY)
    return pq.read_table(path, **VERIFY)


def write_table(table, path, **options) -> None:
    options = {**CHECKSUMS, **options}
    if is_remote(path):
        pq.write_table(table, path.path, filesystem=path.fs, **options)
    else:
        pq.write_table(table, path, **options)


def parquet_writer(path, schema, **options):
    options = {**CHECKSUMS, **options}
    if is_remote(path):
        return pq.ParquetWriter(path.path, schema, filesystem=path.fs, **options)
    return pq.ParquetWriter(path, schema, **options)


def dataset(paths: list) -> ds.Dataset:
    checked = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(**VERIFY))
    if paths and is_remote(paths[0]):
        return ds.dataset([p.path for p in paths], filesystem=paths[0].fs, format=checked)
    return ds.dataset([str(p) for p in paths], format=checked)


def tmp_path(final: Path) -> Path:
    """The hidden name a local file is written under before its rename into place."""
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def is_tmp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")


def write_atomic(table, final, **options) -> None:
    """Write `table` to `final` so that readers see the whole file or nothing."""
    if is_remote(final):  # an object appears whole when its upload completes
        write_table(table, final, **options)
        return
    tmp = tmp_path(final)
    write_table(table, tmp, **options)
    os.replace(tmp, final)
