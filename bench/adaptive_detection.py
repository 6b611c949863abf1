"""Adaptive detection: a Skip RNN step detector's backbone calls against its mAP, over a sweep of the budget λ.

On untrimmed synthetic videos (`featx synth --kind untrimmed`, easy and `--hard`, video seeds never used in
development), features from the bundled EfficientNet-Lite0, every head trained as `featx train-head STORE
--annotations A --head H [--budget λ]` would. Rows: `montes-lstm` and `linear` (every step embedded: the
full-feature references) and `skip-gru` / `skip-lstm` at each λ. `calls` is the share of steps whose features
the detector reads on the validation videos: exactly the backbone calls `featx predict RUN VIDEO... --adaptive`
makes (tests/test_adaptive.py checks that the adaptive path reads the same steps and finds the same segments).

    python bench/adaptive_detection.py                         # easy and hard, 4 fps, seed 0
    python bench/adaptive_detection.py --sets easy --seeds 1 --budgets 0 1e-3
Prints the table and writes bench/results/adaptive_detection.json.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, write_results

from featx.config import ExtractConfig
from featx.pipeline import RunOptions, extract
from featx.inputs import collect_inputs
from featx.synth import make_untrimmed
from seqmodels.detection.run import train_detection
from seqmodels.runs import TrainConfig

SET_SEED = {"easy": 300, "hard": 400}  # video seeds 300 + seed, 400 + seed: unseen in development


def run_cell(tmp: Path, kind: str, seed: int, fps: float, heads: list[str], budgets: list[float], videos: int,
             seconds: float) -> list[dict]:
    data = make_untrimmed(tmp / f"{kind}{seed}", videos=videos, seconds=seconds, seed=SET_SEED[kind] + seed,
                          hard=kind == "hard", progress=False)
    store = tmp / f"{kind}{seed}_store"
    extract(collect_inputs([data.folder]), store, ExtractConfig(fps=fps), RunOptions(progress=False))
    rows = []
    for head in heads:
        for budget in budgets if head.startswith("skip") else [0.0]:
            config = TrainConfig.with_defaults("detection", head, seed=seed, budget=budget)
            with Stopwatch() as watch:
                _, metrics = train_detection(store, data.labels, config, tmp / f"run-{kind}{seed}-{head}-{budget:g}")
            row = {"set": kind, "seed": seed, "fps": fps, "head": head, "budget": budget, "seconds": watch.seconds,
                   "map@0.5": metrics["map"]["0.5"], "average_map": metrics["average_map"],
                   "calls": metrics.get("update_fraction", 1.0)}
            rows.append(row)
            print(f"{kind} seed {seed} {head} λ {budget:g}: calls {row['calls']:.1%}, mAP@0.5 {row['map@0.5']:.3f}, "
                  f"average {row['average_map']:.3f} ({row['seconds']:.0f} s)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    columns = [Column("set", "<"), Column("head", "<", 12), Column("λ"), Column("backbone calls"),
               Column("mAP@0.5"), Column("average mAP"), Column("train s")]
    cells = []
    for key in dict.fromkeys((r["set"], r["head"], r["budget"]) for r in rows):
        group = [r for r in rows if (r["set"], r["head"], r["budget"]) == key]

        def stat(name, fmt="{:.3f}"):
            values = np.array([r[name] for r in group])
            return (fmt + " ± " + fmt).format(values.mean(), values.std())

        cells.append([key[0], key[1], f"{key[2]:g}", stat("calls", "{:.1%}"), stat("map@0.5"), stat("average_map"),
                      f"{np.mean([r['seconds'] for r in group]):.0f}"])
    return markdown_table(columns, cells)


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--sets", nargs="+", default=["easy", "hard"], choices=list(SET_SEED))
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--heads", nargs="+", default=["linear", "montes-lstm", "skip-gru"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.0, 1e-3, 1e-2])
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=40.0)
    add_out(parser, "adaptive_detection.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.sets:
            for seed in range(args.seeds):
                rows += run_cell(Path(tmp), kind, seed, args.fps, args.heads, args.budgets, args.videos, args.seconds)
    print(f"\nadaptive detection, {args.videos} videos x {args.seconds:g} s at {args.fps:g} fps, {args.seeds} seed(s); "
          "backbone calls = share of validation steps read")
    print(table(rows))
    print(f"wrote {write_results(args.out, {'args': vars(args), 'rows': rows})}")


if __name__ == "__main__":
    main()
