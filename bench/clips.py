"""Clip backbones on this machine: clips/s and frames/s of each model alone (clips already in memory).

Random weights (speed does not depend on them), float32, batch of `--batch` clips of `--clip-len` frames.
Prints a table and writes JSON to bench/results/clips_<device>.json.
    python bench/clips.py
"""

from __future__ import annotations

import torch
from _common import Column, add_out, make_parser, markdown_table, results_path, timed, write_results

from featx.backbones import load_backbone
from featx.config import ExtractConfig

MODELS = [  # (backbone, inflate)
    ("r3d_18", None), ("mc3_18", None), ("r2plus1d_18", None), ("c3d", None), ("resnet18", "mean"), ("resnet50", "mean"),
]


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    add_out(parser, "clips_<device>.json")
    args = parser.parse_args()
    rows = []
    for name, inflate in MODELS:
        config = ExtractConfig(backbone=name, weights="random-init", clip_len=args.clip_len, inflate=inflate, precision="float32")
        backbone = load_backbone(config, args.device)
        _, h, w = backbone.config.input_size
        clips = torch.randint(0, 256, (args.batch, args.clip_len, h, w, 3), dtype=torch.uint8, device=backbone.device)
        sync = torch.cuda.synchronize if backbone.device.type == "cuda" else None
        seconds = timed(lambda: backbone.forward(clips), args.repeats, warmup=1, sync=sync).mean
        label = f"{name} (inflated, {inflate})" if inflate else name
        rows.append({"backbone": label, "input": f"{args.clip_len}x{h}x{w}", "dim": backbone.config.feature_dim,
                     "clips_per_s": args.batch / seconds, "frames_per_s": args.batch * args.clip_len / seconds})
        print(rows[-1], flush=True)
    columns = [Column("backbone", "<"), Column("input", "<"), Column("D"), Column("clips/s"), Column("frames/s")]
    print("\n" + markdown_table(columns, [[r["backbone"], r["input"], r["dim"], f"{r['clips_per_s']:.2f}",
                                          f"{r['frames_per_s']:.1f}"] for r in rows]))
    device = args.device.split(":")[0]
    out = write_results(results_path(args.out, "clips_<device>.json", device), {"args": vars(args), "rows": rows}, args.device)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
