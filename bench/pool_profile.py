"""Where the decoding pool's time goes: decode-only frames/s for 1, 2, ... workers, split into demux, decode,
colour conversion, resize, transfer to the main process and the main process's own work.

Two measurements, both on the same synthetic H.264 clips (the size bench/throughput.py uses):
1. Stages, one process, one frame at a time: a demux-only pass, a decode pass (demux + decode), and the
   conversion featx does (`featx.video.to_rgb`: one swscale call that converts YUV -> RGB and resizes, then
   the crop) next to colour conversion alone (RGB at the decoded size) and resize alone (YUV at the target size).
2. The pool (`featx.decode_pool.decode_events`, every frame kept): frames/s, and per frame the CPU time each
   worker spent in its decoder (demux + decode, split by pass 1's ratio), in `_to_rgb` (split into colour
   conversion and resize by pass 1's ratio), writing the chunk into shared memory and sending its event, and
   the rest (sampling, chunk building), and the main process's CPU time (copying chunks out of shared memory,
   unpickling events). The workers are timed by wrapping featx's functions inside them (nothing in featx
   changes). CPU time, not wall time: on a shared machine a descheduled process would count as slow work.

    python bench/pool_profile.py                       # workers 1 and 2, FFmpeg threads as featx sets them
    python bench/pool_profile.py --workers 1 2 --threads 1 2   # also force FFmpeg threads per worker
    python bench/pool_profile.py --sws-threads 0 1     # swscale threads: PyAV's default (0) vs featx's (1)

3. `--kept`: instead of 1 and 2, wall milliseconds per kept frame of each stage of `featx.video.stream_frames` in
   this process (featx's FFmpeg threads), at --fps 4, 1 and every frame, on 640x360 H.264 videos with x264's
   defaults (B-frames) at 25 and 29.97 fps: demux alone, decoding every frame, decoding as stream_frames does
   (passing over the dropped frames nothing references, featx.seek.PassOver, its packet index included), `to_rgb`
   of the kept frames, stream_frames as a whole, and with `--model` the OpenVINO default backbone per frame.
   Repeats run interleaved; medians.

    python bench/pool_profile.py --kept --seconds 20 --repeats 5 --model
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np
from _common import RESULTS, Column, add_out, make_parser, make_videos, markdown_table, synthetic_clip, timed, write_results

from featx import decode_pool, video
from featx.video import Preprocess

# -- 1. stages in one process ---------------------------------------------------------------------------------


def stage_seconds(paths: list[Path], pre: Preprocess) -> dict[str, float]:
    """CPU seconds per frame of each stage, decoding every frame of `paths` in this process (one FFmpeg thread,
    so the decoder works in this thread too)."""
    import av

    totals, frames = defaultdict(float), 0
    for path in paths:
        with av.open(str(path)) as container:  # demux only
            stream = container.streams.video[0]
            start = time.process_time()
            for _ in container.demux(stream):
                pass
            totals["demux"] += time.process_time() - start
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            start = time.process_time()
            decoded = list(container.decode(stream))
            totals["demux + decode"] += time.process_time() - start
        frames += len(decoded)
        h, w = pre.crop
        scale = pre.resize_shorter / min(decoded[0].width, decoded[0].height)
        size = dict(width=max(w, round(decoded[0].width * scale)), height=max(h, round(decoded[0].height * scale)))
        for name, convert in [
            ("featx _to_rgb (colour + resize + crop)", lambda f: video.to_rgb(f, pre)),
            ("colour conversion alone", lambda f: f.to_ndarray(**video.sws_options(format="rgb24"))),
            ("resize alone (YUV)", lambda f: f.reformat(**video.sws_options(**size, interpolation=pre.interpolation.upper()))),
        ]:
            start = time.process_time()
            for frame in decoded:
                convert(frame)
            totals[name] += time.process_time() - start
    return {name: seconds / frames for name, seconds in totals.items()}


# -- 2. the pool, timed inside its workers ---------------------------------------------------------------------
_TIMES: dict[str, float] = defaultdict(float)


def _timed(name, fn, clock=time.thread_time):
    def wrapper(*args, **kwargs):
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            _TIMES[name] += clock() - start

    return wrapper


class _TimedDecode(video.FullDecode):
    """featx's full decode, timing the decoder (each step of its frame iterator) apart from what uses the frames;
    process CPU time, so that FFmpeg's own threads count."""

    def __iter__(self):
        frames = super().__iter__()
        while True:
            start = time.process_time()
            try:
                item = next(frames)
            except StopIteration:
                return
            finally:
                _TIMES["decoder"] += time.process_time() - start
            yield item


