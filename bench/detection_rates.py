"""Temporal activity detection at real-world source frame rates: does the time grid hold when the feature rate
(--fps) does not divide the video's frame rate?

For each source rate (25, 29.97 = exactly 30000/1001, 30 fps, and a variable rate: frames of 1/30 or 1/20 s at
random, `featx synth --video-fps 30 --vfr`), make one easy untrimmed set (`featx synth --kind untrimmed --video-fps R`, the
same seed at every rate), extract it at each feature rate with the bundled EfficientNet-Lite0, train
`actionformer` exactly as `featx train-head STORE --annotations A` would (featx defaults, no per-head flags), and
score the validation subset with the ActivityNet protocol (mAP@0.5, average mAP over tIoU 0.5:0.05:0.95).
Sampling 4 fps keeps frames 6 or 7 apart at 25 fps, 7 or 8 at 29.97 and 30; 2 fps keeps them 12 or 13 apart at
25, 14 or 15 at 29.97, and exactly 15 at 30 (the one cell where the rate divides); VFR gaps are irregular.

The correctness check needs no model: the time error of a decoded ground-truth segment. Row i of a store stands
for its centre, (t_start + t_end) / 2 (featx.timegrid), so a detector that fires exactly on the rows that show a
ground-truth boundary t fires at grid position g = the rows' centres interpolated at t. The run's clock (what
seqmodels.detection.step_data.load_steps gives training and decoding) turns g back into seconds: `decode err` is the
largest |clock.to_seconds(g) - t| over every annotated boundary of every video, and `target err` the largest
distance in seconds between where the clock puts t on the grid (clock.to_grid(t), the training targets) and
g. A clock that follows the rows' times gives 0 (float rounding); one that assumes a uniform period drifts by
the period's error times the row index. (Converting t to grid units and back with the same clock, the
`round trip` in the JSON, is 0 for any invertible clock, wrong or right: it checks nothing on its own.)
Measured on 3 videos of 40 s per rate (32 px): the StepClock before featx.timegrid (a uniform period, the median
gap) gave decode errors of 1.46 s (25 fps source, --fps 4), 2.39 s (29.97), 2.43 s (30), 0.02 s (VFR) and, at
--fps 2, 1.45 s, 0.03 s, 0 and 0.03 s; featx.timegrid.TimeGrid 0 in every cell.

Prints one table (mean over seeds) and writes bench/results/detection_rates.json. Time: synth and extraction take
about 1-2 minutes per source rate on 2 cores (16 videos of 40 s at 96 px); training dominates. Measured on 2
shared cores (load 5) with the ActionFormer of featx.timegrid's commit: 15-30 s per epoch for 6 training
videos whether they last 12 or 40 s, so a 60-epoch cell takes many minutes; --no-train gives the time errors
alone in a few minutes.
    python bench/detection_rates.py                                    # the table: 8 cells of 60 training epochs
    python bench/detection_rates.py --no-train                         # the time errors alone (no model)
    python bench/detection_rates.py --rates 29.97 --fps 4 --videos 8 --seconds 20 --epochs 2   # a smoke run
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, write_results

from featx.backbones import resolve_device
from featx.config import ExtractConfig
from featx.pipeline import RunOptions, extract
from featx.inputs import collect_inputs
from featx.store import load_features, open_store
from featx.synth import make_untrimmed
from featx.synth_video import frame_rate
from seqmodels.detection.run import train_detection
from seqmodels.detection.step_data import load_steps
from seqmodels.runs import TrainConfig

HEAD = "actionformer"  # featx's default detection head
SET_SEED = 300  # video seed 300 + seed (bench/detection.py uses 100 and 200)
VFR = "vfr"  # a rate ending in this (30vfr) is a variable frame rate around it (featx synth --vfr)


def source(rate: str) -> tuple[str, bool]:
    """(--video-fps for featx synth, --vfr) of a --rates entry: "29.97" -> ("29.97", False), "30vfr" -> ("30", True)."""
    vfr = rate.endswith(VFR)
    fps = rate[: -len(VFR)] if vfr else rate
    frame_rate(fps)  # refuse a bad rate before anything runs
    return fps, vfr


def row_times(store: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each video's (t_start, row centre) in seconds, in step order: the sampled frames' times, and where row i's
    features sit in the video."""
    rows = load_features(store, columns=["video_id", "step", "t_start", "t_end"]).sort_values(["video_id", "step"])
    return {vid: (g.t_start.to_numpy(), ((g.t_start + g.t_end) / 2).to_numpy()) for vid, g in rows.groupby("video_id", sort=False)}


def time_errors(store: Path, annotations: Path) -> dict:
    """The largest errors, in seconds, of the run's clock on every annotated boundary (see the module's doc)."""
    database = json.loads(annotations.read_text())["database"]
    times = row_times(store)
    ids = sorted(set(times) & set(database))
    data = load_steps(open_store(store), ids)
    clocks = getattr(data, "grids", None) or data.clocks  # featx.timegrid.TimeGrid, or the StepClock before it
    decode = target = round_trip = 0.0
    gaps = []
    for vid, clock in zip(data.ids, clocks):
        starts, c = times[vid]
        rows = np.arange(len(c), dtype=float)
        t = np.array([x for a in database[vid]["annotations"] for x in a["segment"]], float)
        t = t[(t >= c[0]) & (t <= c[-1])]  # boundaries between the first and last rows' centres (all of synth's)
        gaps.append(np.diff(starts))
        if len(t) == 0:
            continue
        g = np.interp(t, c, rows)  # where the rows that show t sit on the grid
        decode = max(decode, float(np.max(np.abs(np.asarray(clock.to_seconds(g)) - t))))
        target = max(target, float(np.max(np.abs(np.interp(np.asarray(clock.to_grid(t)), rows, c) - t))))
        round_trip = max(round_trip, float(np.max(np.abs(np.asarray(clock.to_seconds(clock.to_grid(t))) - t))))
    gaps = np.concatenate(gaps)
    return {"decode_error_s": decode, "target_error_s": target, "round_trip_error_s": round_trip,
            "frame_gap_min_s": float(gaps.min()), "frame_gap_max_s": float(gaps.max()), "clock": type(clocks[0]).__name__}


