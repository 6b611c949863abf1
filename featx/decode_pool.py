"""Decoding in worker processes, so the backbone never waits for the decoder.

Workers take videos from a task queue (dynamic assignment: a long video does not hold up the rest) and
send back sampled, resized frame chunks, and with `flow` (an OpenCV method) the optical flow arriving at each
frame, computed in the worker (so flow scales with the workers like decoding: about 127 frame pairs/s per core
at 224 px would otherwise cap the main process). The consumer sees a stream of events (`Event`), per video in
order:
    Frames(i, FrameChunk, flow?)     the next sampled frames of video i (and their flow fields)
    Decoded(i, DecodedVideo)         video i decoded to the end
    Failed(i, message, VideoInfo?)   video i failed; its earlier frames are void
A worker that dies (a decoder crash) turns its current video into a Failed event and is replaced.

Pixels (and flow fields) travel through shared memory, not the results queue: each worker owns a ring of
chunk-sized slots, writes a chunk into its next free slot and sends only the slot's number; the consumer copies
the chunk out and frees the slot at once. Pickling frames through a pipe capped the consumer at about 1,200 frames/s
(224 x 224) on a 16-core machine, a tenth of what a GPU embeds. When the device resizes (`--resize-on device`),
frames travel at their decoded size, which differs between videos: slots are then a fixed number of bytes, a chunk
goes in pieces of as many frames as a slot holds, and a frame larger than a slot is pickled.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from featx.errors import FeatxError
from featx.flow import FlowFields
from featx.video import DecodedVideo, FrameChunk, Preprocess, VideoInfo, probe, stream_frames

_POLL_SECONDS = 1.0
_SLOTS = 4  # shared-memory chunk slots per worker: how far a worker may decode ahead of the consumer
# A slot's bytes when frames travel at their decoded size: 16 frames of 640x360, 4 of 1280x720, 2 of 1920x1080
# (a 3840x2160 frame is pickled); 4 slots make 48 MiB of shared memory per worker.
_DECODED_SLOT_BYTES = 12 * 2**20


@dataclass(frozen=True)
class Frames:
    """The next sampled frames of a video, in order."""

    video: int  # index into the decoded paths
    chunk: FrameChunk
    flow: np.ndarray | None = None  # (N, H, W, 2) uint8: featx.flow.FlowFields of the chunk, when asked for


@dataclass(frozen=True)
class Decoded:
    """A video decoded to the end: no more events for it."""

    video: int
    decoded: DecodedVideo  # frames decoded, end time and the container's facts, for the manifest


@dataclass(frozen=True)
class Failed:
    """A video that failed: no more events for it, and its earlier frames are void."""

    video: int
    message: str  # why, as the manifest records it
    info: VideoInfo | None  # what probing the file found, if it could be probed


Event = Frames | Decoded | Failed


@dataclass(frozen=True)
class _Started:
    """Worker -> consumer: `worker` has taken `video` (so a dead worker's video is known)."""

    worker: int  # the worker's slot in the pool
    video: int


@dataclass(frozen=True)
class _Shared:
    """Worker -> consumer: the frames of a Frames event, their pixels (and flow) left in shared-memory `slot`."""

    video: int
    index: np.ndarray  # (N,) int64
    time: np.ndarray  # (N,) float64
    shapes: tuple[tuple[int, ...], ...]  # per plane: (N, H, W, 3) pixels, then (N, H, W, 2) flow if any
    slot: int


def video_events(
    i: int, path: str | Path, fps: float | None, pre: Preprocess | None, chunk: int, threads: int = 0,
    flow: str | None = None,
) -> Iterator[Event]:
    """The events of one video, decoded (and with `flow`, its optical flow computed) in this process. Every
    failure becomes a Failed event."""
    fields = FlowFields(flow) if flow else None
    try:
        for item in stream_frames(path, fps, pre, chunk, threads):
            if isinstance(item, DecodedVideo):
                yield Decoded(i, item)
            else:
                yield Frames(i, item, fields.push(item.pixels) if fields else None)
    except FeatxError as exc:
        yield Failed(i, str(exc), probe_quietly(path))
    except Exception as exc:  # a decoder bug must not stop the dataset; it is recorded in the manifest
        yield Failed(i, f"{type(exc).__name__}: {exc}", probe_quietly(path))


def probe_quietly(path):
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
    """A worker's shared-memory slots, each holding one chunk of uint8 planes: (chunk, H, W, 3) frames and, with
    flow, (chunk, H, W, 2) fields, or a flat (bytes,) plane for frames of any size; and a semaphore counting the
    free slots. Created by the consumer, which copies each chunk out and frees its slot at once; slots are used
    and freed in order, so the worker simply takes the next one."""

    def __init__(self, ctx, planes: tuple[tuple[int, ...], ...]):
        from multiprocessing import shared_memory

        self.planes = planes
        self.memory = shared_memory.SharedMemory(create=True, size=_SLOTS * self._slot_bytes)
        self.free = ctx.Semaphore(_SLOTS)
        self.next = 0

    @property
    def _slot_bytes(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.planes)

    def __getstate__(self):
        return {"name": self.memory.name, "planes": self.planes, "free": self.free}

    def __setstate__(self, state):  # in the worker: attach, leaving the segment's lifetime to the consumer
        from multiprocessing import shared_memory

        # A spawned worker shares the consumer's resource tracker, so attaching registers nothing new.
        self.planes, self.free, self.next = state["planes"], state["free"], 0
        self.memory = shared_memory.SharedMemory(name=state["name"])

    def view(self, slot: int, plane: int) -> np.ndarray:
        offset = slot * self._slot_bytes + sum(int(np.prod(shape)) for shape in self.planes[:plane])
        return np.ndarray(self.planes[plane], np.uint8, self.memory.buf, offset)

    def frames_per_slot(self, arrays: tuple[np.ndarray, ...]) -> int:
        """How many frames of these (N, ...) planes one slot holds (0: not even one)."""
        return min(int(np.prod(shape)) // max(1, int(np.prod(a.shape[1:]))) for shape, a in zip(self.planes, arrays))

    def write(self, arrays: tuple[np.ndarray, ...], parent: int) -> int:
        """Copy one chunk's planes (that fit: frames_per_slot) into the next slot once it is free; returns the slot."""
        while not self.free.acquire(timeout=_POLL_SECONDS):
            if os.getppid() != parent:
                raise SystemExit(0)
        slot, self.next = self.next, (self.next + 1) % _SLOTS
        for plane, array in enumerate(arrays):
            self.view(slot, plane).reshape(-1)[: array.size] = array.reshape(-1)
        return slot

    def take(self, slot: int, shapes: tuple[tuple[int, ...], ...]) -> list[np.ndarray]:
        """In the consumer: copy a chunk's planes, of these shapes, out and free its slot."""
        arrays = [self.view(slot, plane).reshape(-1)[: int(np.prod(shape))].reshape(shape).copy()
                  for plane, shape in enumerate(shapes)]
        self.free.release()
        return arrays

    def close(self) -> None:
        self.memory.close()
        self.memory.unlink()


def _worker(wid: int, tasks, results, fps, pre, chunk, flow, parent: int, ring: _Ring | None, threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    while (task := tasks.get()) is not None:
        i, path = task
        _put(results, _Started(wid, i), parent)
        for event in video_events(i, path, fps, pre, chunk, threads, flow):
            for message in _messages(event, ring, parent):
                _put(results, message, parent)


def _messages(event: Event, ring: _Ring | None, parent: int):
    """What carries `event` to the consumer: a Frames event's planes go through the ring's slots, in pieces of
    as many frames as a slot holds; a frame larger than a slot (or any event without a ring) is pickled."""
    if not isinstance(event, Frames) or ring is None:
        yield event
        return
    c = event.chunk
    planes = (c.pixels,) if event.flow is None else (c.pixels, event.flow)
    step = ring.frames_per_slot(planes)
    if step == 0:
        yield event
        return
    for at in range(0, len(c.index), step):
        piece = tuple(p[at : at + step] for p in planes)
        slot = ring.write(piece, parent)
        yield _Shared(event.video, c.index[at : at + step], c.time[at : at + step], tuple(p.shape for p in piece), slot)


class _Pool:
    """The consumer's side of the worker processes: starts (and replaces) them with their shared-memory rings,
    and turns what they send into events, knowing which video each worker is decoding."""

    def __init__(self, paths: list[Path], fps, pre: Preprocess | None, workers: int, chunk: int, prefetch: int,
                 flow: str | None = None):
        self.ctx = mp.get_context("spawn")  # safe with CUDA and threads in the parent
        self.paths, self.pre, self.chunk, self.flow = paths, pre, chunk, flow
        self.tasks, self.results = self.ctx.Queue(), self.ctx.Queue(maxsize=max(2, workers * prefetch))
        for task in enumerate(map(str, paths)):
            self.tasks.put(task)
        workers = min(workers, len(paths))
        for _ in range(workers):
            self.tasks.put(None)
        self.threads = max(1, (os.cpu_count() or 1) // workers)  # decoder threads per worker: the cores, shared out
        self.worker_args = (self.tasks, self.results, fps, pre, chunk, flow, os.getpid())
        self.rings: dict[int, _Ring] = {}
        self.current: dict[int, int] = {}  # worker id -> video it is decoding
        self.worker_of: dict[int, int] = {}  # video -> worker id
        self.remaining = len(paths)  # videos without a Decoded or Failed event yet
        self.procs: dict[int, mp.Process] = {}
        for wid in range(workers):
            self.start(wid)

    def start(self, wid: int) -> None:
        if self.pre is not None:  # frames of a known shape go through shared memory
            if wid in self.rings:  # a replaced worker may have died holding slots: a fresh ring
                self.rings.pop(wid).close()
            if self.pre.resize_on == "device":  # decoded sizes differ between videos: a byte budget per slot
                planes = ((_DECODED_SLOT_BYTES,),) * (2 if self.flow else 1)
            else:
                planes = ((self.chunk, *self.pre.crop, 3),) + (((self.chunk, *self.pre.crop, 2),) if self.flow else ())
            self.rings[wid] = _Ring(self.ctx, planes)
        args = (wid, *self.worker_args, self.rings.get(wid), self.threads)
        self.procs[wid] = self.ctx.Process(target=_worker, args=args, daemon=True)
        self.procs[wid].start()

    def receive(self, message) -> Event | None:
        """The event a worker's message stands for (None for bookkeeping only)."""
        match message:
            case _Started(worker=wid, video=i):
                self.current[wid], self.worker_of[i] = i, wid
                return None
            case _Shared(video=i, index=index, time=time, shapes=shapes, slot=slot):
                pixels, *flow = self.rings[self.worker_of[i]].take(slot, shapes)
                return Frames(i, FrameChunk(index, time, pixels), flow[0] if flow else None)
            case Decoded(video=i) | Failed(video=i):
                self.remaining -= 1
                self.current.pop(self.worker_of.pop(i, -1), None)
        return message

    def replace_dead(self) -> Iterator[Failed]:
        """A Failed event for each video whose worker died, and a new worker in its place."""
        for wid, proc in list(self.procs.items()):
            if proc.is_alive() or wid not in self.current:
                continue
            i = self.current.pop(wid)
            self.remaining -= 1
            yield Failed(i, f"decoder process died (exit code {proc.exitcode})", probe_quietly(self.paths[i]))
            self.start(wid)
        if not any(p.is_alive() for p in self.procs.values()) and self.remaining:
            raise FeatxError(f"all decoder processes exited with {self.remaining} videos left undecoded") from None

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        for ring in self.rings.values():
            ring.close()
        self.results.cancel_join_thread()
        self.tasks.cancel_join_thread()


def decode_events(
    paths: list[Path], fps: float | None, pre: Preprocess | None, workers: int = 1, chunk: int = 16, prefetch: int = 8,
    flow: str | None = None,
) -> Iterator[Event]:
    """Events for every video in `paths` (indices into it). workers=0 decodes in this process. `flow`: an OpenCV
    method (featx.flow.CPU_METHODS) whose fields the Frames events carry, computed where the frames are decoded."""
    if workers <= 0 or not paths:
        for i, path in enumerate(paths):
            yield from video_events(i, path, fps, pre, chunk, flow=flow)
        return
    pool = _Pool(paths, fps, pre, workers, chunk, prefetch, flow)
    try:
        while pool.remaining:
            try:
                message = pool.results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                yield from pool.replace_dead()
                continue
            if (event := pool.receive(message)) is not None:
                yield event
    finally:
        pool.close()
