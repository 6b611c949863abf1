"""featx's ActionFormer head against the official ActionFormer release, trained on the same featx store.

For each seed: make the hard synthetic untrimmed set (`featx synth --kind untrimmed --hard`, video seed 200 +
seed as in bench/detection.py; its annotations name the training and validation videos), extract it at --fps
with the bundled EfficientNet-Lite0, `featx export` it for ActionFormer, then
- featx: `train_detection` at its defaults (the `actionformer` head, `featx train-head --head actionformer`);
- the release: its own train.py, unmodified, on its configs/thumos_i3d.yaml with the dataset keys of the
  export (below), 30 + 5 epochs as shipped; its last checkpoint is scored twice, on `state_dict_ema` (what its
  eval.py loads: the shipped numbers) and on `state_dict` (its plain weights).
Both are scored by featx's evaluator (seqmodels.detection.map, the ActivityNet protocol) on the same validation
videos, over tIoU 0.5:0.05:0.95 (the table; the THUMOS set 0.3:0.1:0.7 is in the JSON too). The release's own
evaluator (libs/utils/metrics.py ANETdetection) scores its detections as well, as a cross-check (`own_*` in the
JSON). Training time per epoch: featx's history rows; the release's from the time between its "Epoch N started"
and "Epoch N finished" lines. Both run on the CPU with --threads torch threads (OMP_NUM_THREADS for the release).

No code of the release enters featx: --reference is a checkout the user fetched, prepared as its INSTALL.md says:
    git clone https://github.com/happyharrycn/actionformer_release REF
    (cd REF/libs/utils && python setup.py build_ext --inplace)   # the NMS extension, CPU only, with this torch
    pip install tensorboard                                      # its train.py imports SummaryWriter
Under numpy >= 1.24 its own evaluator fails on `np.float` (libs/utils/metrics.py, compute_average_precision_
detection); with `sed -i 's/astype(np.float)/astype(np.float64)/' REF/libs/utils/metrics.py` it runs, else the
`own_*` numbers are recorded as unavailable (featx's evaluator, the table's, needs no patch). Nothing else is
patched: on a CPU-only torch the release's nn.DataParallel wraps nothing; `-p` (print frequency) larger than an
epoch keeps train.py from reaching its `torch.cuda.synchronize()`; `-c 0` saves only the last checkpoint; this
script loads that checkpoint itself (map_location cpu) instead of eval.py, whose `storage.cuda(...)` needs a GPU.

The release's config: configs/thumos_i3d.yaml, overridden by the export's ActionFormer fragment (DIR/actionformer.yaml
from `featx export --for actionformer` when this featx writes it; else built from DIR/featx_export.json and
DIR/annotations.json): splits ['training'] / ['validation'], the dataset block (features, time grid,
num_classes, input_dim, max_seq_len rounded up to the model's divisor, 576 for window 19 and 6 levels), plus
output_folder, init_rand_seed = seed and loader.num_workers = 1 (the shipped 4 workers idle on 2 cores; it
cannot be 0: the release's DataLoader sets persistent_workers).

Prints a markdown table (per seed, and mean ± standard deviation) and writes bench/results/reference_actionformer.json.
    python bench/reference_actionformer.py --reference REF                       # 45 videos x 50 s, seeds 0 1 2
    python bench/reference_actionformer.py --reference REF --videos 12 --seconds 30 --seeds 0 \\
        --featx-epochs 4 --reference-epochs 3 --reference-warmup-epochs 1       # a smoke run (minutes)
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, write_results

HARD_SET_SEED = 200  # bench/detection.py's hard set: videos of seed 200 + seed
REFERENCE_CONFIG = "configs/thumos_i3d.yaml"
FRAGMENT = "actionformer.yaml"  # written by `featx export --for actionformer` (when this featx has it)
METHODS = ("featx", "reference-ema", "reference-plain")
EPOCH_LINE = re.compile(r"\[Train\]: Epoch (\d+) (started|finished)")


# -- the release's config --------------------------------------------------------------------------------------
def seq_len_multiple(model: dict) -> int:
    """What the release's max_seq_len must be a multiple of (libs/modeling/meta_archs.py, PtTransformer.__init__:
    `max_seq_len % (s * (w // 2) * 2) == 0` for every pyramid level's stride s and attention window w)."""
    levels = range(model.get("fpn_start_level", 0), model.get("backbone_arch", (2, 2, 5))[-1] + 1)
    window = model.get("n_mha_win_size", -1)
    windows = window if isinstance(window, (list, tuple)) else [window] * len(levels)
    multiple = 1
    for level, w in zip(levels, windows):
        s = model.get("scale_factor", 2) ** level
        multiple = math.lcm(multiple, s * (w // 2) * 2 if w > 1 else s)
    return multiple


def fragment_from_export(out: Path, multiple: int) -> dict:
    """The ActionFormer keys of an export, from its sidecar and annotations.json (what `--for actionformer`
    writes as DIR/actionformer.yaml)."""
    sidecar = json.loads((out / "featx_export.json").read_text())
    grid = sidecar["actionformer"]
    if grid is None:
        raise SystemExit(f"{out}: the videos' time grids disagree; ActionFormer needs one feat_stride / num_frames")
    database = json.loads((out / "annotations.json").read_text())["database"]
    classes = {a["label_id"] for v in database.values() for a in v["annotations"]}
    longest = max(v["rows"] for v in sidecar["videos"].values())
    return {
        "dataset_name": "thumos",
        "train_split": ["training"],
        "val_split": ["validation"],
        "dataset": {
            "json_file": str(out / "annotations.json"), "feat_folder": str(out), "file_prefix": grid["file_prefix"],
            "file_ext": grid["file_ext"], "num_classes": len(classes), "input_dim": grid["input_dim"],
            "feat_stride": grid["feat_stride"], "num_frames": grid["num_frames"], "default_fps": grid["default_fps"],
            "max_seq_len": max(1, math.ceil(longest / multiple)) * multiple, "trunc_thresh": 0.5, "crop_ratio": [0.9, 1.0],
        },
    }


def load_fragment(out: Path, multiple: int) -> tuple[dict, str]:
    """DIR/actionformer.yaml when the export wrote one (paths relative to DIR resolved), else the keys built
    from the sidecar; and which it was."""
    path = out / FRAGMENT
    if not path.is_file():
        return fragment_from_export(out, multiple), "featx_export.json + annotations.json"
    fragment = yaml.safe_load(path.read_text())
    for key in ("json_file", "feat_folder"):
        if not Path(fragment["dataset"][key]).is_absolute():
            fragment["dataset"][key] = str(out / fragment["dataset"][key])
    return fragment, FRAGMENT


def reference_config(reference: Path, fragment: dict, run: Path, seed: int, args) -> Path:
    """The release's THUMOS config with the export's keys, written to run/<name>.yaml."""
    config = yaml.safe_load((reference / REFERENCE_CONFIG).read_text())
    for key in ("dataset_name", "train_split", "val_split"):
        config[key] = fragment[key]
    config["dataset"].update(fragment["dataset"])
    config["model"].update({k: v for k, v in fragment.get("model", {}).items() if k != "max_seq_len"})  # derived: config.py
    if args.max_seq_len:
        config["dataset"]["max_seq_len"] = args.max_seq_len
    if config["dataset"]["max_seq_len"] % seq_len_multiple(config["model"]):
        raise SystemExit(f"max_seq_len {config['dataset']['max_seq_len']} is not a multiple of "
                         f"{seq_len_multiple(config['model'])}: the release refuses it")
    config["init_rand_seed"] = seed
    config["output_folder"] = str(run / "ckpt")
    config["loader"]["num_workers"] = 1
    if args.reference_epochs is not None:
        config["opt"]["epochs"] = args.reference_epochs
    if args.reference_warmup_epochs is not None:
        config["opt"]["warmup_epochs"] = args.reference_warmup_epochs
    path = run / "featx_thumos.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- the release: train (its train.py), detect, score ---------------------------------------------------------
def reference_env(reference: Path, threads: int) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "CUDA_VISIBLE_DEVICES": ""}
    built = reference / "libs" / "utils"  # `build_ext --inplace` leaves nms_1d_cpu*.so there; nms.py imports it top-level
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(built), env.get("PYTHONPATH", "")] if p)
    return env


