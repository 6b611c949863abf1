"""Temporal activity detection on synthetic untrimmed videos: mAP per tIoU threshold for each detection head.

`featx synth --kind untrimmed` videos (coloured shapes over a drifting background, 3-8 s actions), features
from the bundled EfficientNet-Lite0 at `--fps`, then three heads on the 'training' subset, scored on
'validation' with the ActivityNet protocol: `linear` (the trivial baseline: a per-step linear classifier with
Montes' post-processing), `montes-lstm` and `actionformer`.

Prints a table and writes JSON to bench/results/detection_fps<fps>.json.
    python bench/detection.py --fps 2           # 48 videos of 40 s (the README's tables: --fps 2 and --fps 4)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from featx.config import ExtractConfig
from featx.extract import RunOptions, extract
from featx.inputs import collect_inputs
from featx.synth import make_untrimmed
from seqmodels.detection.run import DetectionConfig, train_detection

RESULTS = Path(__file__).parent / "results"
HEADS = {  # head -> (epochs, lr, options)
    "linear": (60, 3e-3, {}),
    "montes-lstm": (60, 3e-3, {"hidden": 128, "dropout": 0.3}),
    "actionformer": (150, 3e-3, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--fps", type=float, default=2.0, help="feature rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_untrimmed(tmp / "videos", videos=args.videos, seconds=args.seconds, seed=args.seed, progress=True)
        t = time.perf_counter()
        extract(collect_inputs([data.folder]), tmp / "store", ExtractConfig(fps=args.fps), RunOptions())
        extract_seconds = time.perf_counter() - t
        for head in args.heads:
            epochs, lr, options = HEADS[head]
            config = DetectionConfig(head=head, head_options=options, epochs=epochs, lr=lr, smooth=3, seed=args.seed)
            t = time.perf_counter()
            _, metrics = train_detection(tmp / "store", data.labels, config, tmp / f"run-{head}")
            rows.append({"head": head, "epochs": epochs, "lr": lr, "options": options, "seconds": time.perf_counter() - t, **metrics})
            print(f"{head}: mAP@0.5 {metrics['map']['0.5']:.3f}, average {metrics['average_map']:.3f}", flush=True)
    thresholds = list(rows[0]["map"])
    print(f"\n{args.videos} untrimmed videos of {args.seconds:.0f} s, features at {args.fps:g} fps "
          f"(extracted in {extract_seconds:.0f} s); {rows[0]['videos']} validation videos")
    print("| head | " + " | ".join(thresholds) + " | average | train s |")
    print("|---|" + "---:|" * (len(thresholds) + 2))
    for r in rows:
        print(f"| {r['head']} | " + " | ".join(f"{r['map'][t]:.3f}" for t in thresholds) + f" | {r['average_map']:.3f} | {r['seconds']:.0f} |")
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"detection_fps{args.fps:g}.json"
    target.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
