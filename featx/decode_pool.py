"""Decoding in worker processes, so the backbone never waits for the decoder.

Workers take videos from a task queue (dynamic assignment: a long video does not hold up the rest) and
send back sampled, resized frame chunks. The consumer sees a stream of events:
    ("frames", i, FrameChunk)     the next sampled frames of video i, in order
    ("done", i, DecodedVideo)     video i decoded to the end
    ("error", i, message, info)   video i failed (info: VideoInfo or None); its earlier frames are void
A worker that dies (a decoder crash) turns its current video into an error and is replaced.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from pathlib import Path
from typing import Iterator

from featx.errors import FeatxError
from featx.video import DecodedVideo, Preprocess, probe, stream_frames

_POLL_SECONDS = 1.0


def video_events(i: int, path: str | Path, fps: float | None, pre: Preprocess | None, chunk: int) -> Iterator[tuple]:
    """The events of one video, decoded in this process. Every failure becomes an error event."""
    try:
        for item in stream_frames(path, fps, pre, chunk):
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


def _worker(wid: int, tasks, results, fps, pre, chunk, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    while (task := tasks.get()) is not None:
        i, path = task
        _put(results, ("start", wid, i), parent)
        for event in video_events(i, path, fps, pre, chunk):
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
    for _ in range(workers):
        tasks.put(None)

    def start(wid: int):
        proc = ctx.Process(target=_worker, args=(wid, tasks, results, fps, pre, chunk, os.getpid()), daemon=True)
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
            if event[0] in ("done", "error"):
                remaining -= 1
                current.pop(worker_of.pop(event[1], -1), None)
            yield event
    finally:
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        results.cancel_join_thread()
        tasks.cancel_join_thread()
