"""Extraction throughput: featx end to end vs the backbone alone vs a plain script, per backbone and batch size.

- model alone: the backbone on frames already decoded, resized and (on CUDA) already on the card: the ceiling;
- plain script: serial PyAV decode of each whole video in this process, then the same backbone (same precision,
  channels_last) on it in batches of 32;
- featx: `featx.extract.extract` end to end (decoding workers, batching, writing the store).

The videos are `--size` h264 clips with a `--gop`-frame keyframe spacing; to reach `--frames` without encoding
them all, the distinct clips are linked under several names. On CUDA the GPU's utilisation is sampled during
each featx run (nvidia-ml-py). Weights are random (`--random-init`): throughput does not depend on them.

Prints a table and writes JSON to bench/results/throughput_<device>.json.
    python bench/throughput.py                                   # CPU defaults (the README's CPU table)
    python bench/throughput.py --device cuda --frames 40000 --batch-sizes 32 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from featx.backbones import load_backbone
from featx.config import ExtractConfig
from featx.decode_pool import decode_events
from featx.extract import RunOptions, auto_workers, extract
from featx.inputs import collect_inputs
from featx.synth import write_video
from featx.video import FrameChunk, stream_frames

RESULTS = Path(__file__).parent / "results"


def _clip(rng: np.random.Generator, seconds: float, fps: int, size: tuple[int, int]):
    """Frames of a panning smooth colour field with a moving disc and mild sensor noise: a bitrate like
    real low-resolution footage (pure noise would make decoding several times slower than real video)."""
    w, h = size
    coarse = rng.uniform(0, 255, (h // 8 + 16, w // 8 + 16, 3))
    field = np.kron(coarse, np.ones((8, 8, 1))).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(int(seconds * fps)):
        frame = field[t % 64 : t % 64 + h, 2 * t % 64 : 2 * t % 64 + w].astype(np.int16)
        disc = (yy - h / 2 - h / 4 * np.sin(t / 10)) ** 2 + (xx - w / 2 - w / 4 * np.cos(t / 13)) ** 2 < (h / 8) ** 2
        frame[disc] = (255, 40, 40)
        yield np.clip(frame + rng.integers(-6, 7, frame.shape), 0, 255).astype(np.uint8)


def make_videos(folder: Path, distinct: int, seconds: float, fps: int, size: tuple[int, int], gop: int, copies: int):
    """`distinct` clips, each linked `copies` times under its own name (distinct video ids)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for v in range(distinct):
        first = folder / f"clip{v:02d}_000.mp4"
        write_video(first, _clip(rng, seconds, fps, size), fps, size, gop=gop)
        for c in range(1, copies):
            os.link(first, folder / f"clip{v:02d}_{c:03d}.mp4")
    return sorted(folder.glob("*.mp4"))


def decode_only(paths: list[Path], pre, workers: int) -> float:
    """frames/s of featx's decoding pool alone (frames received and dropped): the ceiling for end to end."""
    t, frames = time.perf_counter(), 0
    for event in decode_events(paths, None, pre, workers):
        frames += len(event[2].index) if event[0] == "frames" else 0
    return frames / (time.perf_counter() - t)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_alone(backbone, pixels: np.ndarray, batch: int, frames: int) -> float:
    """frames/s of the backbone on `frames` frames cycled from `pixels`, already on its device."""
    x = torch.from_numpy(pixels).to(backbone.device)
    starts = [s % (len(x) - batch + 1) for s in range(0, frames, batch)]
    for s in starts[:3]:  # warm-up (cuDNN picks its algorithms here)
        backbone.forward(x[s : s + batch])
    _sync(backbone.device)
    t = time.perf_counter()
    for s in starts:
        backbone.forward(x[s : s + batch])
    _sync(backbone.device)
    return len(starts) * batch / (time.perf_counter() - t)


def plain_script(backbone, paths: list[Path], batch: int = 32) -> float:
    """frames/s of the plain script: decode each whole video with PyAV, then run the model on it, serially.
    The first video is run once untimed first (the model's warm-up for its batch shapes)."""
    _plain_script(backbone, paths[:1], batch)
    t = time.perf_counter()
    return _plain_script(backbone, paths, batch) / (time.perf_counter() - t)


def _plain_script(backbone, paths: list[Path], batch: int) -> int:
    import av

    pre, frames = backbone.preprocess, 0
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
    return frames


