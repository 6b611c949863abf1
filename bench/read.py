"""Reading a store: `featx.load_sequences` vs `np.load` of the same array, and pandas for reference.

Default: 1,000,000 rows x 512 float16 (10,000 videos x 100 steps), written once with StoreWriter, then
read back: from the Parquet parts (cache=False), a first read that also writes the store's read cache
(featx.feature_cache; timed once), then reads from that cache. Prints a table and writes bench/results/read.json.
    python bench/read.py
    python bench/read.py --videos 1000     # quicker
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, timed, write_results

from featx.config import ExtractConfig
from featx.store import StoreWriter, load_sequences


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3, help="best of")
    add_out(parser, "read.json")
    args = parser.parse_args()
    config = ExtractConfig(backbone="synthetic", weights="random-init", weights_sha256="0" * 64, feature_dim=args.dim,
                           input_size=(3, 1, 1), mean=(0.0,) * 3, std=(1.0,) * 3, interpolation="bilinear", crop_pct=1.0)
    rng = np.random.default_rng(0)
    rows = args.videos * args.steps
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        with Stopwatch() as write:
            block = rng.standard_normal((args.steps, args.dim)).astype(np.float16)
            times = np.arange(args.steps, dtype=np.float64)
            with StoreWriter(tmp / "store", config) as writer:
                for v in range(args.videos):
                    feats = block + np.float16(v % 7)
                    writer.add_video({"path": f"v{v}.mp4", "video_id": f"v{v:06d}", "error": None, "fps": 1.0,
                                      "frames": args.steps, "duration": float(args.steps), "width": 1, "height": 1,
                                      "seconds": 0.0, "finished_at": 0.0},
                                     writer.table(f"v{v:06d}", times, times + 1, times.astype(np.int64),
                                                  times.astype(np.int64) + 1, feats))
        array = np.concatenate([block + np.float16(v % 7) for v in range(args.videos)])  # (rows, dim) float16
        np.save(tmp / "features.npy", array)
        del array
        store_mb = sum(p.stat().st_size for p in (tmp / "store").glob("part-*.parquet")) / 2**20
        npy_mb = (tmp / "features.npy").stat().st_size / 2**20
        store = tmp / "store"
        seconds = {
            "np.load": timed(lambda: np.load(tmp / "features.npy"), args.repeats).best,
            "load_sequences, parts": timed(lambda: load_sequences(store, cache=False), args.repeats).best,
            "load_sequences, 1st": timed(lambda: load_sequences(store), 1).best,  # parts + writing the cache
            "load_sequences, cached": timed(lambda: load_sequences(store), args.repeats).best,
            "pandas.read_parquet": timed(lambda: pd.read_parquet(store), args.repeats).best,
        }
        cache_mb = sum(p.stat().st_size for p in (store / "_cache").iterdir()) / 2**20
        shutil.rmtree(store / "_cache")
    print(f"\n{rows:,} rows x {args.dim} float16 ({args.videos:,} videos x {args.steps} steps); store {store_mb:.0f} MB in "
          f"parquet (+{cache_mb:.0f} MB read cache), {npy_mb:.0f} MB as .npy; written in {write.seconds:.1f} s; best of {args.repeats}")
    columns = [Column("reader", "<", 24), Column("seconds", ">", 7), Column("rows/s", ">", 12), Column("vs np.load", ">", 10)]
    print(markdown_table(columns, [[name, f"{s:.2f}", f"{rows / s:,.0f}", f"{seconds['np.load'] / s:.2f}"]
                                   for name, s in seconds.items()]))
    out = write_results(args.out, {"args": vars(args), "rows": rows, "seconds": seconds, "store_mb": store_mb, "cache_mb": cache_mb,
                                    "npy_mb": npy_mb})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
