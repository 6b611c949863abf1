"""Decoding in worker processes, so the backbone never waits for the decoder.

Workers take videos from a task queue (dynamic assignment: a long video does not hold up the rest) and
send back sampled, resized frame chunks. The consumer sees a stream of events:
    ("frames", i, FrameChunk)     the next sampled frames of video i, in order
    ("done", i, DecodedVideo)     video i decoded to the end
    ("error", i, message, info)   video i failed (info: VideoInfo or None); its earlier frames are void
A worker that dies (a decoder crash) turns its current video into an error and is replaced.

Pixels travel through shared memory, not the results queue: each worker owns a ring of chunk-sized slots,
writes a chunk into its next free slot and sends only the slot's number; the consumer copies the chunk out
and frees the slot at once. Pickling frames through a pipe capped the consumer at about 1,200 frames/s
(224 x 224) on a 16-core machine, a tenth of what a GPU embeds.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from pathlib import Path
from typing import Iterator

import numpy as np

from featx.errors import FeatxError
from featx.video import DecodedVideo, FrameChunk, Preprocess, probe, stream_frames

_POLL_SECONDS = 1.0
_SLOTS = 4  # shared-memory chunk slots per worker: how far a worker may decode ahead of the consumer


def video_events(
    i: int, path: str | Path, fps: float | None, pre: Preprocess | None, chunk: int, threads: int = 0
) -> Iterator[tuple]:
    """The events of one video, decoded in this process. Every failure becomes an error event."""
    try:
        for item in stream_frames(path, fps, pre, chunk, threads):
            if isinstance(item, DecodedVideo):
                yield ("done", i, item)
            else:
                yield ("frames", i, item)
    except FeatxError as exc:
        yield ("error", i, str(exc), _probe_quietly(path))
    except Exception as exc:  # a decoder bug must not stop the dataset; it is recorded in the manifest
        yield ("error", i, f"{type(exc).__name__}: {exc}", _probe_quietly(path))


def _probe_quietly(path):
    try:
        return probe(path)
    except Exception:  # the error event already says why the video failed
        return None


def _put(results, event, parent: int) -> None:
    """Send an event; give up (exit) if the parent died meanwhile, instead of blocking forever."""
    while True:
        try:
            results.put(event, timeout=_POLL_SECONDS)
            return
        except queue.Full:
            if os.getppid() != parent:
                raise SystemExit(0) from None


class _Ring:
    """A worker's shared-memory slots, each one chunk of (chunk, H, W, 3) uint8 frames, and a semaphore
    counting the free ones. Created by the consumer, which copies each chunk out and frees its slot at once;
    slots are used and freed in order, so the worker simply takes the next one."""

    def __init__(self, ctx, shape: tuple[int, ...]):
        from multiprocessing import shared_memory

        self.shape = shape
        self.memory = shared_memory.SharedMemory(create=True, size=_SLOTS * int(np.prod(shape)))
        self.free = ctx.Semaphore(_SLOTS)
        self.next = 0

    def __getstate__(self):
        return {"name": self.memory.name, "shape": self.shape, "free": self.free}

    def __setstate__(self, state):  # in the worker: attach, leaving the segment's lifetime to the consumer
        from multiprocessing import shared_memory

        # A spawned worker shares the consumer's resource tracker, so attaching registers nothing new.
        self.shape, self.free, self.next = state["shape"], state["free"], 0
        self.memory = shared_memory.SharedMemory(name=state["name"])

    def view(self, slot: int) -> np.ndarray:
        return np.ndarray((_SLOTS, *self.shape), np.uint8, self.memory.buf)[slot]

    def write(self, pixels: np.ndarray, parent: int) -> int:
        """Copy `pixels` into the next slot once it is free; returns the slot."""
        while not self.free.acquire(timeout=_POLL_SECONDS):
            if os.getppid() != parent:
                raise SystemExit(0)
        slot, self.next = self.next, (self.next + 1) % _SLOTS
        self.view(slot)[: len(pixels)] = pixels
        return slot

    def take(self, slot: int, n: int) -> np.ndarray:
        """In the consumer: copy a chunk out and free its slot."""
        pixels = self.view(slot)[:n].copy()
        self.free.release()
        return pixels

    def close(self) -> None:
        self.memory.close()
        self.memory.unlink()


def _worker(wid: int, tasks, results, fps, pre, chunk, parent: int, ring: _Ring | None, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    while (task := tasks.get()) is not None:
        i, path = task
        _put(results, ("start", wid, i), parent)
        for event in video_events(i, path, fps, pre, chunk, threads):
            if event[0] == "frames" and ring is not None:
                c: FrameChunk = event[2]
                slot = ring.write(c.pixels, parent)
                event = ("shared", i, FrameChunk(c.index, c.time, None), slot)
            _put(results, event, parent)


def decode_events(
    paths: list[Path], fps: float | None, pre: Preprocess | None, workers: int = 1, chunk: int = 16, prefetch: int = 8
) -> Iterator[tuple]:
    """Events for every video in `paths` (indices into it). workers=0 decodes in this process."""
    if workers <= 0 or not paths:
        for i, path in enumerate(paths):
            yield from video_events(i, path, fps, pre, chunk)
        return
    ctx = mp.get_context("spawn")  # safe with CUDA and threads in the parent
    tasks, results = ctx.Queue(), ctx.Queue(maxsize=max(2, workers * prefetch))
    for task in enumerate(map(str, paths)):
        tasks.put(task)
    workers = min(workers, len(paths))
    threads = max(1, (os.cpu_count() or 1) // workers)  # decoder threads per worker: the cores, shared out
    for _ in range(workers):
        tasks.put(None)

    rings: dict[int, _Ring] = {}

    def start(wid: int):
        if pre is not None:  # frames of a known shape go through shared memory
            if wid in rings:  # a replaced worker may have died holding slots: a fresh ring
                rings.pop(wid).close()
            rings[wid] = _Ring(ctx, (chunk, *pre.crop, 3))
        args = (wid, tasks, results, fps, pre, chunk, os.getpid(), rings.get(wid), threads)
        proc = ctx.Process(target=_worker, args=args, daemon=True)
        proc.start()
        return proc

    procs = {wid: start(wid) for wid in range(workers)}
    current: dict[int, int] = {}  # worker id -> video it is decoding
    worker_of: dict[int, int] = {}  # video -> worker id
    remaining = len(paths)
    try:
        while remaining:
            try:
                event = results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                for wid, proc in list(procs.items()):
                    if proc.is_alive() or wid not in current:
                        continue
                    i = current.pop(wid)
                    remaining -= 1
                    yield ("error", i, f"decoder process died (exit code {proc.exitcode})", _probe_quietly(paths[i]))
                    procs[wid] = start(wid)
                if not any(p.is_alive() for p in procs.values()) and remaining:
                    raise FeatxError(f"all decoder processes exited with {remaining} videos left undecoded") from None
                continue
            if event[0] == "start":
                _, wid, i = event
                current[wid], worker_of[i] = i, wid
                continue
            if event[0] == "shared":
                _, i, c, slot = event
                event = ("frames", i, FrameChunk(c.index, c.time, rings[worker_of[i]].take(slot, len(c.index))))
            if event[0] in ("done", "error"):
                remaining -= 1
                current.pop(worker_of.pop(event[1], -1), None)
            yield event
    finally:
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        for ring in rings.values():
            ring.close()
        results.cancel_join_thread()
        tasks.cancel_join_thread()