class GpuSampler:
    """Samples the GPU's utilisation (percent of time a kernel ran) every 50 ms in a thread."""

    def __init__(self, device):
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._handle = None
        if device.type == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                self._handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
                self._nvml = pynvml
            except Exception as exc:  # no NVML: utilisation is reported as unknown
                print(f"no GPU utilisation: {exc}")

    def __enter__(self):
        if self._handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)

    def __exit__(self, *exc) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def bench_backbone(name: str, args, paths: list[Path], tmp: Path) -> list[dict]:
    config = ExtractConfig(backbone=name, weights="random-init", precision=args.precision)
    backbone = load_backbone(config, args.device)
    device = backbone.device
    distinct = [p for p in paths if p.stem.endswith("_000")]
    pixels = np.concatenate(
        [c.pixels for p in distinct for c in stream_frames(p, None, backbone.preprocess) if isinstance(c, FrameChunk)]
    )[: args.model_frames]
    script = plain_script(backbone, paths[: args.script_videos])
    rows, decoded = [], {}
    for batch in args.batch_sizes:
        model = model_alone(backbone, pixels, batch, args.frames)
        runs = [(w, False) for w in args.workers or [auto_workers(device.type)]]
        runs += [(runs[0][0], True)] if name in args.compile else []
        for workers, compiled in runs:
            if compiled:  # the ceiling of the compiled model
                fast = load_backbone(config, args.device)
                fast.compile(batch)
                model = model_alone(fast, pixels, batch, args.frames)
            if (workers, backbone.preprocess) not in decoded:
                decoded[workers, backbone.preprocess] = decode_only(paths, backbone.preprocess, workers)
            options = RunOptions(batch_size=batch, workers=workers, device=args.device, progress=False, compile=compiled)
            store = tmp / f"store-{name}-{batch}-{workers}-{compiled}"
            with GpuSampler(device) as gpu:
                summary = extract(collect_inputs(paths), store, config, options)
            rows.append({
                "backbone": name, "batch_size": batch, "compile": compiled, "precision": backbone.config.precision,
                "workers": workers, "frames": summary.frames, "model_alone_fps": model, "plain_script_fps": script,
                "decode_only_fps": decoded[workers, backbone.preprocess],
                "featx_fps": summary.frames_per_second, "vs_model": summary.frames_per_second / model,
                "vs_plain_script": summary.frames_per_second / script, "gpu_utilisation_pct": gpu.mean,
            })
            print(_row(rows[-1]), flush=True)
    return rows


_HEADER = (
    f"| {'backbone':<22} | {'batch':>5} | {'workers':>7} | {'compile':>7} | {'model alone':>11} | {'decode only':>11} | "
    f"{'plain script':>12} | "
    f"{'featx':>8} | {'vs model':>8} | {'vs script':>9} | {'GPU util %':>10} |"
)


def _row(r: dict) -> str:
    util = f"{r['gpu_utilisation_pct']:.0f}" if r["gpu_utilisation_pct"] is not None else "-"
    return (
        f"| {r['backbone']:<22} | {r['batch_size']:>5} | {r['workers']:>7} | {'yes' if r['compile'] else 'no':>7} | "
        f"{r['model_alone_fps']:>11.1f} | {r['decode_only_fps']:>11.1f} | {r['plain_script_fps']:>12.1f} | {r['featx_fps']:>8.1f} | "
        f"{r['vs_model']:>8.2f} | {r['vs_plain_script']:>9.2f} | {util:>10} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50", "tf_efficientnet_lite0"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--frames", type=int, default=640, help="frames per featx run (the clips are linked to reach it)")
    parser.add_argument("--model-frames", type=int, default=512, help="distinct frames cycled for the model alone")
    parser.add_argument("--script-videos", type=int, default=4, help="videos decoded by the plain script")
    parser.add_argument("--distinct", type=int, default=4, help="distinct clips to encode")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--size", type=int, nargs=2, default=[340, 256], metavar=("W", "H"))
    parser.add_argument("--gop", type=int, default=50, help="keyframe spacing of the clips, in frames")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="decoding processes to compare (default: featx's auto)")
    parser.add_argument("--compile", nargs="*", default=[], help="backbones to also run with --compile")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/throughput_<device>.json)")
    args = parser.parse_args()
    fps = 25
    per_clip = int(args.seconds * fps)
    copies = max(1, -(-args.frames // (per_clip * args.distinct)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp) / "videos", args.distinct, args.seconds, fps, tuple(args.size), args.gop, copies)
        device = load_backbone(ExtractConfig(backbone="resnet18", weights="random-init"), args.device).device
        card = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
        print(f"{len(paths)} videos of {per_clip} frames ({args.size[0]}x{args.size[1]}, gop {args.gop}) on {card}, "
              f"{os.cpu_count()} CPU cores, torch {torch.__version__}")
        print(_HEADER)
        print("|" + "|".join("-" * (len(c)) for c in _HEADER.split("|")[1:-1]) + "|")
        for name in args.backbones:
            rows += bench_backbone(name, args, paths, Path(tmp))
    print("\n" + _HEADER)
    print("|" + "|".join("-" * (len(c)) for c in _HEADER.split("|")[1:-1]) + "|")
    for r in rows:
        print(_row(r))
    result = {"device": card, "device_type": device.type, "cpus": os.cpu_count(), "torch": torch.__version__,
              "videos": len(paths), "frames_per_video": per_clip, "size": args.size, "gop": args.gop, "rows": rows}
    out = Path(args.out) if args.out else RESULTS / f"throughput_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
