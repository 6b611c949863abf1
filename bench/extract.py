"""Extraction throughput and memory.

1. frames/s of `featx extract` end to end vs the backbone alone on the same frames (same batch, device) vs a
   naive loop (decode a whole video into memory, then run the model), all in one run on one machine;
2. peak RSS (main process + decoding workers) and wall time extracting a long low-resolution synthetic
   video vs a 1-minute one.

Prints a table and writes JSON to bench/results/extract.json.
    python bench/extract.py                    # the defaults used for the README's table
    python bench/extract.py --long-minutes 5   # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from featx.backbones import load_backbone
from featx.config import ExtractConfig
from featx.extract import RunOptions, extract
from featx.inputs import collect_inputs
from featx.synth import make_trimmed, make_untrimmed
from featx.video import FrameChunk, stream_frames

RESULTS = Path(__file__).parent / "results"


def _model_alone(backbone, pixels: np.ndarray, batch: int) -> float:
    """frames/s of backbone.embed on frames already decoded and resized in memory."""
    backbone.embed(torch.from_numpy(pixels[:batch]))  # warm-up
    t = time.perf_counter()
    for s in range(0, len(pixels), batch):
        backbone.embed(torch.from_numpy(pixels[s : s + batch]))
    return len(pixels) / (time.perf_counter() - t)


def _naive(backbone, paths: list[Path], batch: int) -> float:
    """frames/s of the plain script: decode each whole video, then run the model on it, serially."""
    import av

    pre, frames = backbone.preprocess, 0
    t = time.perf_counter()
    for path in paths:
        with av.open(str(path)) as c:
            decoded = []
            for f in c.decode(video=0):
                scale = pre.resize_shorter / min(f.width, f.height)
                w, h = round(f.width * scale), round(f.height * scale)
                rgb = f.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
                top, left = (h - pre.crop[0]) // 2, (w - pre.crop[1]) // 2
                decoded.append(rgb[top : top + pre.crop[0], left : left + pre.crop[1]])
        pixels = np.stack(decoded)
        for s in range(0, len(pixels), batch):
            backbone.embed(torch.from_numpy(pixels[s : s + batch]))
        frames += len(pixels)
    return frames / (time.perf_counter() - t)


def throughput(args, tmp: Path) -> dict:
    data = make_trimmed(tmp / "videos", videos=args.videos, seconds=args.seconds, fps=25, size=128, seed=0)
    config = ExtractConfig(backbone=args.backbone)
    backbone = load_backbone(config, args.device)
    pixels = np.concatenate(
        [c.pixels for p in data.videos for c in stream_frames(p, None, backbone.preprocess) if isinstance(c, FrameChunk)]
    )
    model = _model_alone(backbone, pixels, args.batch_size)
    naive = _naive(backbone, data.videos, args.batch_size)
    e2e = {}
    for workers in args.workers:
        options = RunOptions(batch_size=args.batch_size, workers=workers, device=args.device, progress=False)
        summary = extract(collect_inputs([data.folder]), tmp / f"store{workers}", config, options)
        e2e[workers] = summary.frames_per_second
    return {
        "backbone": args.backbone, "device": str(backbone.device), "batch_size": args.batch_size,
        "frames": int(len(pixels)), "videos": args.videos, "model_alone_fps": model, "naive_loop_fps": naive,
        "featx_end_to_end_fps": {str(w): fps for w, fps in e2e.items()},
        "end_to_end_vs_model": {str(w): fps / model for w, fps in e2e.items()},
        "end_to_end_vs_naive": {str(w): fps / naive for w, fps in e2e.items()},
    }


_RSS_SCRIPT = """
import sys, threading, time, psutil
from featx.config import ExtractConfig
from featx.extract import RunOptions, extract
from featx.inputs import collect_inputs
peak, stop = [0], []
def watch():
    me = psutil.Process()
    while not stop:
        try:
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in [me] + me.children(recursive=True)))
        except psutil.Error:
            pass
        time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
t = time.perf_counter()
s = extract(collect_inputs([sys.argv[1]]), sys.argv[2], ExtractConfig(fps=float(sys.argv[3])), RunOptions(progress=False))
stop.append(1)
print(peak[0], time.perf_counter() - t, s.frames)
"""


def long_video(args, tmp: Path) -> list[dict]:
    rows = []
    for minutes in (1, args.long_minutes):
        folder = tmp / f"long{minutes}"
        make_untrimmed(folder, videos=1, seconds=minutes * 60, fps=10, size=64, seed=minutes)
        out = subprocess.run(
            [sys.executable, "-c", _RSS_SCRIPT, str(folder / "untrimmed_000.mp4"), str(tmp / f"s{minutes}"), str(args.long_fps)],
            capture_output=True, text=True, check=True,
        ).stdout.split()
        rows.append({"minutes": minutes, "peak_rss_mb": int(out[0]) / 2**20, "seconds": float(out[1]), "frames": int(out[2])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="decoding processes to compare")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--long-minutes", type=int, default=20)
    parser.add_argument("--long-fps", type=float, default=1.0, help="sampling rate for the long-video runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tp = throughput(args, Path(tmp))
        memory = long_video(args, Path(tmp))
    print(f"\nthroughput, {tp['backbone']} on {tp['device']}, batch {tp['batch_size']}, {tp['frames']} frames")
    print(f"| {'pipeline':<36} | {'frames/s':>8} | {'vs model':>8} | {'vs naive':>8} |")
    print(f"| {'-' * 36} | {'-' * 8}:| {'-' * 8}:| {'-' * 8}:|")
    print(f"| {'model alone (frames in memory)':<36} | {tp['model_alone_fps']:>8.1f} | {1:>8.2f} | {tp['model_alone_fps'] / tp['naive_loop_fps']:>8.2f} |")
    print(f"| {'naive loop (decode all, then model)':<36} | {tp['naive_loop_fps']:>8.1f} | {tp['naive_loop_fps'] / tp['model_alone_fps']:>8.2f} | {1:>8.2f} |")
    for w, fps in tp["featx_end_to_end_fps"].items():
        name = f"featx extract, --workers {w}"
        print(f"| {name:<36} | {fps:>8.1f} | {tp['end_to_end_vs_model'][w]:>8.2f} | {tp['end_to_end_vs_naive'][w]:>8.2f} |")
    print(f"\nlong video (64x64, 10 fps, sampled at {args.long_fps} fps)")
    print(f"| {'minutes':>7} | {'frames':>6} | {'peak RSS MB':>11} | {'seconds':>7} |")
    print(f"| {'-' * 6}:| {'-' * 5}:| {'-' * 10}:| {'-' * 6}:|")
    for r in memory:
        print(f"| {r['minutes']:>7} | {r['frames']:>6} | {r['peak_rss_mb']:>11.0f} | {r['seconds']:>7.1f} |")
    ratio = memory[1]["peak_rss_mb"] / memory[0]["peak_rss_mb"]
    print(f"peak RSS {args.long_minutes} min / 1 min: {ratio:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    result = {"machine": platform.processor() or platform.machine(), "cpus": torch.get_num_threads(),
              "throughput": tp, "long_video": memory, "rss_ratio": ratio}
    (RESULTS / "extract.json").write_text(json.dumps(result, indent=1))
    print(f"\nwrote {RESULTS / 'extract.json'}")


if __name__ == "__main__":
    main()