def train_reference(reference: Path, config: Path, run: Path, threads: int) -> tuple[Path, list[float], float]:
    """Run the release's train.py; returns its last checkpoint, the seconds of each epoch and the total."""
    (run / "ckpt").mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "train.py", str(config), "--output", "featx", "-p", "1000000000", "-c", "0"]
    started, epochs, log = {}, [], []
    with Stopwatch() as watch, subprocess.Popen(command, cwd=reference, env=reference_env(reference, threads),
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            log.append(line)
            match = EPOCH_LINE.search(line)
            if match and match[2] == "started":
                started[match[1]] = time.perf_counter()
            elif match:
                epochs.append(time.perf_counter() - started[match[1]])
    (run / "reference_train.log").write_text("".join(log))
    if proc.returncode:
        raise SystemExit(f"the release's train.py failed (exit {proc.returncode}):\n{''.join(log[-15:])}")
    checkpoints = sorted((run / "ckpt").glob("*/epoch_*.pth.tar"))
    if not checkpoints:
        raise SystemExit(f"the release's train.py wrote no checkpoint under {run / 'ckpt'}")
    return checkpoints[-1], epochs, watch.seconds


def import_reference(reference: Path):
    """The release's `libs` package, imported in this process (its folder first on sys.path)."""
    for path in (reference / "libs" / "utils", reference):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import libs.core
    import libs.datasets
    import libs.modeling
    import libs.utils

    return libs


def reference_detections(reference: Path, config: Path, checkpoint: Path, weights: str):
    """The release's detections (seconds, its own post-processing) on its validation split, with the weights
    `state_dict_ema` or `state_dict` of `checkpoint`: what its eval.py does, on the CPU."""
    import torch

    libs = import_reference(reference)
    cfg = libs.core.load_config(str(config))
    dataset = libs.datasets.make_dataset(cfg["dataset_name"], False, cfg["val_split"], **cfg["dataset"])
    model = libs.modeling.make_meta_arch(cfg["model_name"], **cfg["model"])
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)[weights]
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})  # saved inside nn.DataParallel
    model.eval()
    results = {"video-id": [], "t-start": [], "t-end": [], "label": [], "score": []}
    with torch.no_grad():
        for i in range(len(dataset)):
            out = model([dataset[i]])[0]
            n = len(out["segments"])
            results["video-id"] += [out["video_id"]] * n
            for key, value in (("t-start", out["segments"][:, 0]), ("t-end", out["segments"][:, 1]),
                               ("label", out["labels"]), ("score", out["scores"])):
                results[key].append(value.numpy())
    return {k: (v if k == "video-id" else np.concatenate(v)) for k, v in results.items()}, dataset


