"""Multi-label per-step heads at their defaults (Charades-style mAP on 25 evenly spread steps per video).

Feature-level synthetic sets, written as featx stores (no videos: this measures the heads and the protocol, not a
backbone). Each video has steps of `dim` features; each class is a random direction; a step's features are the
sum of the directions of the classes active at that step plus Gaussian noise. Actions are segments of random
length; several overlap (a step may hold up to `overlap` classes at once). Settings:
- easy: 5 classes, orthogonal directions, noise 0.5, segments 8-30 steps, up to 2 at once;
- hard: 12 classes, random (non-orthogonal) directions, noise 1.0, segments 3-15 steps, up to 3 at once, and
  a class's evidence only in the first half of each of its segments (the rest must be remembered).
Baselines: chance (the share of positive steps of each class, the AP of random scores) and a per-step logistic
regression on the step's own features (scikit-learn, one-vs-rest), which has no memory.

    python bench/multilabel.py                           # both settings, 2 seeds, every head, 160 videos
    python bench/multilabel.py --sets easy --seeds 1 --heads lstm
    python bench/multilabel.py --sets hard --seeds 1 --heads skip-gru --budgets 0 1e-3 1e-2   # skip heads' λ
Prints the table and writes bench/results/multilabel.json.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, write_results

from featx.config import ExtractConfig
from featx.store import StoreWriter
from seqmodels.multilabel import load_targets, score, train_multilabel, train_val_split
from seqmodels.runs import TrainConfig

SETTINGS = {
    "easy": dict(classes=5, orthogonal=True, noise=0.5, length=(8, 30), overlap=2, memory=False),
    "hard": dict(classes=12, orthogonal=False, noise=1.0, length=(3, 15), overlap=3, memory=True),
}
DIM, STEPS = 32, 40


def make_store(root: Path, setting: dict, seed: int, videos: int) -> Path:
    """A store of `videos` videos and their ActivityNet annotations (a quarter in the validation subset)."""
    rng = np.random.default_rng(seed)
    k = setting["classes"]
    directions = np.eye(DIM)[:k] if setting["orthogonal"] else rng.normal(0, 1, (k, DIM)) / np.sqrt(DIM / 4)
    names = [f"class{c:02d}" for c in range(k)]
    config = ExtractConfig(backbone="synthetic", weights="none", fps=2.0, weights_sha256="0" * 64, feature_dim=DIM,
                           input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic",
                           crop_pct=1.0, versions={"featx": "bench"})
    database = {}
    with StoreWriter(root / "store", config) as writer:
        for v in range(videos):
            vid = f"video{v:03d}"
            feats = rng.normal(0, setting["noise"], (STEPS, DIM))
            segments = []
            for c in rng.choice(k, size=int(rng.integers(1, setting["overlap"] + 1)), replace=False):
                length = int(rng.integers(*setting["length"]))
                start = int(rng.integers(0, STEPS - length))
                evidence = (length + 1) // 2 if setting["memory"] else length
                feats[start : start + evidence] += directions[c] * 2.0
                segments.append({"segment": [start * 0.5, (start + length) * 0.5], "label": names[c]})
            t = np.arange(STEPS) * 0.5
            frames = np.arange(STEPS) * 12
            record = {"path": f"/synthetic/{vid}.mp4", "video_id": vid, "error": None, "fps": 24.0, "frames": STEPS * 12,
                      "duration": STEPS * 0.5, "width": 8, "height": 8, "seconds": 0.0, "finished_at": 0.0}
            writer.add_video(record, writer.table(vid, t, t + 0.5, frames, frames + 12, feats.astype(np.float32)))
            database[vid] = {"subset": "validation" if v % 4 == 0 else "training", "duration": STEPS * 0.5,
                             "annotations": segments}
    (root / "annotations.json").write_text(json.dumps({"database": database}))
    return root


def baselines(root: Path) -> dict:
    """Chance and a memoryless per-step logistic regression, scored like the heads."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    data, classes, split = load_targets(root / "store", annotations=root / "annotations.json")
    train, val = train_val_split(data, split, 0.25, 0)
    x, y = np.concatenate(train.features), np.concatenate(train.targets)
    model = OneVsRestClassifier(LogisticRegression(max_iter=2000)).fit(x, y)
    probs = [model.predict_proba(f) for f in val.features]
    rng = np.random.default_rng(0)
    chance = score([rng.random(t.shape) for t in val.targets], val, classes)
    return {"chance": chance["mAP"], "per-step logistic": score(probs, val, classes)["mAP"]}


def run_cell(tmp: Path, name: str, seed: int, heads: list[str], budgets: list[float], videos: int) -> list[dict]:
    root = make_store(tmp / f"{name}{seed}", SETTINGS[name], seed=1000 + seed, videos=videos)
    rows = [{"set": name, "seed": seed, "head": head, "mAP": value, "seconds": 0.0}
            for head, value in baselines(root).items()]
    for row in rows:
        print(f"{name} seed {seed} {row['head']}: mAP {row['mAP']:.3f}", flush=True)
    for head in heads:
        for budget in budgets if head.startswith("skip-") else [0.0]:
            label = head if budget == 0 else f"{head} λ {budget:g}"
            config = TrainConfig.with_defaults("multilabel", head, seed=seed, budget=budget)
            with Stopwatch() as watch:
                _, metrics = train_multilabel(root / "store", config, root / f"run-{head}-{budget:g}",
                                              annotations=root / "annotations.json", progress=False)
            rows.append({"set": name, "seed": seed, "head": label, "budget": budget, "mAP": metrics["mAP"],
                         "video_mAP": metrics["video_mAP"], "update_fraction": metrics.get("update_fraction"),
                         "seconds": watch.seconds})
            print(f"{name} seed {seed} {label}: mAP {metrics['mAP']:.3f} ({watch.seconds:.0f} s)", flush=True)
    return rows


def table(rows: list[dict]) -> str:
    columns = [Column("set", "<"), Column("head", "<", 18), Column("mAP (mean ± sd)", ">", 16), Column("updates"),
               Column("train s")]
    cells = []
    for key in dict.fromkeys((r["set"], r["head"]) for r in rows):
        group = [r for r in rows if (r["set"], r["head"]) == key]
        maps = np.array([r["mAP"] for r in group])
        updates = [r["update_fraction"] for r in group if r.get("update_fraction") is not None]
        cells.append([*key, f"{maps.mean():.3f} ± {maps.std():.3f}", f"{np.mean(updates):.1%}" if updates else "",
                      f"{np.mean([r['seconds'] for r in group]):.0f}"])
    return markdown_table(columns, cells)


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--sets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--heads", nargs="+", default=["lstm", "gru", "skip-lstm", "skip-gru"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.0], help="λ for the skip heads")
    parser.add_argument("--videos", type=int, default=160, help="videos per set (a quarter for validation)")
    add_out(parser, "multilabel.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            for seed in range(args.seeds):
                rows += run_cell(Path(tmp), name, seed, args.heads, args.budgets, args.videos)
    print(f"\nmulti-label per-step heads at their defaults, {args.videos} videos x {STEPS} steps, {args.seeds} seed(s); "
          "mAP on 25 evenly spread steps of the validation videos")
    print(table(rows))
    print(f"wrote {write_results(args.out, {'args': vars(args), 'settings': SETTINGS, 'rows': rows})}")


if __name__ == "__main__":
    main()
