"""`--resize-on cpu` vs `--resize-on device`: extraction frames/s and the difference between the two paths' features.

cpu: FFmpeg's scaler converts, resizes and crops each frame in the decoding worker (one swscale call); device: the
worker only converts to RGB at the decoded size, and the batch is resized (torch `interpolate`, antialiased), cropped
and normalised on `--device` (featx.batches.resize_crop). Per source size, `--videos` synthetic h264 clips
(`_common.synthetic_clip`: a panning colour field, a moving disc, sensor noise) are extracted by both paths with the
bundled tf_efficientnet_lite0 (ImageNet weights: features that mean something), float32 storage; the paths take
turns, best of `--repeats` runs each. frames/s is `featx.pipeline.extract`'s own (after loading the model); CPU ms per frame
counts this process and its decoding workers. Since the model's time is the same in both, the stage that differs
is also timed alone, in this process: decode + resize + crop (cpu: `stream_frames` with the resize; device:
`stream_frames` at the decoded size, then `resize_crop` on `--device`, synchronised), frames/s of wall time.
The feature difference is per frame: cosine similarity (mean, min) and the largest absolute difference of any
feature value (max |a - b|, with the features' mean |a| beside it).
    python bench/resize_device.py                                    # this CPU: under 2 minutes on 2 cores
    python bench/resize_device.py --device cuda --videos 8 --seconds 8 --sizes 640 360 1280 720 1920 1080
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import Column, Stopwatch, add_out, make_parser, make_videos, markdown_table, results_path, write_results

from featx.batches import resize_crop
from featx.config import ExtractConfig
from featx.pipeline import RunOptions, auto_workers, extract
from featx.inputs import collect_inputs
from featx.store import load_sequences
from featx.video import FrameChunk, Preprocess, stream_frames

PATHS = ("cpu", "device")


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its finished children (the decoding workers, once joined)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_path(videos: Path, out: Path, path: str, args, workers: int) -> dict:
    """One extraction of `videos` into a fresh store `out` by `path`: frames/s and CPU ms per frame."""
    config = ExtractConfig(dtype="float32", resize_on=path, weights="random-init" if args.random_init else "auto")
    options = RunOptions(batch_size=args.batch_size, workers=workers, device=args.device, progress=False)
    cpu = _cpu_seconds()
    summary = extract(collect_inputs([videos]), out, config, options)
    assert summary.failed == 0, summary.failures
    return {"frames": summary.frames, "fps": summary.frames_per_second,
            "cpu_ms_per_frame": 1000 * (_cpu_seconds() - cpu) / summary.frames}


def preprocess_fps(paths: list[Path], path: str, device: torch.device) -> float:
    """frames/s of decoding `paths` and turning every frame into a 224 x 224 input (EfficientNet-Lite0's
    geometry: shorter side 256, bicubic) by `path`, in this process."""
    pre = Preprocess.from_config((3, 224, 224), 0.875, "bicubic", resize_on=path)
    frames, watch = 0, Stopwatch()
    for p in paths:
        for chunk in stream_frames(p, None, pre):
            if isinstance(chunk, FrameChunk):
                if path == "device":
                    resize_crop(torch.from_numpy(chunk.pixels).to(device), pre)
                frames += len(chunk.index)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return frames / watch.seconds


def feature_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict:
    """Per-frame cosine similarity (mean, min) and max |a - b| over every value, for two stores' sequences."""
    x = np.concatenate([a[k] for k in sorted(a)]).astype(np.float64)
    y = np.concatenate([b[k] for k in sorted(a)]).astype(np.float64)
    cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    return {"rows": len(x), "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
            "max_abs_diff": float(np.abs(x - y).max()), "mean_abs_value": float(np.abs(x).mean())}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]: where the backbone (and the device path's resize) runs")
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 240, 640, 360],
                        help="source sizes as W H pairs")
    parser.add_argument("--videos", type=int, default=2, help="distinct clips per size")
    parser.add_argument("--seconds", type=float, default=1.2, help="length of each clip (25 fps)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--random-init", action="store_true",
                        help="random weights instead of the bundled ones (where the bundled-weights package is missing, "
                             "as on the lent GPU machines; the feature cosine then compares random features)")
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: featx's for the device)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per path and size (best of)")
    add_out(parser, "resize_device_<device>.json")
    args = parser.parse_args()
    if len(args.sizes) % 2:
        parser.error("--sizes takes W H pairs")
    sizes = list(zip(args.sizes[::2], args.sizes[1::2]))
    workers = args.workers if args.workers is not None else auto_workers(args.device.split(":")[0])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in sizes:
            videos = Path(tmp) / f"v{w}x{h}"
            make_videos(videos, args.videos, args.seconds, 25, (w, h), 25, 1)
            runs, stage = {p: [] for p in PATHS}, {p: [] for p in PATHS}
            started = time.monotonic()
            for r in range(args.repeats):
                for p in PATHS:  # the paths take turns, so that load from elsewhere falls on both
                    runs[p].append(run_path(videos, Path(tmp) / f"{p}{w}x{h}-{r}", p, args, workers))
                    stage[p].append(preprocess_fps(sorted(videos.glob("*.mp4")), p, torch.device(args.device)))
            stores = {p: load_sequences(Path(tmp) / f"{p}{w}x{h}-0") for p in PATHS}
            row = {"size": f"{w}x{h}", "frames": runs["cpu"][0]["frames"], "seconds": time.monotonic() - started,
                   **{f"{p}_fps": max(x["fps"] for x in runs[p]) for p in PATHS},
                   **{f"{p}_cpu_ms_per_frame": min(x["cpu_ms_per_frame"] for x in runs[p]) for p in PATHS},
                   **{f"{p}_preprocess_fps": max(stage[p]) for p in PATHS},
                   **feature_difference(stores["cpu"], stores["device"]), "runs": runs}
            rows.append(row)
            print(f"{row['size']}: {row['seconds']:.0f} s", flush=True)
    columns = [Column("source", "<", 9), Column("frames", ">", 6), Column("frames/s cpu / device", ">", 21),
               Column("device / cpu", ">", 12), Column("CPU ms/frame cpu / device", ">", 25),
               Column("decode+resize frames/s cpu / device", ">", 35), Column("cos mean", ">", 8),
               Column("cos min", ">", 7), Column("max abs diff", ">", 12), Column("mean abs", ">", 8)]
    print(f"device {args.device}, workers {workers}, batch {args.batch_size}, tf_efficientnet_lite0 (bundled), "
          f"best of {args.repeats}")
    print(markdown_table(columns, [[
        r["size"], r["frames"], f"{r['cpu_fps']:.1f} / {r['device_fps']:.1f}", f"{r['device_fps'] / r['cpu_fps']:.2f}",
        f"{r['cpu_cpu_ms_per_frame']:.1f} / {r['device_cpu_ms_per_frame']:.1f}",
        f"{r['cpu_preprocess_fps']:.0f} / {r['device_preprocess_fps']:.0f}", f"{r['cos_mean']:.4f}",
        f"{r['cos_min']:.4f}", f"{r['max_abs_diff']:.3f}", f"{r['mean_abs_value']:.3f}"] for r in rows]))
    out = write_results(results_path(args.out, "resize_device_<device>.json", args.device.split(":")[0]),
                        {"args": vars(args), "workers": workers, "rows": rows}, args.device)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
