"""Writer leases: at most one `featx extract` writes a given video into a store at a time.

Every writer of a local store holds a lease: a small file in `_leases/` that it keeps locked with `flock` for
as long as it runs. The kernel drops the lock when the process dies (kill -9 included), so a dead writer's
lease never blocks anyone; the next writer deletes it. Leases are taken one writer at a time under a
registry lock, so two writers starting together cannot both miss each other.

Two writers conflict when they could write the same video: either one writes the whole store (no --shard),
both write the same shard, or their shard counts differ (shard 0/2 and shard 0/3 share videos). Shards
i/N and j/N with i != j are disjoint and run side by side.

Object stores (s3://, gs://) have no locks: there, run at most one writer per shard yourself; readers and
`featx info` still detect any video written twice (featx.store.check).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import uuid
from pathlib import Path

from featx.errors import FeatxError

LEASE_DIR = "_leases"


def conflicts(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    """Whether writers of shards a and b (None: the whole store) could write the same video."""
    if a is None or b is None or a[1] != b[1]:
        return True
    return a[0] == b[0]


def _shard_text(shard: tuple[int, int] | None) -> str:
    return "the whole store" if shard is None else f"shard {shard[0]}/{shard[1]}"


class WriterLease:
    """Held from `acquire()` to `release()` (or the process's end); refuses with one FeatxError line when a
    live writer holds a conflicting lease."""

    def __init__(self, root: Path, shard: tuple[int, int] | None):
        self.folder = Path(root) / LEASE_DIR
        self.shard = shard
        self.path = self.folder / f"writer-{uuid.uuid4().hex}.json"
        self._file = None  # open and locked while held; closed (so unlocked) when garbage collected too

    def acquire(self) -> "WriterLease":
        self.folder.mkdir(parents=True, exist_ok=True)
        registry = os.open(self.folder / ".registry.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(registry, fcntl.LOCK_EX)  # held only while leases are checked and taken
            for holder in self._live_holders():
                if conflicts(self.shard, holder["shard"]):
                    since = time.strftime("%H:%M:%S", time.localtime(holder["started"]))
                    raise FeatxError(
                        f"another featx extract or import (pid {holder['pid']} on {holder['host']}, since {since}) is writing "
                        f"{_shard_text(holder['shard'])} of {self.folder.parent}; writing {_shard_text(self.shard)} "
                        "now could write videos twice: wait for it, or run a different --shard i/N"
                    )
            self._file = open(self.path, "x+b", buffering=0)
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX)
            self._file.write(json.dumps({
                "pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "shard": list(self.shard) if self.shard else None,
            }).encode())
        finally:
            os.close(registry)  # closing releases the registry lock
        return self

    def _live_holders(self):
        """The leases of running writers; the files of dead ones are removed."""
        for path in sorted(self.folder.glob("writer-*.json")):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # locked: its writer is alive
                    yield _read_holder(fd)
                    continue
                path.unlink(missing_ok=True)  # we could lock it: its writer is gone
            finally:
                os.close(fd)

    def release(self) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)
            self._file.close()
            self._file = None


def _read_holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        holder = json.loads(os.read(fd, 4096).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        holder = {}
    shard = holder.get("shard")
    return {
        "pid": holder.get("pid", "?"),
        "host": holder.get("host", "?"),
        "started": holder.get("started", time.time()),
        # a lease being written (no content yet) counts as a whole-store writer: the safe side
        "shard": tuple(shard) if shard else None,
    }


def remove_left_by_dead(parent: Path, pattern: str) -> None:
    """Remove the folders in `parent` matching `pattern`, named `...-<pid>.tmp`, whose process is gone: what
    a featx process killed mid-way (kill -9, SIGTERM) left beside its output."""
    import shutil

    for left in parent.glob(pattern):
        pid = left.name.rsplit("-", 1)[-1].removesuffix(".tmp")
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