def run_cell(tmp: Path, rate: str, seed: int, fps_list, videos: int, seconds: float, size: int, epochs: int | None,
             train: bool = True) -> list[dict]:
    synth_fps, vfr = source(rate)
    data = make_untrimmed(tmp / f"{rate}-{seed}", videos=videos, seconds=seconds, fps=synth_fps, size=size,
                          seed=SET_SEED + seed, vfr=vfr, progress=False)
    rows = []
    for fps in fps_list:
        store = tmp / f"{rate}-{seed}_fps{fps:g}"
        with Stopwatch() as extracting:
            extract(collect_inputs([data.folder]), store, ExtractConfig(fps=fps), RunOptions(progress=False))
        errors = time_errors(store, data.labels)
        row = {"source": rate, "seed": seed, "fps": fps, "head": HEAD, "map@0.5": None, "average_map": None,
               "videos": None, "seconds": None, "extract_seconds": extracting.seconds, **errors}
        if train:
            config = TrainConfig.with_defaults("detection", HEAD, seed=seed, epochs=epochs)
            with Stopwatch() as watch:
                _, metrics = train_detection(store, data.labels, config, tmp / f"run-{rate}-{seed}-{fps:g}")
            row.update({"map@0.5": metrics["map"]["0.5"], "average_map": metrics["average_map"],
                        "videos": metrics["videos"], "seconds": watch.seconds})
        rows.append(row)
        scores = f"mAP@0.5 {row['map@0.5']:.3f}, average {row['average_map']:.3f}, " if train else ""
        print(f"{rate} seed {seed} fps {fps:g}: {scores}decode error {row['decode_error_s']:.4f} s, target error "
              f"{row['target_error_s']:.4f} s ({errors['clock']}; extract {extracting.seconds:.0f} s"
              + (f", train {row['seconds']:.0f} s)" if train else ")"), flush=True)
    return rows


COLUMNS = [Column("source fps", "<"), Column("--fps"), Column("sampled gaps s"), Column("mAP@0.5"),
           Column("average mAP 0.5:0.95"), Column("decode err s"), Column("target err s"), Column("train s")]


def table(rows: list[dict], rates: list[str]) -> str:
    """Mean (± standard deviation over seeds, when several) of each (source, fps) cell; errors: the largest."""
    cells = []
    for rate, fps in sorted({(r["source"], r["fps"]) for r in rows}, key=lambda k: (rates.index(k[0]), -k[1])):
        cell = [r for r in rows if (r["source"], r["fps"]) == (rate, fps)]
        trained = [r for r in cell if r["map@0.5"] is not None]
        at5, avg = np.array([r["map@0.5"] for r in trained]), np.array([r["average_map"] for r in trained])
        spread = len(trained) > 1
        cells.append([rate, f"{fps:g}",
                      f"{min(r['frame_gap_min_s'] for r in cell):.3f}-{max(r['frame_gap_max_s'] for r in cell):.3f}",
                      f"{at5.mean():.3f}" + (f" ± {at5.std():.3f}" if spread else "") if trained else "-",
                      f"{avg.mean():.3f}" + (f" ± {avg.std():.3f}" if spread else "") if trained else "-",
                      f"{max(r['decode_error_s'] for r in cell):.4f}", f"{max(r['target_error_s'] for r in cell):.4f}",
                      f"{np.mean([r['seconds'] for r in trained]):.0f}" if trained else "-"])
    return markdown_table(COLUMNS, cells)


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--rates", nargs="+", default=["25", "29.97", "30", f"30{VFR}"],
                        help=f"source frame rates (featx synth --video-fps); a trailing '{VFR}' makes it variable (--vfr)")
    parser.add_argument("--fps", nargs="+", type=float, default=[4.0, 2.0], help="feature rates")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the head's default)")
    parser.add_argument("--no-train", action="store_true", help="only the time errors: synth and extract, no training")
    add_out(parser, "detection_rates.json")
    args = parser.parse_args()
    for rate in args.rates:
        source(rate)
    rows, device = [], resolve_device("auto").type
    for rate in args.rates:
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                rows += run_cell(Path(tmp), rate, seed, args.fps, args.videos, args.seconds, args.size, args.epochs,
                                 train=not args.no_train)
            write_results(args.out, {"args": vars(args), "rows": rows, "complete": False}, device)  # survives a stop
    print(f"\n{args.videos} easy untrimmed videos of {args.seconds:g} s at {args.size} px per source rate and seed "
          f"(a quarter for validation); seeds {args.seeds}; {HEAD} at featx's defaults; errors: the largest over "
          f"every annotated boundary, in seconds; sampled gaps: between consecutive sampled frames (t_start)")
    print(table(rows, args.rates))
    write_results(args.out, {"args": vars(args), "rows": rows, "complete": True}, device)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
