"""The extraction pipeline: decoding workers -> batches across videos -> frozen backbone -> store writer.

Rows of a video reach the store only once every one of its frames has been embedded, and then all together.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featx.batches import Batcher, BatchRunner
from featx.clips import ClipWindow, clip_spans
from featx.config import ExtractConfig
from featx.decode_pool import decode_events
from featx.flow import FlowStacker
from featx.inputs import VideoInput
from featx.shards import select_shard
from featx.store import StoreWriter
from featx.video import DecodedVideo, FrameChunk, VideoInfo, row_spans


@dataclass(frozen=True)
class RunOptions:
    """How to run an extraction; none of this changes the features, so none of it is stored."""

    batch_size: int = 32  # frames per backbone call; batches span video boundaries
    workers: int | None = None  # decoding processes (0: decode in this process; None: auto_workers)
    device: str = "auto"  # auto | cpu | cuda[:N]
    progress: bool = True  # show a tqdm bar
    part_mb: float = 64  # commit a part once it holds about this much feature data
    flush_seconds: float = 120  # ... or once its oldest video has waited this long
    shard: tuple[int, int] | None = None  # (i, N): extract only shard i of N (featx.shards)
    compile: bool = False  # torch.compile the backbone; every batch is then padded to batch_size


@dataclass
class ExtractSummary:
    store: str
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # already ok in the store
    frames: int = 0  # rows embedded in this run: frames, or clips for clip backbones (see unit)
    unit: str = "frames"
    seconds: float = 0.0  # wall time of the whole run, loading the backbone included
    decode_seconds: float = 0.0  # wall time from the first decoded frame's request to the last write
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video_id, reason)

    @property
    def frames_per_second(self) -> float:
        """End-to-end throughput once the backbone is loaded (decode, embed, write)."""
        return self.frames / self.decode_seconds if self.decode_seconds > 0 else 0.0


@dataclass
class _Video:
    """One video in flight: its sampled frames so far and, once decoded, what the decoder learnt."""

    source: VideoInput
    started: float
    index: list[np.ndarray] = field(default_factory=list)
    time: list[np.ndarray] = field(default_factory=list)
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)  # store column -> feature chunks
    queued: int = 0  # rows (frames, clips or flow stacks) waiting in the batch queues
    decoded: DecodedVideo | None = None
    window: ClipWindow | None = None  # clip backbones: the sliding window over the sampled frames
    stacker: FlowStacker | None = None  # flow streams: the flow stacks of the sampled frames


def auto_workers(device_type: str, cores: int | None = None) -> int:
    """Decoding processes by default. On a GPU decoding is the bottleneck: all cores but two decode (measured on
    an H100 host with 16 cores, resnet50: 8 workers 1137 frames/s, 12 1267, 16 1339, bench/throughput.py). On a
    small CPU machine a worker competes with torch's threads for the same cores; measured on 2 cores
    (bench/throughput.py --workers 0 1, resnet18): 0 workers 0.92x the model alone, 1 worker 0.68x."""
    cores = cores or os.cpu_count() or 1
    if device_type == "cuda":
        return max(1, cores - 2)
    return 0 if cores <= 2 else max(1, cores // 8)


def _record(video: VideoInput, info: VideoInfo | None, frames: int | None, started: float, error: str | None = None):
    return {
        "path": str(video.path),
        "video_id": video.video_id,
        "error": error,
        "fps": info.fps if info else None,
        "frames": frames if frames is not None else (info.frames if info else None),
        "duration": info.duration if info else None,
        "width": info.width if info else None,
        "height": info.height if info else None,
        "seconds": time.monotonic() - started,
        "finished_at": time.time(),
    }


class _InterruptLater:
    """Turns the first Ctrl-C (SIGINT) into a request checked between events, so that it never lands in the
    middle of writing a part; a second Ctrl-C interrupts at once. Only in the main thread."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> "_InterruptLater":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def extract(inputs: list[VideoInput], out: str | Path, config: ExtractConfig, options: RunOptions = RunOptions()):
    """Extract features of `inputs` into the store `out`; videos already ok there are skipped."""
    from tqdm.auto import tqdm

    from featx.backbones import load_backbone

    t0 = time.monotonic()
    backbone = load_backbone(config, options.device)
    summary = ExtractSummary(store=str(out))
    shard = f"{options.shard[0]}/{options.shard[1]}" if options.shard else None
    if options.shard:
        inputs = select_shard(inputs, *options.shard)
    with StoreWriter(out, backbone.config, part_mb=options.part_mb, flush_seconds=options.flush_seconds, shard=shard) as writer:
        todo = [v for v in inputs if v.video_id not in writer.ok_ids]
        summary.skipped = len(inputs) - len(todo)
        bar = tqdm(total=len(todo), unit="video", desc="extract", disable=not options.progress)
        # store column -> the backbone that fills it: RGB frames or clips, and/or optical-flow stacks
        nets = {}
        if config.stream != "flow":
            nets["feature"] = backbone
        if config.stream != "rgb":
            from featx.backbones import flow_backbone

            nets["flow_feature" if config.stream == "both" else "feature"] = flow_backbone(backbone, config)
        for net in nets.values():
            if options.compile:
                net.compile(options.batch_size)  # before the clock starts: compiling is part of loading
            elif net.device.type == "cuda":
                net.warm_up(options.batch_size)
        flow_column = "flow_feature" if config.stream == "both" else "feature" if config.stream == "flow" else None
        t1 = time.monotonic()
        batchers = {c: Batcher(BatchRunner(n, options.batch_size, pad=options.compile), options.batch_size) for c, n in nets.items()}
        keep_dtype = np.float16 if config.dtype == "float16" else np.float32  # halves what long videos hold
        videos: dict[int, _Video] = {}
        if config.clips:
            summary.unit = "clips"

        def new_video(i: int) -> _Video:
            window = ClipWindow(config.clip_len, config.stride, config.clip_tail) if config.clips else None
            stacker = FlowStacker(config.flow_len, config.flow_method) if flow_column else None
            return _Video(todo[i], time.monotonic(), features={c: [] for c in nets}, window=window, stacker=stacker)

        def queue(i: int, rows: np.ndarray | None, column: str = "feature") -> None:
            if rows is not None:
                videos[i].queued += len(rows)
                batchers[column].put(i, rows)
                while batchers[column].ready():
                    run_batch(column)

        def fail(i: int, message: str, info, started: float) -> None:
            videos.pop(i, None)
            writer.add_error(_record(todo[i], info, None, started, error=message))
            summary.failed += 1
            summary.failures.append((todo[i].video_id, message))
            bar.update(1)

        def finish(i: int) -> None:
            v = videos.pop(i)
            starts, times = np.concatenate(v.index), np.concatenate(v.time)
            frame_end, t_end = row_spans(starts, times, v.decoded.frames_decoded, v.decoded.end_time)
            if v.window is not None:  # one row per clip, spanning its first to its last real frame
                starts, frame_end, times, t_end = clip_spans(v.window.starts, config.clip_len, starts, frame_end, times, t_end)
            feats = {c: np.concatenate(chunks) for c, chunks in v.features.items()}
            table = writer.table(v.source.video_id, times, t_end, starts, frame_end, feats["feature"], feats.get("flow_feature"))
            writer.add_video(_record(v.source, v.decoded.info, v.decoded.frames_decoded, v.started), table)
            summary.ok += 1
            bar.update(1)

        def run_batch(column: str, drain: bool = False) -> None:
            touched = set()
            done = batchers[column].drain() if drain else batchers[column].run()
            if column == "feature":  # rows, counted once however many streams fill them
                summary.frames += sum(len(f) for _, f in done)
            bar.set_postfix(frames_per_s=f"{summary.frames / (time.monotonic() - t1):.1f}")
            for i, feats in done:
                if i in videos:  # a video that failed meanwhile leaves its frames behind
                    videos[i].features[column].append(feats.astype(keep_dtype))
                    videos[i].queued -= len(feats)
                    touched.add(i)
            for i in touched:
                if videos[i].decoded is not None and videos[i].queued == 0:
                    finish(i)

        workers = options.workers if options.workers is not None else auto_workers(backbone.device.type)
        events = decode_events([v.path for v in todo], config.fps, backbone.preprocess, workers)
        with _InterruptLater() as interrupt:
            for event in events:
                if interrupt.requested:
                    break
                kind, i = event[0], event[1]
                if kind != "error" and i not in videos:
                    videos[i] = new_video(i)
                video = videos.get(i)
                if kind == "frames":
                    chunk: FrameChunk = event[2]
                    video.index.append(chunk.index)
                    video.time.append(chunk.time)
                    if config.stream != "flow":
                        queue(i, video.window.push(chunk.pixels) if video.window else chunk.pixels)
                    if video.stacker is not None:
                        queue(i, video.stacker.push(chunk.pixels), flow_column)
                elif kind == "done":
                    if video.stacker is not None:  # before `decoded` is set: no batch may finish it yet
                        queue(i, video.stacker.finish(), flow_column)
                    if video.window is not None:
                        queue(i, video.window.finish())  # before `decoded` is set: no batch may finish it yet
                        if not video.window.starts:
                            fail(i, f"shorter than one clip ({video.window.seen} frames < --clip-len "
                                    f"{config.clip_len}); --clip-tail pad keeps it", event[2].info, video.started)
                            continue
                    video.decoded = event[2]
                    if video.queued == 0:
                        finish(i)
                else:
                    _, _, message, info = event
                    fail(i, message, info, video.started if video else time.monotonic())
            events.close()  # stops the decoding workers now, interrupted or not
            for column, batcher in batchers.items():
                while batcher.queued and not interrupt.requested:
                    run_batch(column)
            for column in batchers:
                run_batch(column, drain=True)  # batches already in flight finish quickly, even when interrupted
        bar.close()
        summary.decode_seconds = time.monotonic() - t1
    summary.seconds = time.monotonic() - t0
    if interrupt.requested:  # raised only now, after the finished videos were committed
        raise KeyboardInterrupt
    return summary
