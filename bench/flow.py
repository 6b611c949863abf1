"""Optical flow speed on this machine: frame pairs per second of `featx.flow.optical_flow` (Farneback) at the
backbones' input sizes, on a panning synthetic clip. Prints a table and writes bench/results/flow.json.
    python bench/flow.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from featx.flow import flow_stacks, optical_flow

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for size in (112, 224):
        big = np.kron(rng.uniform(0, 255, (size // 8 + 8, size // 8 + 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        frames = np.stack([big[k : k + size, 2 * k : 2 * k + size] for k in range(17)])
        optical_flow(frames[0], frames[1])  # warm-up
        t = time.perf_counter()
        for k in range(16):
            optical_flow(frames[k], frames[k + 1])
        pairs = 16 / (time.perf_counter() - t)
        t = time.perf_counter()
        flow_stacks(frames, 5)
        stacks = len(frames) / (time.perf_counter() - t)
        rows.append({"size": size, "farneback_pairs_per_s": pairs, "stacks_L5_per_s": stacks})
    print("| input | Farneback frame pairs/s | stacks of L=5 per s |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['size']}x{r['size']} | {r['farneback_pairs_per_s']:.1f} | {r['stacks_L5_per_s']:.1f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "flow.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
