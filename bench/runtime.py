"""CPU runtimes: torch float32 vs OpenVINO (float32, bfloat16), the model alone and `featx extract` end to end.

- model alone: frames/s of the backbone on batches of 32 frames at its input size, already decoded and resized;
- cosine: per row, the minimum cosine (and the largest relative L2 distance) of the runtime's features to torch
  float32's, on frames of the synthetic videos below (the backbone's own weights: bundled for the default, random
  for the others, which the table says);
- end to end: `featx extract` (default settings but `--runtime`, `--fps 4`) over `--videos` h264 videos of
  `--seconds` at 640 x 360, 25 fps: frames/s of the whole run, the model's load and conversion excluded (the
  converted model is cached before the timed run, as a second run finds it);
- plain script: the peer a user would write, per backbone: PyAV decodes every frame, keeps the first at or after
  each 1/4 s, resizes and crops it (swscale, bicubic), and torch float32 (channels_last) embeds batches of 32.

Ratios are measured in one run, interleaved on the same machine. Prints a table and writes
bench/results/runtime_cpu.json.
    python bench/runtime.py
    python bench/runtime.py --backbones tf_efficientnet_lite0 resnet50 --videos 4 --seconds 20
    python bench/runtime.py --workers-sweep 0 1 2     # also: end to end per decoding worker count, both runtimes
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import Column, add_out, make_parser, make_videos, markdown_table, results_path, timed, write_results
from _common import plain_script as run_plain_script

from featx.backbones import load_backbone
from featx.config import DEFAULT_BACKBONE, ExtractConfig
from featx.inputs import collect_inputs
from featx.pipeline import RunOptions, extract
from featx.video import FrameChunk, stream_frames

SETTINGS = [("torch", "float32"), ("openvino", "float32"), ("openvino", "bfloat16")]


def frames_of(paths: list[Path], pre, count: int) -> np.ndarray:
    """(count, H, W, 3) uint8 frames of the videos, resized and cropped as the backbone wants them."""
    chunks = []
    for path in paths:
        chunks += [c.pixels for c in stream_frames(path, 4.0, pre) if isinstance(c, FrameChunk)]
        if sum(len(c) for c in chunks) >= count:
            break
    return np.concatenate(chunks)[:count]


def model_alone(backbone, pixels: np.ndarray) -> tuple[float, np.ndarray]:
    """(frames/s on batches of 32, the features of `pixels`)."""
    batch = torch.from_numpy(pixels[:32])
    timing = timed(lambda: backbone.embed(batch), repeats=3, warmup=1)
    features = np.concatenate([backbone.embed(torch.from_numpy(pixels[i : i + 32])).numpy()
                               for i in range(0, len(pixels), 32)])
    return 32 / timing.median, features


def plain_script_fps(backbone, paths: list[Path], fps: float = 4.0) -> float:
    """frames/s of the plain PyAV + torch script at `fps` (the torch float32 backbone; bench/_common.py)."""
    import time

    started = time.perf_counter()
    return run_plain_script(backbone, paths, fps) / (time.perf_counter() - started)


def end_to_end(paths: list[Path], config: ExtractConfig, out: Path, workers: int | None = None) -> float:
    extract(collect_inputs(paths[:1]), out.with_name(out.name + "-warm"), config, RunOptions(progress=False))
    summary = extract(collect_inputs(paths), out, config, RunOptions(progress=False, workers=workers))
    return summary.frames_per_second


def workers_sweep(paths: list[Path], counts: list[int], tmp: Path) -> list[dict]:
    """End to end frames/s of the default backbone per decoding worker count (0: decode in the main process)."""
    rows = []
    for runtime in ("torch", "openvino"):
        config = ExtractConfig(fps=4.0, runtime=runtime)
        for n in counts:
            fps = end_to_end(paths, config, tmp / f"workers-{runtime}-{n}", workers=n)
            rows.append({"runtime": runtime, "workers": n, "end_to_end_fps": fps})
            print(f"{runtime} workers {n}: {fps:.1f} f/s")
    return rows


def bench_backbone(name: str, paths: list[Path], tmp: Path) -> list[dict]:
    weights = "auto" if name == DEFAULT_BACKBONE else "random-init"
    rows, reference, plain = [], None, None
    for runtime, precision in SETTINGS:
        config = ExtractConfig(backbone=name, weights=weights, fps=4.0, runtime=runtime, precision=precision)
        backbone = load_backbone(config, "cpu")
        pixels = frames_of(paths, backbone.preprocess, 96)
        fps, features = model_alone(backbone, pixels)
        plain = plain_script_fps(backbone, paths) if plain is None else plain  # the first setting is torch float32
        reference = features if reference is None else reference
        cosine = (features * reference).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(reference, axis=1)
        rel = np.linalg.norm(features - reference, axis=1) / np.linalg.norm(reference, axis=1)
        e2e = end_to_end(paths, config, tmp / f"{name}-{runtime}-{precision}")
        rows.append({"backbone": name, "weights": "bundled" if weights == "auto" else "random", "runtime": runtime,
                     "precision": precision, "model_alone_fps": fps, "end_to_end_fps": e2e,
                     "min_cosine": float(cosine.min()), "max_rel_l2": float(rel.max()), "plain_script_fps": plain})
        print(f"{name} {runtime} {precision}: model {fps:.1f} f/s, end to end {e2e:.1f} f/s, min cosine {cosine.min():.7f}")
    base = rows[0]
    for r in rows:
        r["model_vs_torch"] = r["model_alone_fps"] / base["model_alone_fps"]
        r["end_to_end_vs_torch"] = r["end_to_end_fps"] / base["end_to_end_fps"]
        r["end_to_end_vs_model"] = r["end_to_end_fps"] / r["model_alone_fps"]
        r["end_to_end_vs_plain_script"] = r["end_to_end_fps"] / r["plain_script_fps"]
    return rows


COLUMNS = [Column("backbone", "<", 22), Column("runtime", "<", 8), Column("precision", "<", 9),
           Column("model alone", ">", 11), Column("x torch", ">", 7), Column("end to end", ">", 10),
           Column("x torch", ">", 7), Column("x plain", ">", 7), Column("e2e/model", ">", 9), Column("min cosine", ">", 10),
           Column("max rel L2", ">", 10)]


def _cells(r: dict) -> list[str]:
    return [f"{r['backbone']} ({r['weights']})", r["runtime"], r["precision"], f"{r['model_alone_fps']:.1f}",
            f"{r['model_vs_torch']:.2f}", f"{r['end_to_end_fps']:.1f}", f"{r['end_to_end_vs_torch']:.2f}",
            f"{r['end_to_end_vs_plain_script']:.2f}",
            f"{r['end_to_end_vs_model']:.2f}", f"{r['min_cosine']:.7f}", f"{r['max_rel_l2']:.1e}"]


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--backbones", nargs="+", default=[DEFAULT_BACKBONE, "resnet50"])
    parser.add_argument("--videos", type=int, default=2, help="distinct 640 x 360 h264 videos")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers-sweep", type=int, nargs="*", default=[], metavar="N")
    add_out(parser, "runtime_cpu.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_videos(Path(tmp) / "videos", args.videos, args.seconds, 25, (640, 360), 25, 1)
        rows = [r for name in args.backbones for r in bench_backbone(name, paths, Path(tmp))]
        sweep = workers_sweep(paths, args.workers_sweep, Path(tmp))
    print(markdown_table(COLUMNS, [_cells(r) for r in rows]))
    if sweep:
        print(markdown_table([Column("runtime", "<", 8), Column("workers", ">", 7), Column("end to end", ">", 10)],
                             [[r["runtime"], str(r["workers"]), f"{r['end_to_end_fps']:.1f}"] for r in sweep]))
    write_results(results_path(args.out, "runtime_cpu.json", "cpu"), {"rows": rows, "workers_sweep": sweep,
                                                            "videos": args.videos, "seconds": args.seconds, "fps": 4.0},
                  "cpu")


if __name__ == "__main__":
    main()
