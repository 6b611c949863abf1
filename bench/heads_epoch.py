"""Time one training epoch of every classification head on the CPU (or the GPU when present).

Default size, as the heads issue asks: 10,000 sequences x 64 steps x 2048-d features (float16 in memory,
as they come from a store), batch 64, the heads' default options. Prints a table and writes
bench/results/heads_epoch.json.
    python bench/heads_epoch.py
    python bench/heads_epoch.py --videos 2000 --heads avgpool lstm   # quicker
"""

from __future__ import annotations

import platform

import numpy as np
import torch
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, write_results

from featx.backbones import resolve_device
from seqmodels.data import SequenceSet
from seqmodels.registry import heads
from seqmodels.heads import build_head
from seqmodels.protocol import fit
from seqmodels.classifier import TrainConfig, classification_loss


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--heads", nargs="+", default=list(heads("classification")))
    parser.add_argument("--device", default="auto")
    add_out(parser, "heads_epoch.json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    rng = np.random.default_rng(0)
    sequences = [rng.standard_normal((args.steps, args.dim), dtype=np.float32).astype(np.float16) for _ in range(args.videos)]
    data = SequenceSet([str(i) for i in range(args.videos)], sequences, rng.integers(0, args.classes, args.videos))
    rows = []
    for name in args.heads:
        torch.manual_seed(0)
        config = TrainConfig(head=name, batch_size=args.batch_size, budget=1e-4, epochs=1, warmup_epochs=0)
        model = build_head(name, args.dim, args.classes).to(device)
        with Stopwatch() as watch:  # one epoch of the shared protocol (AdamW, schedule, clipping, weight EMA)
            fit(model, list(range(len(data))), classification_loss(data, config, device), config.protocol)
        seconds = watch.seconds
        rows.append({"head": name, "seconds": seconds, "sequences_per_s": args.videos / seconds,
                     "parameters": sum(p.numel() for p in model.parameters())})
        print(f"{name:<12} {seconds:8.1f} s  {args.videos / seconds:8.0f} sequences/s", flush=True)
    print(f"\none epoch, {args.videos} sequences x {args.steps} steps x {args.dim}-d, batch {args.batch_size}, {device} "
          f"({torch.get_num_threads()} threads)")
    columns = [Column("head", "<", 12), Column("parameters", ">", 10), Column("epoch s", ">", 8), Column("sequences/s", ">", 11)]
    print(markdown_table(columns, [[r["head"], f"{r['parameters']:,}", f"{r['seconds']:.1f}", f"{r['sequences_per_s']:.0f}"]
                                   for r in rows]))
    result = {"args": vars(args), "device": str(device), "machine": platform.machine(), "rows": rows}
    write_results(args.out, result, str(device))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