def _profiled_worker(wid, *args):
    """decode_pool's worker with its stages timed; after each video it writes its totals to $POOL_PROFILE_DIR."""
    out = Path(os.environ["POOL_PROFILE_DIR"]) / f"worker-{wid}-{os.getpid()}.json"
    video.SWS_THREADS = int(os.environ["POOL_PROFILE_SWS"])
    video.FullDecode = _TimedDecode
    video.to_rgb = _timed("to_rgb", video.to_rgb)
    decode_pool._Ring.write = _timed("shared memory write", decode_pool._Ring.write)
    put = _timed("send event", decode_pool._put)

    def put_and_record(results, event, parent):  # before the consumer can see the video end (and stop us)
        if isinstance(event, (decode_pool.Decoded, decode_pool.Failed)):
            out.write_text(json.dumps({**_TIMES, "cpu": time.process_time() - born}))
        put(results, event, parent)

    decode_pool._put = put_and_record
    born = time.process_time()  # after start-up (imports)
    decode_pool._worker(wid, *args)


def pool_run(paths: list[Path], pre: Preprocess, workers: int, threads: int | None, sws: int, folder: Path) -> dict:
    """frames/s of decode_events with `workers` (FFmpeg `threads` each, None: featx's choice; `sws` swscale
    threads per conversion), and the workers' and main process's time per frame."""
    folder.mkdir(parents=True)
    os.environ["POOL_PROFILE_DIR"], os.environ["POOL_PROFILE_SWS"] = str(folder), str(sws)
    original_start = decode_pool._Pool.start

    def start(self, wid):  # the same worker, under our timing wrapper (spawned workers import this script)
        if threads is not None:
            self.threads = threads
        worker = decode_pool._worker
        decode_pool._worker = _profiled_worker
        try:
            original_start(self, wid)
        finally:
            decode_pool._worker = worker

    decode_pool._Pool.start = start
    receive = decode_pool._Pool.receive
    copy_out = defaultdict(float)

    def timed_receive(self, message):
        begin = time.thread_time()
        try:
            return receive(self, message)
        finally:
            copy_out["s"] += time.thread_time() - begin

    decode_pool._Pool.receive = timed_receive
    try:
        frames = 0
        cpu, wall = time.process_time(), time.perf_counter()
        for event in decode_pool.decode_events(paths, None, pre, workers):
            if isinstance(event, decode_pool.Frames):
                frames += len(event.chunk.index)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        decode_pool._Pool.start = original_start
        decode_pool._Pool.receive = receive
    used = [json.loads(p.read_text()) for p in folder.glob("worker-*.json")]
    ffmpeg_threads = threads if threads is not None else max(1, (os.cpu_count() or 1) // min(workers, len(paths)))
    sums = {key: sum(u.get(key, 0.0) for u in used) / frames for key in ("decoder", "to_rgb", "shared memory write",
                                                                        "send event", "cpu")}
    return {"workers": workers, "ffmpeg_threads": ffmpeg_threads, "sws_threads": sws, "frames": frames, "seconds": wall,
            "fps": frames / wall, "main_cpu_per_frame": cpu / frames, "main_copy_out_per_frame": copy_out["s"] / frames,
            "worker_per_frame": sums}


# -- 3. per kept frame, in one process ------------------------------------------------------------------------


def _opened(path: Path):
    container = video.open_video(path)
    stream = video.decoding(container, 0)
    info = video.container_info(container)
    clock = (Fraction(stream.start_time or 0) * (stream.time_base or 1), 1.0 / info.fps)
    return container, stream, clock


def _wall(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def kept_stages(path: Path, fps: float | None, pre: Preprocess) -> dict[str, float]:
    """Wall seconds per kept frame of each stage of stream_frames on `path` at `fps`."""
    container, stream, clock = _opened(path)
    demux, _ = _wall(lambda: sum(1 for _ in container.demux(stream)))
    container.close()
    container, stream, clock = _opened(path)
    full, kept = _wall(lambda: [f for _, _, f in video.FullDecode(container, stream, *clock, fps)])
    container.close()
    container, stream, clock = _opened(path)
    spare = bool(fps and fps < float(stream.average_rate))
    spared, _ = _wall(lambda: sum(1 for _ in video.sampled_frames(path, container, stream, clock, fps, spare, 0)[0]))
    container.close()
    convert, _ = _wall(lambda: [video.to_rgb(f, pre) for f in kept])
    whole, _ = _wall(lambda: list(video.stream_frames(path, fps, pre)))
    seconds = {"demux": demux, "decode every frame": full, "decode as stream_frames": spared, "to_rgb": convert,
               "stream_frames": whole}
    return {"kept": len(kept), **{k: v / len(kept) for k, v in seconds.items()}}


def model_seconds() -> float:
    """Wall seconds per frame of the default backbone compiled by OpenVINO (float32), batches of 32."""
    import torch

    from featx.backbones import load_backbone
    from featx.config import ExtractConfig

    backbone = load_backbone(ExtractConfig(fps=4.0, runtime="openvino"), "cpu")
    batch = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (32, 224, 224, 3), dtype=np.uint8))
    return timed(lambda: backbone.embed(batch), repeats=5, warmup=1).median / 32