def own_evaluation(reference: Path, dataset, results: dict, thresholds) -> dict:
    """The release's own evaluator on its detections (a cross-check of featx's): mAP per tIoU, or why not."""
    libs = import_reference(reference)
    try:
        evaluator = libs.utils.ANETdetection(dataset.json_file, dataset.split[0], tiou_thresholds=np.asarray(thresholds),
                                             num_workers=1)
        per_tiou, average, _ = evaluator.evaluate(results, verbose=False)
    except Exception as exc:  # noqa: BLE001 - recorded in the results, never silent (e.g. np.float under numpy 2)
        print(f"  the release's own evaluator failed: {type(exc).__name__}: {exc}", flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"map@0.5": float(per_tiou[0]), "average_map": float(average)}


def ema_initial_share(steps: int, decay: float = 0.999) -> float:
    """How much of the random initial weights the release's EMA still holds after `steps` updates: its ModelEma
    (libs/utils/train_utils.py) starts from the initial model with decay 0.999 and no warm-up, so decay ** steps."""
    return decay**steps


# -- one seed ------------------------------------------------------------------------------------------------
def make_store(tmp: Path, seed: int, args) -> tuple[Path, Path, Path]:
    """The hard set of `seed`, extracted and exported: (store, annotations, export folder)."""
    from featx.config import ExtractConfig
    from featx.pipeline import RunOptions, extract
    from featx.inputs import collect_inputs
    from featx.synth import make_untrimmed

    source_fps = int(args.source_fps) if float(args.source_fps).is_integer() else args.source_fps
    data = make_untrimmed(tmp / "videos", videos=args.videos, seconds=args.seconds, fps=source_fps,
                          seed=HARD_SET_SEED + seed, hard=True, progress=False)
    store = tmp / "store"
    extract(collect_inputs([data.folder]), store, ExtractConfig(fps=args.fps), RunOptions(progress=False, device="cpu"))
    out = tmp / "export"
    featx = Path(sys.executable).with_name("featx")
    base = [str(featx), "export", str(store), "--out", str(out), "--annotations", str(data.labels), "--no-progress"]
    done = subprocess.run([*base, "--for", "actionformer"], capture_output=True, text=True)
    if done.returncode and "--for" in done.stderr + done.stdout:  # a featx without `--for actionformer` yet
        done = subprocess.run(base, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"featx export failed: {done.stderr.strip() or done.stdout.strip()}")
    return store, data.labels, out


