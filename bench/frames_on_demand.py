"""What `featx predict --adaptive` saves on frames its head skips: featx.frames_on_demand.FramesOnDemand taking one frame after
every `gap` skipped ones, vs decoding and resizing every frame (featx.video.stream_frames), in CPU seconds.

A synthetic H.264 clip (default 20 s of 640x360 at 25 fps, keyframes every 25 frames), every frame sampled,
resized and cropped to 224 x 224. Small gaps save the conversion of skipped frames; once the next needed frame
lies further on than a seek to its keyframe costs (featx.seek.reach), the frames in between are not decoded.
    python bench/frames_on_demand.py
    python bench/frames_on_demand.py --gop 250     # keyframes far apart: conversion savings only
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import Column, add_out, make_parser, make_videos, markdown_table, write_results

from featx.frames_on_demand import FramesOnDemand
from featx.video import FrameChunk, Preprocess, stream_frames


def every_frame(path: Path, pre: Preprocess) -> int:
    return sum(len(c.index) for c in stream_frames(path, None, pre) if isinstance(c, FrameChunk))


def on_demand(path: Path, pre: Preprocess, gap: int) -> tuple[int, int, int]:
    """(frames taken, frames decoded, seeks) taking one frame after every `gap` passed over."""
    source, taken = FramesOnDemand(path, None, pre), 0
    try:
        while source.skip(gap) == gap and source.take() is not None:
            taken += 1
    finally:
        source.close()
    return taken, source.decoded, source.seeks


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=int, nargs=2, default=[640, 360], metavar=("W", "H"))
    parser.add_argument("--gop", type=int, default=25, help="keyframe spacing, in frames")
    parser.add_argument("--gaps", type=int, nargs="+", default=[1, 3, 7, 15, 30])
    parser.add_argument("--repeats", type=int, default=2, help="best of")
    add_out(parser, "frames_on_demand.json")
    args = parser.parse_args()
    pre = Preprocess.from_config((3, 224, 224), 0.875, "bicubic")
    with tempfile.TemporaryDirectory() as tmp:
        path = make_videos(Path(tmp) / "videos", 1, args.seconds, 25, tuple(args.size), args.gop, 1)[0]
        cpu = lambda fn: min(_cpu(fn) for _ in range(args.repeats))  # noqa: E731
        frames = every_frame(path, pre)
        base = cpu(lambda: every_frame(path, pre))
        rows = []
        for gap in args.gaps:
            taken, decoded, seeks = on_demand(path, pre, gap)
            rows.append({"gap": gap, "taken": taken, "decoded": decoded, "seeks": seeks,
                         "cpu_s": cpu(lambda: on_demand(path, pre, gap))})
    print(f"{frames} frames ({args.size[0]}x{args.size[1]}, keyframes every {args.gop}); every frame decoded and "
          f"resized: {base:.2f} s CPU (best of {args.repeats})")
    columns = [Column("gap", ">", 3), Column("taken", ">", 5), Column("decoded", ">", 7), Column("seeks", ">", 5),
               Column("CPU s", ">", 5), Column("vs every frame", ">", 14)]
    print(markdown_table(columns, [[r["gap"], r["taken"], r["decoded"], r["seeks"], f"{r['cpu_s']:.2f}",
                                    f"{r['cpu_s'] / base:.2f}"] for r in rows]))
    out = write_results(args.out, {"args": vars(args), "frames": frames, "every_frame_cpu_s": base, "rows": rows})
    print(f"wrote {out}")


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


if __name__ == "__main__":
    main()
