"""Reading a store: `featx.load_sequences` vs `np.load` of the same array, and pandas for reference.

Default: 1,000,000 rows x 512 float16 (10,000 videos x 100 steps), written once with StoreWriter, then
read back. Prints a table and writes bench/results/read.json.
    python bench/read.py
    python bench/read.py --videos 1000     # quicker
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from featx.config import ExtractConfig
from featx.store import StoreWriter, load_sequences

RESULTS = Path(__file__).parent / "results"


def _best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = ExtractConfig(backbone="synthetic", weights="random-init", weights_sha256="0" * 64, feature_dim=args.dim,
                           input_size=(3, 1, 1), mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="bilinear", crop_pct=1.0)
    rng = np.random.default_rng(0)
    rows = args.videos * args.steps
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        block = rng.standard_normal((args.steps, args.dim)).astype(np.float16)
        times = np.arange(args.steps, dtype=np.float64)
        with StoreWriter(tmp / "store", config) as writer:
            for v in range(args.videos):
                feats = block + np.float16(v % 7)
                writer.add_video({"path": f"v{v}.mp4", "video_id": f"v{v:06d}", "error": None, "fps": 1.0, "frames": args.steps,
                                  "duration": float(args.steps), "width": 1, "height": 1, "seconds": 0.0, "finished_at": 0.0},
                                 writer.table(f"v{v:06d}", times, times + 1, times.astype(np.int64), times.astype(np.int64) + 1, feats))
        write_seconds = time.perf_counter() - t
        array = np.concatenate([block + np.float16(v % 7) for v in range(args.videos)])  # (rows, dim) float16
        np.save(tmp / "features.npy", array)
        del array
        store_mb = sum(p.stat().st_size for p in (tmp / "store").glob("part-*.parquet")) / 2**20
        npy_mb = (tmp / "features.npy").stat().st_size / 2**20
        seconds = {
            "np.load": _best_of(lambda: np.load(tmp / "features.npy"), args.repeats),
            "featx.load_sequences": _best_of(lambda: load_sequences(tmp / "store"), args.repeats),
            "pandas.read_parquet": _best_of(lambda: pd.read_parquet(tmp / "store"), args.repeats),
        }
    print(f"\n{rows:,} rows x {args.dim} float16 ({args.videos:,} videos x {args.steps} steps); store {store_mb:.0f} MB in "
          f"parquet, {npy_mb:.0f} MB as .npy; written in {write_seconds:.1f} s; best of {args.repeats}")
    print(f"| {'reader':<22} | {'seconds':>7} | {'rows/s':>12} | {'vs np.load':>10} |")
    print(f"|{'-' * 24}|{'-' * 8}:|{'-' * 13}:|{'-' * 11}:|")
    for name, s in seconds.items():
        print(f"| {name:<22} | {s:>7.2f} | {rows / s:>12,.0f} | {seconds['np.load'] / s:>10.2f} |")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "read.json").write_text(json.dumps({"args": vars(args), "rows": rows, "seconds": seconds,
                                                   "store_mb": store_mb, "npy_mb": npy_mb}, indent=1))
    print(f"wrote {RESULTS / 'read.json'}")


if __name__ == "__main__":
    main()