def score(annotations, val_ids: list[str], detections) -> dict:
    from seqmodels.detection.map import ACTIVITYNET_TIOU, THUMOS_TIOU, detection_map
    from seqmodels.detection.run import ground_truth

    truth = ground_truth(annotations, val_ids)
    activitynet = detection_map(truth, detections, ACTIVITYNET_TIOU, annotations.classes)
    thumos = detection_map(truth, detections, THUMOS_TIOU, annotations.classes)
    return {"map@0.5": float(activitynet.map[0]), "average_map": activitynet.average_map,
            "map": activitynet.to_dict()["map"],
            "thumos_map": thumos.to_dict()["map"], "thumos_average_map": thumos.average_map}


def run_featx(store: Path, labels: Path, run: Path, seed: int, args) -> dict:
    from seqmodels.detection.map import THUMOS_TIOU
    from seqmodels.detection.run import evaluate_detection, train_detection
    from seqmodels.runs import TrainConfig

    config = TrainConfig.with_defaults("detection", "actionformer", seed=seed, device="cpu", epochs=args.featx_epochs)
    history = []
    with Stopwatch() as watch:
        _, metrics = train_detection(store, labels, config, run, on_epoch=history.append)
    thumos = evaluate_detection(run, store, labels, "validation", THUMOS_TIOU).map
    return {"map@0.5": metrics["map"]["0.5"], "average_map": metrics["average_map"], "map": metrics["map"],
            "thumos_map": thumos.to_dict()["map"], "thumos_average_map": thumos.average_map,
            "epochs": len(history), "s_per_epoch": float(np.mean([h["seconds"] for h in history])),
            "epoch_seconds": [h["seconds"] for h in history], "batch_size": config.batch_size,
            "train_seconds": watch.seconds}


