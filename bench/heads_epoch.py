"""Time one training epoch of every classification head on the CPU (or the GPU when present).

Default size, as the heads issue asks: 10,000 sequences x 64 steps x 2048-d features (float16 in memory,
as they come from a store), batch 64, the heads' default options. Prints a table and writes
bench/results/heads_epoch.json.
    python bench/heads_epoch.py
    python bench/heads_epoch.py --videos 2000 --heads avgpool lstm   # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from seqmodels.data import SequenceSet
from seqmodels.heads import HEADS
from seqmodels.heads import build_head
from seqmodels.protocol import fit
from seqmodels.train import TrainConfig, classification_loss

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(RESULTS / "heads_epoch.json"))
    args = parser.parse_args()
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    rng = np.random.default_rng(0)
    sequences = [rng.standard_normal((args.steps, args.dim), dtype=np.float32).astype(np.float16) for _ in range(args.videos)]
    data = SequenceSet([str(i) for i in range(args.videos)], sequences, rng.integers(0, args.classes, args.videos))
    rows = []
    for name in args.heads:
        torch.manual_seed(0)
        config = TrainConfig(head=name, batch_size=args.batch_size, budget=1e-4, epochs=1, warmup_epochs=0)
        model = build_head(name, args.dim, args.classes).to(device)
        t = time.perf_counter()  # one epoch of the shared protocol (AdamW, schedule, clipping, weight EMA)
        fit(model, list(range(len(data))), classification_loss(data, config, device), config.protocol)
        seconds = time.perf_counter() - t
        rows.append({"head": name, "seconds": seconds, "sequences_per_s": args.videos / seconds,
                     "parameters": sum(p.numel() for p in model.parameters())})
        print(f"{name:<12} {seconds:8.1f} s  {args.videos / seconds:8.0f} sequences/s", flush=True)
    print(f"\none epoch, {args.videos} sequences x {args.steps} steps x {args.dim}-d, batch {args.batch_size}, {device} "
          f"({torch.get_num_threads()} threads)")
    print(f"| {'head':<12} | {'parameters':>10} | {'epoch s':>8} | {'sequences/s':>11} |")
    print(f"|{'-' * 14}|{'-' * 11}:|{'-' * 9}:|{'-' * 12}:|")
    for r in rows:
        print(f"| {r['head']:<12} | {r['parameters']:>10,} | {r['seconds']:>8.1f} | {r['sequences_per_s']:>11.0f} |")
    Path(args.out).parent.mkdir(exist_ok=True)
    result = {"args": vars(args), "device": str(device), "machine": platform.machine(), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
