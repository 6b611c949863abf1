"""Would int8 keep the features? OpenVINO float32 vs int8 (NNCF post-training quantization) against torch float32.

The CPU-runtime issue asks for int8 "through a calibrated, documented path if it keeps features within" cosine
0.9999 of torch float32 per row. This measures it before any such path is built: the backbone is converted to
OpenVINO IR, quantized by NNCF's `nncf.quantize` (its defaults: 8-bit symmetric weights, per-tensor activations
calibrated on `--calibration` frames; `--preset mixed` for asymmetric activations) on frames of one set of
synthetic videos, and compared with torch float32 on frames of other videos: the minimum cosine and largest
relative L2 per row, and frames/s of each on batches of 32 (model alone, inputs decoded and normalised already).

NNCF is not a featx dependency; to run this: pip install nncf (3.4 measured).
    python bench/int8.py
    python bench/int8.py --backbones tf_efficientnet_lite0 resnet50 --calibration 300
Prints a table and writes bench/results/int8_cpu.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import Column, add_out, make_parser, make_videos, markdown_table, results_path, timed, write_results

from featx.backbones import load_backbone, openvino_model
from featx.config import DEFAULT_BACKBONE, ExtractConfig
from featx.video import FrameChunk, stream_frames


def inputs_of(paths: list[Path], backbone, count: int) -> np.ndarray:
    """(count, 3, H, W) float32 inputs of the backbone: frames at 4 fps, resized, cropped and normalised."""
    chunks = []
    for path in paths:
        chunks += [c.pixels for c in stream_frames(path, 4.0, backbone.preprocess) if isinstance(c, FrameChunk)]
    pixels = torch.from_numpy(np.concatenate(chunks)[:count]).permute(0, 3, 1, 2).float().div_(255)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (backbone.config.mean, backbone.config.std))
    return ((pixels - mean) / std).numpy()


def agreement(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    got, want = got.astype(np.float64), want.astype(np.float64)
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    return float(cosine.min()), float((np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)).max())


def in_batches(fn, x: np.ndarray) -> np.ndarray:
    return np.concatenate([fn(x[i : i + 32]) for i in range(0, len(x), 32)])


def measure(name: str, calibration: np.ndarray, held_out: np.ndarray, preset: str) -> dict:
    import nncf

    ov = openvino_model.import_openvino()  # telemetry off, as featx imports it
    weights = "auto" if name == DEFAULT_BACKBONE else "random-init"
    torch_model = load_backbone(ExtractConfig(backbone=name, weights=weights, runtime="torch")).model
    with torch.inference_mode():
        want = in_batches(lambda b: torch_model(torch.from_numpy(b)).float().numpy(), held_out)
    with torch.inference_mode():
        model = ov.convert_model(torch_model, example_input=torch.zeros(1, *held_out.shape[1:]))
    model.reshape([-1, *held_out.shape[1:]])
    quantized = nncf.quantize(model, nncf.Dataset(list(calibration), lambda x: x[None]),
                              preset=nncf.QuantizationPreset(preset), subset_size=len(calibration))
    row = {"backbone": name, "weights": "bundled ImageNet" if weights == "auto" else "random", "preset": preset,
           "calibration_frames": len(calibration), "held_out_frames": len(held_out)}
    batch = torch.from_numpy(held_out[:32])
    with torch.inference_mode():
        row["torch_fps"] = 32 / timed(lambda: torch_model(batch), repeats=3, warmup=1).median
    for label, net, hint in (("ov_f32", model, "f32"), ("ov_int8", quantized, "f32")):
        compiled = openvino_model.shared_core(ov).compile_model(net, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                        "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        request = compiled.create_infer_request()
        run = lambda b: request.infer([b])[compiled.output(0)].copy()  # noqa: E731
        row[f"{label}_fps"] = 32 / timed(lambda: run(held_out[:32]), repeats=3, warmup=1).median
        row[f"{label}_min_cosine"], row[f"{label}_max_rel_l2"] = agreement(in_batches(run, held_out), want)
    return row


FIELDS = [("backbone", "backbone", ""), ("weights", "weights", ""), ("preset", "preset", ""),
          ("torch f32 f/s", "torch_fps", ".1f"), ("OV f32 f/s", "ov_f32_fps", ".1f"), ("OV int8 f/s", "ov_int8_fps", ".1f"),
          ("f32 min cos", "ov_f32_min_cosine", ".7f"), ("int8 min cos", "ov_int8_min_cosine", ".5f"),
          ("int8 max rel L2", "ov_int8_max_rel_l2", ".3f")]


def table(rows: list[dict]) -> str:
    columns = [Column(header, "<" if not fmt else ">") for header, _, fmt in FIELDS]
    return markdown_table(columns, [[format(row[key], fmt) for _, key, fmt in FIELDS] for row in rows])


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--backbones", nargs="+", default=[DEFAULT_BACKBONE, "resnet50"])
    parser.add_argument("--calibration", type=int, default=160, help="calibration frames (4 fps, 640x360 videos)")
    parser.add_argument("--held-out", type=int, default=96, help="frames compared with torch float32")
    parser.add_argument("--presets", nargs="+", default=["performance", "mixed"])
    add_out(parser, "int8_cpu.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        seconds = (args.calibration + args.held_out) / 4 / 2 + 1
        paths = make_videos(Path(tmp) / "v", distinct=4, seconds=seconds, fps=25, size=(640, 360), gop=250, copies=1)
        for name in args.backbones:
            probe = load_backbone(ExtractConfig(backbone=name, weights="random-init", runtime="torch"))
            calibration = inputs_of(paths[:2], probe, args.calibration)
            held_out = inputs_of(paths[2:], probe, args.held_out)
            for preset in args.presets:
                rows.append(measure(name, calibration, held_out, preset))
                print(table(rows[-1:]), flush=True)
    print(table(rows))
    write_results(results_path(args.out, "int8_cpu.json", "cpu"), {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