def run_reference(tmp: Path, out: Path, annotations, base: dict, seed: int, args) -> list[dict]:
    """Train the release on the export `out`; one row per weight set of its last checkpoint."""
    from seqmodels.detection.map import ACTIVITYNET_TIOU, Detection

    reference = Path(args.reference)
    run = tmp / "reference-run"
    run.mkdir()
    multiple = seq_len_multiple(yaml.safe_load((reference / REFERENCE_CONFIG).read_text())["model"])
    fragment, source = load_fragment(out, multiple)
    config = reference_config(reference, fragment, run, seed, args)
    checkpoint, epochs, total = train_reference(reference, config, run, args.threads)
    used = yaml.safe_load(config.read_text())
    steps = len(epochs) * (base["training_videos"] // used["loader"]["batch_size"])  # its loader drops the last batch
    names = {a["label_id"]: a["label"] for v in json.loads((out / "annotations.json").read_text())["database"].values()
             for a in v["annotations"]}
    val_ids = sorted(annotations.subset("validation"))
    rows = []
    for method, weights in (("reference-ema", "state_dict_ema"), ("reference-plain", "state_dict")):
        results, dataset = reference_detections(reference, config, checkpoint, weights)
        detections = [Detection(v, float(s), float(e), names[int(c)], float(p)) for v, s, e, c, p in
                      zip(results["video-id"], results["t-start"], results["t-end"], results["label"], results["score"])]
        rows.append({**base, "method": method, **score(annotations, val_ids, detections), "epochs": len(epochs),
                     "s_per_epoch": float(np.mean(epochs)), "epoch_seconds": epochs, "train_seconds": total,
                     "batch_size": used["loader"]["batch_size"], "steps": steps, "weights": weights,
                     "ema_initial_share": ema_initial_share(steps), "fragment_source": source,
                     "dataset_config": used["dataset"], "opt": used["opt"],
                     "own_evaluator": own_evaluation(reference, dataset, results, ACTIVITYNET_TIOU)})
    return rows


def run_seed(tmp: Path, seed: int, args) -> list[dict]:
    from seqmodels.detection.annotations import load_annotations

    with Stopwatch() as watch:
        store, labels, out = make_store(tmp, seed, args)
    print(f"seed {seed}: {args.videos} videos made, extracted at {args.fps:g} fps and exported ({watch.seconds:.0f} s)",
          flush=True)
    annotations = load_annotations(labels)
    base = {"seed": seed, "videos": args.videos, "training_videos": len(annotations.subset("training")),
            "validation_videos": len(annotations.subset("validation"))}
    rows = [{**base, "method": "featx", **run_featx(store, labels, tmp / "featx-run", seed, args)}]
    rows += run_reference(tmp, out, annotations, base, seed, args)
    for row in rows:
        own = row.get("own_evaluator")
        print(f"  {row['method']}: mAP@0.5 {row['map@0.5']:.3f}, average {row['average_map']:.3f}, "
              f"{row['s_per_epoch']:.1f} s/epoch" + (f" (the release's own evaluator: {own})" if own else ""), flush=True)
    return rows


# -- the table -----------------------------------------------------------------------------------------------
COLUMNS = [Column("seed", "<"), Column("method", "<"), Column("mAP@0.5"), Column("average mAP 0.5:0.95"),
           Column("s / epoch"), Column("epochs")]


def table(rows: list[dict]) -> str:
    """One line per seed and method, then mean ± standard deviation over seeds per method."""
    cells = [[r["seed"], r["method"], f"{r['map@0.5']:.3f}", f"{r['average_map']:.3f}", f"{r['s_per_epoch']:.1f}", r["epochs"]]
             for r in sorted(rows, key=lambda r: (r["seed"], METHODS.index(r["method"])))]
    for method in METHODS:
        cell = [r for r in rows if r["method"] == method]
        if not cell:
            continue
        at5, avg, sec = (np.array([r[k] for r in cell]) for k in ("map@0.5", "average_map", "s_per_epoch"))
        cells.append(["mean", method, f"{at5.mean():.3f} ± {at5.std():.3f}", f"{avg.mean():.3f} ± {avg.std():.3f}",
                      f"{sec.mean():.1f} ± {sec.std():.1f}", cell[0]["epochs"]])
    return markdown_table(COLUMNS, cells)


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--reference", required=True, help="a checkout of happyharrycn/actionformer_release, NMS built")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--videos", type=int, default=45)
    parser.add_argument("--seconds", type=float, default=50)
    parser.add_argument("--source-fps", type=float, default=8, help="the synthetic videos' frame rate")
    parser.add_argument("--fps", type=float, default=4.0, help="feature rate")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each (OMP_NUM_THREADS for the release)")
    parser.add_argument("--featx-epochs", type=int, default=None, help="default: the head's (60)")
    parser.add_argument("--reference-epochs", type=int, default=None, help="opt.epochs after warm-up; default the config's (30)")
    parser.add_argument("--reference-warmup-epochs", type=int, default=None, help="default the config's (5)")
    parser.add_argument("--max-seq-len", type=int, default=None, help="the release's; default the export's fragment")
    add_out(parser, "reference_actionformer.json")
    args = parser.parse_args()
    reference = Path(args.reference)
    if not (reference / "train.py").is_file() or not (reference / REFERENCE_CONFIG).is_file():
        raise SystemExit(f"--reference {reference}: not an ActionFormer release checkout (no train.py, {REFERENCE_CONFIG})")
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            rows += run_seed(Path(tmp), seed, args)
        write_results(args.out, {"args": vars(args), "rows": rows, "complete": False})  # survives a stop
    print(f"\nhard set, {args.videos} videos of {args.seconds:g} s at {args.source_fps:g} fps, features at {args.fps:g} fps "
          f"(validation: the annotations' subset); seeds {args.seeds}; CPU, {args.threads} thread(s) each; tIoU 0.5:0.05:0.95 "
          "(featx's evaluator for all); reference-ema: the release's EMA weights (as shipped), reference-plain: its plain weights")
    print(table(rows))
    write_results(args.out, {"args": vars(args), "rows": rows, "complete": True})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
