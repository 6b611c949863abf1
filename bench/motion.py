"""Motion: the seed's claim that single-frame models cannot see it, and that optical flow (two streams) can.

For each seed: a motion set (`featx.synth.make_motion`: four classes, left / right / up / down, that differ only
in the direction in which identical discs move; every single frame has the same distribution in every class),
then through the CLI `featx extract --stream both` (RGB in `feature`, Farneback flow stacks in `flow_feature`,
every frame) with the bundled tf_efficientnet_lite0 (pretrained, offline), and `featx train-head` at the
head's defaults (no tuning flags) for avgpool and lstm on `--stream rgb`, `--stream flow`,
`--stream both --fusion early` and `--stream both --fusion late`. The validation videos (a share of each class,
never used for any training decision) give the accuracy, against chance (1/4).

Prints one table (mean and spread over seeds) and writes bench/results/motion.json.
    python bench/motion.py                            # the docs' table: 2 seeds (about 12 minutes on 2 cores)
    python bench/motion.py --seeds 0 --videos 32      # a quick look
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, write_results

from featx.synth import make_motion
from featx.synth_draw import MOTION_CLASSES

SET_SEED = 300  # video seeds 300 + seed (development used others)
CONFIGS = [("rgb", None), ("flow", None), ("both", "early"), ("both", "late")]
CHANCE = 1 / len(MOTION_CLASSES)
GOAL_RGB, GOAL_MOTION = 0.15, 0.95  # RGB heads within 0.15 of chance; a flow or two-stream head at 0.95 or more


def featx(*args: str) -> None:
    """Run the installed `featx` command; its output is shown only when it fails."""
    command = shutil.which("featx", path=str(Path(sys.executable).parent)) or shutil.which("featx")
    done = subprocess.run([command, *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"featx {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def run_seed(tmp: Path, seed: int, args) -> tuple[dict, list[dict]]:
    data = make_motion(tmp / f"videos{seed}", videos=args.videos, seconds=args.seconds, fps=args.fps, size=args.size,
                       seed=SET_SEED + seed, val_fraction=args.val_fraction)
    store = tmp / f"store{seed}"
    with Stopwatch() as watch:
        featx("extract", str(data.folder), "--out", str(store), "--stream", "both", "--flow-len", str(args.flow_len),
              *args.backbone_args, "--no-progress")
    extraction = {"seed": seed, "videos": len(data.videos), "seconds": watch.seconds}
    print(f"seed {seed}: extracted {len(data.videos)} videos, both streams, in {watch.seconds:.0f} s", flush=True)
    rows = []
    for head in args.heads:
        for stream, fusion in CONFIGS:
            run = tmp / f"run{seed}-{head}-{stream}-{fusion}"
            with Stopwatch() as watch:
                featx("train-head", str(store), "--labels", str(data.labels), "--head", head, "--stream", stream,
                      *(["--fusion", fusion] if fusion else []), "--seed", str(seed), "--out", str(run), "--no-progress")
            metrics = json.loads((run / "metrics.json").read_text())
            row = {"seed": seed, "head": head, "stream": stream, "fusion": fusion, "accuracy": metrics["accuracy"],
                   "macro_f1": metrics["macro_f1"], "videos": metrics["videos"], "confusion": metrics["confusion"],
                   "seconds": watch.seconds}
            rows.append(row)
            print(f"seed {seed} {head} {stream}{' ' + fusion if fusion else ''}: accuracy {row['accuracy']:.3f} "
                  f"({row['videos']} videos, {row['seconds']:.0f} s)", flush=True)
    return extraction, rows


COLUMNS = [Column("head", "<"), Column("stream", "<"), Column("fusion", "<"), Column("val accuracy"),
           Column("per seed", "<"), Column("vs chance 0.25"), Column("train s")]


def summary(rows: list[dict]) -> list[dict]:
    """Mean, spread and per-seed accuracy of each (head, stream, fusion)."""
    cells = []
    for head in dict.fromkeys(r["head"] for r in rows):
        for stream, fusion in CONFIGS:
            cell = [r for r in rows if (r["head"], r["stream"], r["fusion"]) == (head, stream, fusion)]
            acc = np.array([r["accuracy"] for r in cell])
            cells.append({"head": head, "stream": stream, "fusion": fusion, "mean": float(acc.mean()),
                          "std": float(acc.std()), "per_seed": acc.tolist(),
                          "seconds": float(np.mean([r["seconds"] for r in cell]))})
    return cells


def table(cells: list[dict]) -> str:
    return markdown_table(COLUMNS, [
        [c["head"], c["stream"], c["fusion"] or "-", f"{c['mean']:.3f} ± {c['std']:.3f}",
         " ".join(f"{a:.2f}" for a in c["per_seed"]), f"{c['mean'] - CHANCE:+.3f}", f"{c['seconds']:.0f}"]
        for c in cells
    ])


def goals(cells: list[dict]) -> dict:
    rgb = [c for c in cells if c["stream"] == "rgb"]
    motion = [c for c in cells if c["stream"] != "rgb"]
    best = max(motion, key=lambda c: c["mean"])
    return {
        "rgb_farthest_from_chance": max(abs(c["mean"] - CHANCE) for c in rgb),
        "rgb_within_0.15_of_chance": all(abs(c["mean"] - CHANCE) <= GOAL_RGB for c in rgb),
        "best_motion_head": f"{best['head']} {best['stream']} {best['fusion'] or ''}".strip(),
        "best_motion_accuracy": best["mean"],
        "motion_head_at_0.95": best["mean"] >= GOAL_MOTION,
    }


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--videos", type=int, default=80, help="videos per seed (classes in turn)")
    parser.add_argument("--val-fraction", type=float, default=0.5, help="share of each class for validation")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=64, help="frame width and height, pixels")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--flow-len", type=int, default=5, help="flow fields per stack (featx extract's default)")
    parser.add_argument("--heads", nargs="+", default=["avgpool", "lstm"])
    parser.add_argument("--tiny", action="store_true", help="the tiny random backbone instead of the pretrained one")
    add_out(parser, "motion.json")
    args = parser.parse_args()
    args.backbone_args = ["--backbone", "test_efficientnet", "--random-init"] if args.tiny else []
    extractions, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            extraction, seed_rows = run_seed(Path(tmp), seed, args)
            extractions.append(extraction)
            rows += seed_rows
    cells = summary(rows)
    print(table(cells))
    reached = goals(cells)
    print(f"RGB heads: at most {reached['rgb_farthest_from_chance']:.3f} from chance (goal <= {GOAL_RGB}); best flow or "
          f"two-stream head: {reached['best_motion_head']} at {reached['best_motion_accuracy']:.3f} (goal >= {GOAL_MOTION})")
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "backbone_args")}
    backbone = "test_efficientnet (random init)" if args.tiny else "tf_efficientnet_lite0 (bundled ImageNet weights)"
    out = write_results(args.out, {"settings": settings, "backbone": backbone, "chance": CHANCE, "goals": reached,
                                   "summary": cells, "rows": rows, "extraction": extractions})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