def kept_profile(folder: Path, seconds: float, repeats: int, with_model: bool) -> dict:
    from featx.synth_video import write_video

    pre = Preprocess.from_config((3, 224, 224), 0.875, "bicubic")
    folder.mkdir(parents=True)
    paths = {}
    for name, rate in [("25", Fraction(25)), ("29.97", Fraction(30000, 1001))]:  # x264's defaults: B-frames
        paths[name] = folder / f"x264-{name}.mp4"
        clip = synthetic_clip(np.random.default_rng(0), seconds, round(rate), (640, 360))
        write_video(paths[name], clip, rate, (640, 360))
    runs = defaultdict(list)
    for _ in range(repeats):  # interleaved: every setting once per round
        for name, path in paths.items():
            for fps in (4.0, 1.0, None):
                runs[(name, fps)].append(kept_stages(path, fps, pre))
    model = model_seconds() if with_model else None
    rows = [{"video_fps": name, "fps": fps, **{k: statistics.median(r[k] for r in rs) for k in rs[0]}}
            for (name, fps), rs in runs.items()]
    return {"rows": rows, "model_s_per_frame": model}


KEPT_COLUMNS = [Column("video", ">", 5), Column("--fps", ">", 5), Column("kept", ">", 4), Column("demux", ">", 5),
                Column("decode all", ">", 10), Column("decode spared", ">", 13), Column("to_rgb", ">", 6),
                Column("stream_frames", ">", 13), Column("model (OpenVINO)", ">", 16)]


def kept_table(result: dict) -> str:
    ms = lambda s: f"{s * 1e3:.2f}" if s is not None else "-"  # noqa: E731
    return markdown_table(KEPT_COLUMNS, [
        [r["video_fps"], r["fps"] or "all", r["kept"], ms(r["demux"]), ms(r["decode every frame"]),
         ms(r["decode as stream_frames"]), ms(r["to_rgb"]), ms(r["stream_frames"]), ms(result["model_s_per_frame"])]
        for r in result["rows"]])


COLUMNS = [Column("workers", ">", 7), Column("FFmpeg threads", ">", 14), Column("sws threads", ">", 11),
           Column("frames/s", ">", 8),
           Column("demux", ">", 6), Column("decode", ">", 6), Column("colour", ">", 6), Column("resize+crop", ">", 11),
           Column("to shm + send", ">", 13), Column("worker other", ">", 12), Column("worker CPU", ">", 10),
           Column("main CPU", ">", 8),
           Column("main copy-out", ">", 13)]


