"""The extraction pipeline: decoding workers -> batches across videos -> frozen backbone -> store writer.

Rows of a video reach the store only once every one of its frames has been embedded, and then all together.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featx.batches import Batcher, BatchRunner, check_device_filter
from featx.clips import ClipWindow
from featx.config import STORE_COLUMNS, ExtractConfig
from featx.decode_pool import Decoded, Event, Failed, Frames, decode_events
from featx.errors import FeatxError
from featx.flow import (CPU_METHODS, RAFT_MODELS, RAFT_WEIGHTS, FlowFields, FlowStacker, check_method, load_raft,
                        raft_checkpoint)
from featx.inputs import VideoInput
from featx.interrupts import InterruptLater
from featx.shards import select_shard
from featx.store import StoreWriter
from featx.timegrid import clip_spans, row_spans
from featx.video import DecodedVideo, FrameChunk, Preprocess, VideoInfo


@dataclass(frozen=True)
class RunOptions:
    """How to run an extraction; none of this changes the features, so none of it is stored."""

    batch_size: int = 32  # frames per backbone call; batches span video boundaries
    workers: int | None = None  # decoding processes (0: decode in this process; None: auto_workers)
    device: str = "auto"  # auto | cpu | cuda[:N]
    progress: bool = True  # show progress (featx.progress: a bar on a terminal, plain lines in a log)
    part_mb: float = 64  # commit a part once it holds about this much feature data
    flush_seconds: float = 120  # ... or once its oldest video has waited this long
    shard: tuple[int, int] | None = None  # (i, N): extract only shard i of N (featx.shards)
    compile: bool = False  # torch.compile the backbone; every batch is then padded to batch_size

    def __post_init__(self) -> None:
        import math

        if self.batch_size < 1 or self.workers is not None and self.workers < 0:
            raise FeatxError(f"--batch-size must be >= 1 and --workers >= 0, not {self.batch_size} and {self.workers}")
        for name, value in (("--part-mb", self.part_mb), ("flush_seconds", self.flush_seconds)):
            if not (math.isfinite(value) and value > 0):
                raise FeatxError(f"{name} must be a positive number, not {value}")


@dataclass
class ExtractSummary:
    store: str
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # already ok in the store
    pages_read: bool = True  # the store's parts were read page by page when opened (else trusted by footers)
    repairs: list[str] = field(default_factory=list)  # what opening the store repaired (featx.store.check)
    elsewhere: list[tuple[str, str, str]] = field(default_factory=list)  # skipped: (id, stored path, given path)
    frames: int = 0  # rows embedded in this run: frames, or clips for clip backbones (see unit)
    unit: str = "frames"
    seconds: float = 0.0  # wall time of the whole run, loading the backbone included
    decode_seconds: float = 0.0  # wall time from the first decoded frame's request to the last write
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video_id, reason)

    @property
    def frames_per_second(self) -> float:
        """End-to-end throughput once the backbone is loaded (decode, embed, write)."""
        return self.frames / self.decode_seconds if self.decode_seconds > 0 else 0.0

    def lines(self, failures: int = 10) -> list[str]:
        """The run in a line, then the first `failures` failed videos with reasons."""
        out = [
            f"ok {self.ok} | failed {self.failed} | skipped {self.skipped} (already in the store) | "
            f"{self.frames} {self.unit} in {self.seconds:.1f} s ({self.frames_per_second:.1f} {self.unit}/s after "
            f"loading the model) -> {self.store}"
        ]
        out += [f"  repaired: {line}" for line in self.repairs]
        if self.elsewhere:
            video_id, stored, given = self.elsewhere[0]
            out.append(f"  note: {len(self.elsewhere)} skipped video(s) were extracted from another file under the same "
                       f"id ({video_id!r}: {stored}, now {given}); the stored features were kept: give the new files "
                       "other ids (a CSV list's video_id column) or another --out to extract them")
        out += [f"  failed {video_id}: {reason}" for video_id, reason in self.failures[:failures]]
        if len(self.failures) > failures:
            out.append(f"  ... and {len(self.failures) - failures} more (see `featx info {self.store}`)")
        if self.skipped and not self.pages_read:  # a large store's parts were trusted by their footers
            out.append(f"  the {self.skipped} skipped videos' parts were checked by their footers, not page by page: "
                       f"`featx info --verify {self.store}` reads every page")
        return out


def _stored_from_elsewhere(root, skipped) -> list[tuple[str, str, str]]:
    """(video_id, stored path, given path) of each skipped input whose stored rows came from another file."""
    if not skipped:
        return []
    from featx.store import latest_manifest

    latest = latest_manifest(root)
    stored = dict(zip(latest["video_id"], latest["path"]))
    return [(v.video_id, stored[v.video_id], str(v.path)) for v in skipped
            if stored.get(v.video_id) not in (None, str(v.path))]


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
    # clip backbones: per store column, the sliding window over its per-frame rows (frames, or flow fields);
    # every column's window sees one row per sampled frame, so all have the same clip starts
    windows: dict[str, ClipWindow] = field(default_factory=dict)
    stacker: FlowStacker | None = None  # flow streams: the flow stacks of the sampled frames
    fields: FlowFields | None = None  # RAFT: flow computed here, on the device (else it comes with the frames)

    @property
    def window(self) -> ClipWindow | None:
        """Clip backbones: a window over the sampled frames (any column's: their clip starts agree)."""
        return next(iter(self.windows.values()), None)


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


def _flow_column(stream: str) -> str | None:
    """The store column that optical-flow stacks fill, if any."""
    return STORE_COLUMNS[stream].get("flow")


def _flow_model(config: ExtractConfig, device):
    """(RAFT on the extraction device, `config` with the RAFT weights' path and sha256) when the flow stream asks
    for RAFT; (None, `config`) otherwise: the decoding workers run the OpenCV methods. Raises a one-line
    FeatxError when the method cannot run here, before any video is decoded."""
    if _flow_column(config.stream) is None:
        return None, config
    check_method(config.flow_method)
    if config.flow_method not in RAFT_MODELS:
        return None, config
    raft, source, sha = load_raft(config.flow_method, config.flow_weights, device)
    return raft, dataclasses.replace(config, flow_weights=source, flow_weights_sha256=sha)


def _flow_network(backbone, config: ExtractConfig, store_config: ExtractConfig):
    """(the flow stream's backbone or None, `store_config` recording its own checkpoint's path and sha256 when
    --weights-flow-backbone gave one). Built before the store opens: the sha256 is part of its identity."""
    if _flow_column(config.stream) is None:
        return None, store_config
    from featx.backbones import flow_backbone

    net = flow_backbone(backbone, config)
    return net, dataclasses.replace(store_config, flow_backbone_weights=net.config.flow_backbone_weights,
                                    flow_backbone_sha256=net.config.flow_backbone_sha256)


def _networks(backbone, flow_net, config: ExtractConfig, options: RunOptions) -> dict:
    """Store column -> the backbone that fills it: RGB frames or clips, and/or optical-flow stacks (`flow_net`).
    Compiled or warmed up here, before the clock starts: that is part of loading."""
    nets = {}
    if config.stream != "flow":
        nets["feature"] = backbone
    if flow_column := _flow_column(config.stream):
        nets[flow_column] = flow_net
    for net in nets.values():
        if options.compile:
            net.compile(options.batch_size)
        elif net.device.type == "cuda":
            net.warm_up(options.batch_size)
    return nets


class _Extraction:
    """One run from decoding events to committed videos: the videos in flight, a batch queue per store column,
    and what the run has done so far (summary, progress bar)."""

    def __init__(self, todo: list[VideoInput], config: ExtractConfig, nets: dict, writer: StoreWriter,
                 summary: ExtractSummary, bar, options: RunOptions, raft=None, resize: Preprocess | None = None):
        self.todo, self.config, self.writer, self.summary, self.bar = todo, config, writer, summary, bar
        self.flow_column = _flow_column(config.stream)
        self.raft = raft  # featx.flow.Raft, or None: the flow fields come with the decoded frames
        self.started = time.monotonic()  # the clock of frames_per_second starts once the backbones are loaded
        # resize: --resize-on device, frames arrive at their decoded size and the batch runner resizes them
        self.batchers = {c: Batcher(BatchRunner(n, options.batch_size, pad=options.compile, resize=resize),
                                    options.batch_size) for c, n in nets.items()}
        self.keep_dtype = np.float16 if config.dtype == "float16" else np.float32  # halves what long videos hold
        self.videos: dict[int, _Video] = {}

    def handle(self, event: Event) -> None:
        match event:
            case Frames(video=i, chunk=chunk, flow=flow):
                self._frames(i, chunk, flow)
            case Decoded(video=i, decoded=decoded):
                self._decoded(i, decoded)
            case Failed(video=i, message=message, info=info):
                self._fail(i, message, info)

    def finish_batches(self, interrupt: InterruptLater) -> None:
        """Embed what is still queued once decoding is over (unless interrupted), committing the videos it
        completes. Batches already in flight finish either way: that is quick."""
        for column, batcher in self.batchers.items():
            while batcher.queued and not interrupt.requested:
                self._run_batch(column)
        for column in self.batchers:
            self._run_batch(column, drain=True)

    def _video(self, i: int) -> _Video:
        """Video i in flight, from its first event on."""
        if i not in self.videos:
            config = self.config
            windows = {c: ClipWindow(config.clip_len, config.stride, config.clip_tail) for c in self.batchers
                       } if config.clips else {}
            stacker = FlowStacker(config.flow_len) if self.flow_column else None
            fields = FlowFields(pairs=self.raft) if self.flow_column and self.raft else None
            self.videos[i] = _Video(self.todo[i], time.monotonic(), features={c: [] for c in self.batchers},
                                    windows=windows, stacker=stacker, fields=fields)
        return self.videos[i]

    def _frames(self, i: int, chunk: FrameChunk, flow: np.ndarray | None) -> None:
        video = self._video(i)
        video.index.append(chunk.index)
        video.time.append(chunk.time)
        if self.config.stream != "flow":
            self._rows(i, chunk.pixels)
        if video.stacker is not None:
            if video.fields is not None:
                flow = video.fields.push(chunk.pixels)  # (n, H, W, 2): RAFT, the chunk's pairs in one batch
            self._rows(i, video.stacker.push(flow), self.flow_column)

    def _rows(self, i: int, rows: np.ndarray | None, column: str = "feature") -> None:
        """Queue one row per sampled frame (a frame or a flow stack), through the column's clip window if any."""
        window = self.videos[i].windows.get(column)
        self._queue(i, window.push(rows) if window is not None and rows is not None else rows, column)

    def _decoded(self, i: int, decoded: DecodedVideo) -> None:
        video = self._video(i)
        # the last rows are queued before `decoded` is set: no batch may finish the video before them
        if video.stacker is not None:
            self._rows(i, video.stacker.finish(), self.flow_column)
        for column, window in video.windows.items():
            self._queue(i, window.finish(), column)
        if video.window is not None:
            if not video.window.starts:
                self._fail(i, f"shorter than one clip ({video.window.seen} frames < --clip-len "
                              f"{self.config.clip_len}); --clip-tail pad keeps it", decoded.info)
                return
        video.decoded = decoded
        if video.queued == 0:
            self._commit(i)

    def _queue(self, i: int, rows: np.ndarray | None, column: str = "feature") -> None:
        if rows is not None:
            self.videos[i].queued += len(rows)
            self.batchers[column].put(i, rows)
            while self.batchers[column].ready():
                self._run_batch(column)

    def _run_batch(self, column: str, drain: bool = False) -> None:
        done = self.batchers[column].drain() if drain else self.batchers[column].run()
        if column == "feature":  # rows, counted once however many streams fill them
            self.summary.frames += sum(len(f) for _, f in done)
        self.bar.set_postfix(frames_per_s=f"{self.summary.frames / (time.monotonic() - self.started):.1f}")
        touched = set()
        for i, feats in done:
            if i in self.videos:  # a video that failed meanwhile leaves its frames behind
                self.videos[i].features[column].append(feats.astype(self.keep_dtype))
                self.videos[i].queued -= len(feats)
                touched.add(i)
        for i in touched:
            if self.videos[i].decoded is not None and self.videos[i].queued == 0:
                self._commit(i)

    def _commit(self, i: int) -> None:
        """Write video i's rows, all of them at once, now that every one is embedded."""
        v = self.videos.pop(i)
        starts, times = np.concatenate(v.index), np.concatenate(v.time)
        frame_end, t_end = row_spans(starts, times, v.decoded.frames_decoded, v.decoded.end_time)
        if v.window is not None:  # one row per clip, spanning its first to its last real frame
            starts, frame_end, times, t_end = clip_spans(v.window.starts, self.config.clip_len, starts, frame_end,
                                                         times, t_end)
        feats = {c: np.concatenate(chunks) for c, chunks in v.features.items()}
        table = self.writer.table(v.source.video_id, times, t_end, starts, frame_end, feats["feature"],
                                  feats.get("flow_feature"))
        self.writer.add_video(_record(v.source, v.decoded.info, v.decoded.frames_decoded, v.started), table)
        self.summary.ok += 1
        self.bar.update(1)

    def _fail(self, i: int, message: str, info: VideoInfo | None) -> None:
        v = self.videos.pop(i, None)
        self.writer.add_error(_record(self.todo[i], info, None, v.started if v else time.monotonic(), error=message))
        self.summary.failed += 1
        self.summary.failures.append((self.todo[i].video_id, message))
        self.bar.update(1)


def _decoder(config: ExtractConfig, device) -> ExtractConfig:
    """`config` as it will decode: --decoder nvdec where NVDEC can decode for `device`; otherwise one warning line
    saying why, and PyAV with the frames still resized on the device (`config` then records decoder "pyav", what
    actually decoded, and keeps resize_on "device")."""
    if config.decoder != "nvdec":
        return config
    from featx.nvdec import unavailable

    if (why := unavailable(device)) is None:
        return config
    print(f"warning: --decoder nvdec unavailable: {why}; decoding with PyAV instead, frames resized on {device} "
          f"(the store records decoder pyav, resize_on device)", file=sys.stderr, flush=True)
    return dataclasses.replace(config, decoder="pyav")


def extract(
    inputs: list[VideoInput], out: str | Path, config: ExtractConfig, options: RunOptions = RunOptions()
) -> ExtractSummary:
    """Extract features of `inputs` into the store `out`; videos already ok there are skipped."""
    from featx.progress import progress as progress_bar

    from featx.backbones import load_backbone
    from featx.backbones.runtime import settle_runtime

    t0 = time.monotonic()
    if config.stream != "rgb" and config.flow_method in RAFT_WEIGHTS and config.flow_weights is None:
        raft_checkpoint(config.flow_method)  # RAFT's file, before the backbone is built: offline is one fast line
    config, device = settle_runtime(config, out, options.compile, options.device)
    backbone = load_backbone(config, device)
    raft, store_config = _flow_model(backbone.config, backbone.device)
    flow_net, store_config = _flow_network(backbone, config, store_config)
    pre = backbone.preprocess
    if config.resize_on == "device":  # the workers send upright frames at their decoded size; the runner resizes
        check_device_filter(pre.interpolation, config.backbone)
        pre = dataclasses.replace(pre, resize_on="device")
    store_config = _decoder(store_config, backbone.device)
    summary = ExtractSummary(store=str(out), unit="clips" if config.clips else "frames")
    shard = f"{options.shard[0]}/{options.shard[1]}" if options.shard else None
    if options.shard:
        inputs = select_shard(inputs, *options.shard)
    with StoreWriter(out, store_config, part_mb=options.part_mb, flush_seconds=options.flush_seconds, shard=shard) as writer:
        todo = [v for v in inputs if v.video_id not in writer.ok_ids]
        summary.elsewhere = _stored_from_elsewhere(writer.root, [v for v in inputs if v.video_id in writer.ok_ids])
        summary.skipped, summary.pages_read, summary.repairs = len(inputs) - len(todo), writer.pages_read, writer.repairs
        bar = progress_bar(total=len(todo), unit="video", desc="extract", enabled=options.progress)
        run = _Extraction(todo, config, _networks(backbone, flow_net, config, options), writer, summary, bar, options, raft,
                          resize=pre if pre.resize_on == "device" else None)
        workers = options.workers if options.workers is not None else auto_workers(backbone.device.type)
        cpu_flow = config.flow_method if run.flow_column and config.flow_method in CPU_METHODS else None
        paths = [v.path for v in todo]
        if store_config.decoder == "nvdec":  # frames decoded on the card stay there (CUDA tensors in the events)
            from featx.nvdec import nvdec_events

            events = nvdec_events(paths, config.fps, pre, backbone.device)
        else:
            events = decode_events(paths, config.fps, pre, workers, flow=cpu_flow)
        with InterruptLater() as interrupt:
            for event in events:
                if interrupt.requested:
                    break
                run.handle(event)
            events.close()  # stops the decoding workers now, interrupted or not
            run.finish_batches(interrupt)
        bar.close()
        summary.decode_seconds = time.monotonic() - run.started
    summary.seconds = time.monotonic() - t0
    if interrupt.requested:  # raised only now, after the finished videos were committed
        raise KeyboardInterrupt
    return summary
