"""Extraction throughput: featx end to end vs the backbone alone vs a plain script, per backbone and batch size.

- model alone: the backbone on frames already decoded, resized and (on CUDA) already on the card: the ceiling;
- plain script: serial PyAV decode of each whole video in this process, then the same backbone (same precision,
  channels_last) on it in batches of 32;
- featx: `featx.pipeline.extract` end to end (decoding workers, batching, writing the store).

`--decoders pyav nvdec` adds, per backbone and batch size, rows with `--decoder nvdec` (featx.nvdec: NVDEC decodes
in the main process, frames stay on the card and are resized there; "workers" is then 0 and "decode only" counts
NVDEC's frames, synchronised, without the model).

The videos are `--size` h264 clips with a `--gop`-frame keyframe spacing; to reach `--frames` without encoding
them all, the distinct clips are linked under several names. On CUDA the GPU's utilisation is sampled during
each featx run (nvidia-ml-py). Weights are random (`--random-init`): throughput does not depend on them.

Prints a table and writes JSON to bench/results/throughput_<device>.json.
    python bench/throughput.py                                   # CPU defaults (the README's CPU table)
    python bench/throughput.py --device cuda --frames 40000 --batch-sizes 32 128
    python bench/throughput.py --device cuda --batch-sizes 128 --decoders pyav nvdec   # PyAV pool vs NVDEC
"""

from __future__ import annotations

import dataclasses
import os
import platform
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from _common import (Column, Stopwatch, add_out, make_parser, make_videos, markdown_table, results_path, table_header,
                     table_row, timed, write_results)
from _common import plain_script as run_plain_script

from featx.backbones import load_backbone
from featx.config import ExtractConfig
from featx.decode_pool import Frames, decode_events
from featx.pipeline import RunOptions, auto_workers, extract
from featx.inputs import collect_inputs
from featx.store import read_config
from featx.video import FrameChunk, stream_frames


def decode_only(paths: list[Path], pre, workers: int) -> float:
    """frames/s of featx's decoding pool alone (frames received and dropped): the ceiling for end to end."""
    frames, watch = 0, Stopwatch()
    for event in decode_events(paths, None, pre, workers):
        frames += len(event.chunk.index) if isinstance(event, Frames) else 0
    return frames / watch.seconds


def decode_only_nvdec(paths: list[Path], pre, device) -> float:
    """frames/s of NVDEC alone (featx.nvdec's events, frames dropped once on the card): its ceiling end to end."""
    import dataclasses

    from featx.nvdec import nvdec_events, unavailable

    if (why := unavailable(device)) is not None:  # the featx run falls back to PyAV (its row says so)
        print(f"no NVDEC decode-only figure: {why}")
        return float("nan")
    pre = dataclasses.replace(pre, resize_on="device")
    frames, watch = 0, Stopwatch()
    for event in nvdec_events(paths, None, pre, device):
        frames += len(event.chunk.index) if isinstance(event, Frames) else 0
    _sync(device)
    return frames / watch.seconds


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_alone(backbone, pixels: np.ndarray, batch: int, frames: int) -> float:
    """frames/s of the backbone on `frames` frames cycled from `pixels`, already on its device."""
    x = torch.from_numpy(pixels).to(backbone.device)
    starts = [s % (len(x) - batch + 1) for s in range(0, frames, batch)]
    for s in starts[:3]:  # warm-up (cuDNN picks its algorithms here)
        backbone.forward(x[s : s + batch])
    seconds = timed(lambda: [backbone.forward(x[s : s + batch]) for s in starts], sync=lambda: _sync(backbone.device)).best
    return len(starts) * batch / seconds


