"""Clip backbones on this machine: clips/s and frames/s of each model alone (clips already in memory).

Random weights (speed does not depend on them), float32, batch of `--batch` clips of `--clip-len` frames.
Prints a table and writes JSON to bench/results/clips_<device>.json.
    python bench/clips.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from featx.backbones import load_backbone
from featx.config import ExtractConfig

RESULTS = Path(__file__).parent / "results"
MODELS = [  # (backbone, inflate)
    ("r3d_18", None), ("mc3_18", None), ("r2plus1d_18", None), ("c3d", None), ("resnet18", "mean"), ("resnet50", "mean"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = []
    for name, inflate in MODELS:
        config = ExtractConfig(backbone=name, weights="random-init", clip_len=args.clip_len, inflate=inflate, precision="float32")
        backbone = load_backbone(config, args.device)
        _, h, w = backbone.config.input_size
        clips = torch.randint(0, 256, (args.batch, args.clip_len, h, w, 3), dtype=torch.uint8, device=backbone.device)
        backbone.forward(clips)  # warm-up
        t = time.perf_counter()
        for _ in range(args.repeats):
            backbone.forward(clips)
        if backbone.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - t) / args.repeats
        label = f"{name} (inflated, {inflate})" if inflate else name
        rows.append({"backbone": label, "input": f"{args.clip_len}x{h}x{w}", "dim": backbone.config.feature_dim,
                     "clips_per_s": args.batch / seconds, "frames_per_s": args.batch * args.clip_len / seconds})
        print(rows[-1], flush=True)
    print("\n| backbone | input | D | clips/s | frames/s |\n|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['backbone']} | {r['input']} | {r['dim']} | {r['clips_per_s']:.2f} | {r['frames_per_s']:.1f} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"clips_{args.device.split(':')[0]}.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