def row(run: dict, stages: dict) -> list:
    """CPU milliseconds per frame, summed over the workers (a row's worker columns add up to the workers' CPU)."""
    w = run["worker_per_frame"]
    demux_share = stages["demux"] / stages["demux + decode"]
    colour_share = stages["colour conversion alone"] / (stages["colour conversion alone"] + stages["resize alone (YUV)"])
    transfer = w["shared memory write"] + w["send event"]
    other = w["cpu"] - w["decoder"] - w["to_rgb"] - transfer
    ms = lambda s: f"{s * 1e3:.2f}"  # noqa: E731
    return [run["workers"], run["ffmpeg_threads"], run["sws_threads"] or "auto", f"{run['fps']:.0f}", ms(w["decoder"] * demux_share),
            ms(w["decoder"] * (1 - demux_share)), ms(w["to_rgb"] * colour_share), ms(w["to_rgb"] * (1 - colour_share)),
            ms(transfer), ms(other), ms(w["cpu"]), ms(run["main_cpu_per_frame"]), ms(run["main_copy_out_per_frame"])]


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, nargs="*", default=[], help="also run with these FFmpeg threads per worker")
    parser.add_argument("--sws-threads", type=int, nargs="+", default=[video.SWS_THREADS],
                        help="swscale threads per conversion to compare (0: PyAV's default, one per core)")
    parser.add_argument("--distinct", type=int, default=4, help="distinct clips to encode")
    parser.add_argument("--copies", type=int, default=4, help="links to each clip (videos = distinct x copies)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--size", type=int, nargs=2, default=[340, 256], metavar=("W", "H"))
    parser.add_argument("--input", type=int, default=224, help="backbone input (crop) size; resize shorter side to it / 0.875")
    parser.add_argument("--kept", action="store_true", help="per kept frame stages in one process (3. above)")
    parser.add_argument("--repeats", type=int, default=3, help="--kept: interleaved rounds")
    parser.add_argument("--model", action="store_true", help="--kept: also time the OpenVINO default backbone")
    add_out(parser, "pool_profile.json")
    args = parser.parse_args()
    if args.kept:
        with tempfile.TemporaryDirectory() as tmp:
            result = kept_profile(Path(tmp) / "videos", args.seconds, args.repeats, args.model)
        print(f"wall ms per kept frame, {os.cpu_count()} cores, medians of {args.repeats} interleaved rounds\n")
        print(kept_table(result))
        out = RESULTS / "pool_profile_kept.json" if args.out == str(RESULTS / "pool_profile.json") else args.out
        print(f"wrote {write_results(out, {'args': vars(args), **result})}")
        return
    pre = Preprocess.from_config((3, args.input, args.input), 0.875, "bicubic")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp) / "videos", args.distinct, args.seconds, 25, tuple(args.size), 50, args.copies)
        stages = stage_seconds(paths[: args.distinct], pre)  # with featx's swscale threads (video.SWS_THREADS)
        runs = []
        for workers in args.workers:
            for threads in [None, *args.threads]:
                for sws in args.sws_threads:  # side by side, so that before / after come from one run
                    runs.append(pool_run(paths, pre, workers, threads, sws, Path(tmp) / f"profile-{len(runs)}"))
    print(f"{len(paths)} videos x {int(args.seconds * 25)} frames ({args.size[0]}x{args.size[1]} H.264) -> "
          f"{args.input}x{args.input} bicubic, {os.cpu_count()} cores, every frame kept\n")
    print("one process, one FFmpeg thread, CPU ms per frame: " + ", ".join(f"{k} {v * 1e3:.2f}" for k, v in stages.items()))
    print("\npool: frames/s (wall), and CPU ms per frame in the workers (summed) and in the main process\n")
    print(markdown_table(COLUMNS, [row(r, stages) for r in runs]))
    out = write_results(args.out, {"args": vars(args), "stages_s_per_frame": stages, "runs": runs})
    print(f"wrote {out}")


if __name__ == "__main__":
    mp.freeze_support()
    main()