def plain_script(backbone, paths: list[Path], batch: int = 32) -> float:
    """frames/s of the plain script: decode each whole video with PyAV, then run the model on it, serially.
    The first video is run once untimed first (the model's warm-up for its batch shapes)."""
    run_plain_script(backbone, paths[:1], batch=batch)
    timing = timed(lambda: run_plain_script(backbone, paths, batch=batch))
    return timing.result / timing.best


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
    config = ExtractConfig(backbone=name, weights="random-init", precision=args.precision, runtime=args.runtime)
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
        runs = [(w, False, "pyav") for w in args.workers or [auto_workers(device.type)]] if "pyav" in args.decoders else []
        runs += [(runs[0][0], True, "pyav")] if runs and name in args.compile else []
        runs += [(0, False, "nvdec")] if "nvdec" in args.decoders else []
        for workers, compiled, decoder in runs:
            if compiled:  # the ceiling of the compiled model
                fast = load_backbone(config, args.device)
                fast.compile(batch)
                model = model_alone(fast, pixels, batch, args.frames)
            if (workers, decoder) not in decoded:
                decoded[workers, decoder] = (decode_only_nvdec(paths, backbone.preprocess, device) if decoder == "nvdec"
                                             else decode_only(paths, backbone.preprocess, workers))
            options = RunOptions(batch_size=batch, workers=workers, device=args.device, progress=False, compile=compiled)
            store = tmp / f"store-{name}-{batch}-{workers}-{compiled}-{decoder}"
            run_config = dataclasses.replace(config, decoder="nvdec", resize_on="device") if decoder == "nvdec" else config
            with GpuSampler(device) as gpu:
                summary = extract(collect_inputs(paths), store, run_config, options)
            assert summary.failed == 0, summary.failures[:3]
            rows.append({
                "backbone": name, "batch_size": batch, "compile": compiled, "precision": backbone.config.precision,
                "decoder": read_config(store).decoder, "workers": workers, "frames": summary.frames,
                "model_alone_fps": model, "plain_script_fps": script, "decode_only_fps": decoded[workers, decoder],
                "featx_fps": summary.frames_per_second, "vs_model": summary.frames_per_second / model,
                "vs_plain_script": summary.frames_per_second / script, "gpu_utilisation_pct": gpu.mean,
            })
            print(table_row(COLUMNS, _cells(rows[-1])), flush=True)
    return rows


COLUMNS = [Column("backbone", "<", 22), Column("batch", ">", 5), Column("decoder", "<", 7), Column("workers", ">", 7), Column("compile", ">", 7),
           Column("model alone", ">", 11), Column("decode only", ">", 11), Column("plain script", ">", 12),
           Column("featx", ">", 8), Column("vs model", ">", 8), Column("vs script", ">", 9), Column("GPU util %", ">", 10)]


def _cells(r: dict) -> list[str]:
    util = f"{r['gpu_utilisation_pct']:.0f}" if r["gpu_utilisation_pct"] is not None else "-"
    return [r["backbone"], r["batch_size"], r.get("decoder", "pyav"), r["workers"], "yes" if r["compile"] else "no", f"{r['model_alone_fps']:.1f}",
            f"{r['decode_only_fps']:.1f}", f"{r['plain_script_fps']:.1f}", f"{r['featx_fps']:.1f}", f"{r['vs_model']:.2f}",
            f"{r['vs_plain_script']:.2f}", util]


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50", "tf_efficientnet_lite0"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--runtime", default="torch", choices=["torch", "openvino", "auto"],
                        help="what runs the backbone in every column (default torch; featx's CPU default, OpenVINO, "
                             "against torch: bench/runtime.py)")
    parser.add_argument("--frames", type=int, default=640, help="frames per featx run (the clips are linked to reach it)")
    parser.add_argument("--model-frames", type=int, default=512, help="distinct frames cycled for the model alone")
    parser.add_argument("--script-videos", type=int, default=4, help="videos decoded by the plain script")
    parser.add_argument("--distinct", type=int, default=4, help="distinct clips to encode")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--size", type=int, nargs=2, default=[340, 256], metavar=("W", "H"))
    parser.add_argument("--gop", type=int, default=50, help="keyframe spacing of the clips, in frames")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="decoding processes to compare (default: featx's auto)")
    parser.add_argument("--decoders", nargs="+", default=["pyav"], choices=["pyav", "nvdec"],
                        help="pyav: the decoding pool; nvdec: featx.nvdec on the GPU (a store that fell back says pyav)")
    parser.add_argument("--compile", nargs="*", default=[], help="backbones to also run with --compile")
    add_out(parser, "throughput_<device>.json")
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
        print(table_header(COLUMNS))
        for name in args.backbones:
            rows += bench_backbone(name, args, paths, Path(tmp))
    print("\n" + markdown_table(COLUMNS, [_cells(r) for r in rows]))
    result = {"device": card, "device_type": device.type, "cpus": os.cpu_count(), "torch": torch.__version__,
              "videos": len(paths), "frames_per_video": per_clip, "size": args.size, "gop": args.gop, "rows": rows}
    out = write_results(results_path(args.out, "throughput_<device>.json", device.type), result, device.type)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
