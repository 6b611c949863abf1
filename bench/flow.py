"""Optical flow speed on this machine.

1. Farneback frame pairs per second of `featx.flow.optical_flow` at the backbones' input sizes, on a panning
   synthetic clip (one core, no decoding).
2. Where flow runs in the pipeline: flow stacks (L = 5) per second from h264 videos decoded by featx's pool, with
   the flow computed in the decoding workers (`decode_events(..., flow="farneback")`, what `featx extract` does)
   against the flow computed in the main process from the workers' frames (what it did before), for each
   `--workers` (0: decoding and flow both in the main process). The consumer builds the stacks either way, as
   the extraction does; no backbone runs, so this is the ceiling flow sets. Besides stacks per second (wall
   clock, best of `--repeats`), it reports the main process's CPU time per stack: what flow takes from the loop
   that feeds the accelerator, a number that other programs sharing the cores do not change. All rows come
   from one run.
Prints tables and writes bench/results/flow.json. Run it alone (it times every core):
    flock /tmp/featx-heavy.lock python bench/flow.py                   # about 6 minutes on 2 cores
    python bench/flow.py --workers 0 1 2 4 8 --videos 16
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (Column, Stopwatch, add_out, colour_field, make_parser, make_videos, markdown_table, panned,
                     timed, write_results)

from featx.decode_pool import Frames, decode_events
from featx.flow import FlowFields, FlowStacker, flow_stacks, optical_flow
from featx.video import Preprocess


def pair_speed(sizes: list[int]) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        field = colour_field(rng, size, size, 8)
        frames = np.stack([panned(field, k, size, size) for k in range(17)])
        optical_flow(frames[0], frames[1])  # warm-up
        pairs = 16 / timed(lambda: [optical_flow(frames[k], frames[k + 1]) for k in range(16)]).best
        stacks = len(frames) / timed(lambda: flow_stacks(frames, 5)).best
        rows.append({"size": size, "farneback_pairs_per_s": pairs, "stacks_L5_per_s": stacks})
    return rows


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, once joined
    return usage.ru_utime + usage.ru_stime


def flow_run(paths: list[Path], pre: Preprocess, workers: int, in_workers: bool) -> dict:
    """Flow stacks through featx's decoding pool, flow in the workers or in this process: stacks, wall seconds,
    CPU seconds of this process and of the workers."""
    cpu, children = time.process_time(), _children_cpu()
    fields: dict[int, FlowFields] = {}
    stackers: dict[int, FlowStacker] = {}
    count, watch = 0, Stopwatch()
    for event in decode_events(paths, None, pre, workers, flow="farneback" if in_workers else None):
        if not isinstance(event, Frames):
            stacks = stackers.pop(event.video).finish() if event.video in stackers else None
            count += 0 if stacks is None else len(stacks)
            continue
        flow = event.flow if in_workers else fields.setdefault(event.video, FlowFields()).push(event.chunk.pixels)
        stacks = stackers.setdefault(event.video, FlowStacker(5)).push(flow)
        count += 0 if stacks is None else len(stacks)
    return {"stacks": count, "seconds": watch.seconds, "main_cpu": time.process_time() - cpu,
            "workers_cpu": _children_cpu() - children}


def pipeline(workers: list[int], videos: int, seconds: float, size: int, repeats: int) -> list[dict]:
    """Per worker count, flow in the main process vs in the workers, the two runs interleaved `repeats` times
    (best wall time of each kept), so that a burst of other load hits both alike."""
    pre = Preprocess(size, (size, size), "bilinear")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp) / "v", videos, seconds, 25, (size * 4 // 3, size), gop=25, copies=1)
        flow_run(paths[:1], pre, 0, True)  # warm caches (OpenCV, the file system)
        for n in workers:
            runs = {False: [], True: []}
            for _ in range(repeats):
                for where in runs:
                    runs[where].append(flow_run(paths, pre, n, in_workers=where))
            main, pool = (min(runs[w], key=lambda r: r["seconds"]) for w in (False, True))
            rows.append({"workers": n, "stacks": main["stacks"],
                         "main_process_stacks_per_s": main["stacks"] / main["seconds"],
                         "in_workers_stacks_per_s": pool["stacks"] / pool["seconds"],
                         "ratio": main["seconds"] / pool["seconds"],
                         "main_cpu_ms_per_stack": {"flow_in_main": 1e3 * main["main_cpu"] / main["stacks"],
                                                   "flow_in_workers": 1e3 * pool["main_cpu"] / pool["stacks"]},
                         "workers_cpu_ms_per_stack": {"flow_in_main": 1e3 * main["workers_cpu"] / main["stacks"],
                                                      "flow_in_workers": 1e3 * pool["workers_cpu"] / pool["stacks"]},
                         "runs": {"flow_in_main": runs[False], "flow_in_workers": runs[True]}})
    return rows


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224], help="square frame sides, in pixels")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="decoding processes to compare")
    parser.add_argument("--videos", type=int, default=4, help="h264 videos of --seconds at 25 fps, 4:3")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=224, help="the flow's frame side (the backbone's input)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of each setting; the best is kept")
    add_out(parser, "flow.json")
    args = parser.parse_args()
    pairs = pair_speed(args.sizes)
    columns = [Column("input", "<"), Column("Farneback frame pairs/s"), Column("stacks of L=5 per s")]
    print(markdown_table(columns, [[f"{r['size']}x{r['size']}", f"{r['farneback_pairs_per_s']:.1f}",
                                    f"{r['stacks_L5_per_s']:.1f}"] for r in pairs]))
    rows = pipeline(args.workers, args.videos, args.seconds, args.size, args.repeats)
    print(f"\n{args.videos} videos x {args.seconds:g} s at 25 fps, flow at {args.size}x{args.size}, "
          f"{os.cpu_count()} cores; stacks/s: wall clock, best of {args.repeats}")
    columns = [Column("workers"), Column("flow in main: stacks/s"), Column("flow in workers: stacks/s"),
               Column("ratio"), Column("main CPU ms/stack: flow in main"), Column("... flow in workers")]
    print(markdown_table(columns, [[r["workers"], f"{r['main_process_stacks_per_s']:.1f}",
                                    f"{r['in_workers_stacks_per_s']:.1f}", f"{r['ratio']:.2f}",
                                    f"{r['main_cpu_ms_per_stack']['flow_in_main']:.2f}",
                                    f"{r['main_cpu_ms_per_stack']['flow_in_workers']:.2f}"] for r in rows]))
    load = os.getloadavg()[0]
    out = write_results(args.out, {"rows": pairs, "pipeline": rows, "pipeline_settings": {
        "videos": args.videos, "seconds": args.seconds, "fps": 25, "size": args.size, "flow_len": 5,
        "repeats": args.repeats, "load_average_1min_at_end": load}})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
