"""Temporal activity detection, every head at its defaults, on the easy and the hard synthetic sets.

For each set (`featx synth --kind untrimmed`, and the same with `--hard`: 0.5-20 s actions, occlusions,
classes that differ only in the order of their two halves), each seed and each feature rate: make the
videos, extract them with the bundled EfficientNet-Lite0, train `linear` (the trivial baseline: a per-step
linear classifier with Montes' post-processing), `montes-lstm` and `actionformer` exactly as
`featx train-head STORE --annotations A --head H` would (no per-head flags), and score the validation
subset (a quarter of the videos, never used for any training decision) with the ActivityNet protocol.

Prints one table (mean and spread over seeds of mAP@0.5 and the average mAP over tIoU 0.5:0.05:0.95) and
writes bench/results/detection.json.
    python bench/detection.py                                   # the README's table (about an hour on 2 cores)
    python bench/detection.py --sets hard --fps 4 --seeds 0     # one cell
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, write_results

from featx.backbones import resolve_device
from featx.config import ExtractConfig
from featx.pipeline import RunOptions, extract
from featx.inputs import collect_inputs
from featx.synth import make_untrimmed
from seqmodels.detection.run import train_detection
from seqmodels.registry import heads
from seqmodels.runs import TrainConfig

SET_SEED = {"easy": 100, "hard": 200}  # video seeds: 100 + seed, 200 + seed (development used others)


def run_cell(tmp: Path, kind: str, seed: int, fps_list, heads, videos: int, seconds: float) -> list[dict]:
    data = make_untrimmed(tmp / f"{kind}{seed}", videos=videos, seconds=seconds, seed=SET_SEED[kind] + seed,
                          hard=kind == "hard", progress=False)
    rows = []
    for fps in fps_list:
        store = tmp / f"{kind}{seed}_fps{fps:g}"
        extract(collect_inputs([data.folder]), store, ExtractConfig(fps=fps), RunOptions(progress=False))
        for head in heads:
            config = TrainConfig.with_defaults("detection", head, seed=seed)
            with Stopwatch() as watch:
                _, metrics = train_detection(store, data.labels, config, tmp / f"run-{kind}{seed}-{fps:g}-{head}")
            row = {"set": kind, "seed": seed, "fps": fps, "head": head, "seconds": watch.seconds,
                   "map@0.5": metrics["map"]["0.5"], "average_map": metrics["average_map"], "videos": metrics["videos"]}
            rows.append(row)
            print(f"{kind} seed {seed} fps {fps:g} {head}: mAP@0.5 {row['map@0.5']:.3f}, average {row['average_map']:.3f} "
                  f"({row['seconds']:.0f} s)", flush=True)
    return rows


COLUMNS = [Column("set", "<"), Column("fps"), Column("head", "<"), Column("mAP@0.5"), Column("average mAP 0.5:0.95"),
           Column("train s")]


def table(rows: list[dict]) -> str:
    """Mean ± standard deviation over seeds of each (set, fps, head) cell."""
    cells = []
    keys = sorted({(r["set"], r["fps"], r["head"]) for r in rows}, key=lambda k: (k[0], k[1], list(heads("detection")).index(k[2])))
    for kind, fps, head in keys:
        cell = [r for r in rows if (r["set"], r["fps"], r["head"]) == (kind, fps, head)]
        at5, avg = np.array([r["map@0.5"] for r in cell]), np.array([r["average_map"] for r in cell])
        secs = np.mean([r["seconds"] for r in cell])
        cells.append([kind, f"{fps:g}", head, f"{at5.mean():.3f} ± {at5.std():.3f}", f"{avg.mean():.3f} ± {avg.std():.3f}",
                      f"{secs:.0f}"])
    return markdown_table(COLUMNS, cells)


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--sets", nargs="+", default=["easy", "hard"], choices=list(SET_SEED))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--fps", nargs="+", type=float, default=[2.0, 4.0], help="feature rates")
    parser.add_argument("--heads", nargs="+", default=list(heads("detection")), choices=list(heads("detection")))
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=50)
    add_out(parser, "detection.json")
    args = parser.parse_args()
    rows, device = [], resolve_device("auto").type
    for kind in args.sets:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                rows += run_cell(Path(tmp), kind, seed, args.fps, args.heads, args.videos, args.seconds)
            write_results(args.out, {"args": vars(args), "rows": rows, "complete": False}, device)  # survives a stop
    print(f"\n{args.videos} videos of {args.seconds:g} s per set and seed (a quarter for validation); seeds {args.seeds}; "
          "mean ± standard deviation over seeds; every head at its defaults")
    print(table(rows))
    write_results(args.out, {"args": vars(args), "rows": rows, "complete": True}, device)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
