"""The `featx` command line: thin wrappers that build a config and call the library."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from featx.config import DEFAULT_BACKBONE
from featx.errors import FeatxError

from typer._click.core import Context as _Context
from typer._click.formatting import HelpFormatter as _HelpFormatter

_UNBROKEN_HYPHEN = "\u2011"  # a hyphen that text wrapping does not break at


class _WholeWordsFormatter(_HelpFormatter):
    """Help wrapped at spaces only: an option name (--clip-len) or a value (s3://bucket/x-y) is never split
    across two lines at a hyphen, as textwrap does by default."""

    def write_text(self, text: str) -> None:
        super().write_text(text.replace("-", _UNBROKEN_HYPHEN))

    def write_dl(self, rows, *args, **kwargs) -> None:
        rows = [(a.replace("-", _UNBROKEN_HYPHEN), b.replace("-", _UNBROKEN_HYPHEN)) for a, b in rows]
        super().write_dl(rows, *args, **kwargs)

    def getvalue(self) -> str:
        return super().getvalue().replace(_UNBROKEN_HYPHEN, "-")


class _WholeWordsContext(_Context):
    formatter_class = _WholeWordsFormatter


class ReadableHelp(typer.core.TyperCommand):
    """Help that reads well at 80 columns: values named in capitals (STORE, FPS) instead of type tags such
    as <str> or <list[str]>, a plain usage line (`featx extract [OPTIONS] INPUTS...`), and lines broken at
    spaces only."""

    context_class = _WholeWordsContext

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = param.name.upper().replace("_", "-")
            if param.param_type_name == "argument":  # its name says it all: no "<list[str]>" beside it
                param.display_type_rich = lambda ctx: None

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (an unknown option, a value of the wrong type) keep the contract of every other bad input:
    one `error:` line on stderr and exit code 1, not click's usage block and exit code 2."""

    context_class = _WholeWordsContext

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        from typer._click.exceptions import NoArgsIsHelpError, UsageError

        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as exc:  # `featx` alone: the help
            exc.show()
            sys.exit(0)
        except UsageError as exc:
            hint = f" (see `{exc.ctx.command_path} -h`)" if exc.ctx is not None else ""
            typer.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(1)
        except typer.Abort:
            typer.echo("interrupted: nothing was written", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


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
        import featx

        typer.echo(f"featx {featx.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    pass


RESUME_HINT = "finished videos were committed; run the same command again to resume"


@contextlib.contextmanager
def user_errors(on_interrupt: str = "nothing was written"):
    """At the CLI boundary a FeatxError is one line on stderr and exit code 1, never a traceback; Ctrl-C is
    one line saying what was kept, and exit code 130. Library warnings raised meanwhile are held back: shown
    after a command that succeeds, dropped when the error line says what went wrong."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        try:
            yield
        except FeatxError as exc:
            _fail(f"error: {exc}", 1)
        except OSError as exc:  # the system refused: disk full, read-only, permissions, an unreachable bucket
            _fail(f"error: {os_reason(exc)}", 1)
        except UnicodeDecodeError as exc:  # a text input that is not UTF-8, where the reader did not name it
            _fail(f"error: a text file given is not UTF-8 ({exc.reason} at offset {exc.start}); save it as UTF-8", 1)
        except KeyboardInterrupt:
            _fail(f"interrupted: {on_interrupt}", 130)
    for warning in caught:
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _fail(line: str, code: int):
    typer.echo(line, err=True)
    raise typer.Exit(code) from None


def os_reason(exc: OSError) -> str:
    """An OSError as one line: what failed, on which file."""
    what = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
    return f"{what}: {where}" if where else what


def _print_summary(summary) -> None:
    for line in summary.lines():
        typer.echo(line)


def _list_recipes(value: bool) -> None:
    if value:
        from featx.recipes import describe

        for line in describe():
            typer.echo(line)
        raise typer.Exit()


@app.command(cls=ReadableHelp)
def extract(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(help="Video files, folders (searched recursively) or list files (.txt: one path per line; .csv: a 'path' column, optional 'video_id').")],
    out: Annotated[str, typer.Option("--out", "-o", help="Store directory (created, or resumed if it exists), or a pyarrow filesystem URI: s3://bucket/store, gs://bucket/store, hdfs://host/store.")],
    backbone: Annotated[str, typer.Option(help="Any timm model name (the default has bundled ImageNet weights and works offline), or a clip backbone with --clip-len: r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v1_b, mvit_v2_s, swin3d_t/s/b (torchvision checkpoints via --weights), c3d, c3d_fc7, i3d-googlenet (I3D: torchvision's GoogLeNet inflated; its 2D ImageNet checkpoint via --weights).")] = DEFAULT_BACKBONE,
    weights: Annotated[Optional[Path], typer.Option(help="Local weights: a state dict, a timm checkpoint or .safetensors (loaded with weights_only=True).")] = None,
    random_init: Annotated[bool, typer.Option("--random-init", help="Untrained, seeded weights (for tests; the features mean nothing).")] = False,
    fps: Annotated[Optional[float], typer.Option(help="Sample frames at this rate by presentation time. Default: every frame.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Frames per backbone call (batches span videos).")] = 32,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decoding processes (0: decode in the main process). Default: several with CUDA; on the CPU 0 for up to 2 cores (a worker would compete with the model for them), else cores/8.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    dtype: Annotated[str, typer.Option(help="Storage dtype of the features: float16 or float32.")] = "float16",
    precision: Annotated[str, typer.Option(help="Backbone arithmetic: auto (float16 autocast on CUDA, float32 on the CPU), float32, bfloat16 or float16. Recorded in the store: one store holds one precision.")] = "auto",
    clip_len: Annotated[Optional[int], typer.Option(min=1, help="Clip backbones: frames (sampled at --fps) per clip; one row per clip. Needed by r3d_18, mc3_18, r2plus1d_18, s3d, mvit_*, swin3d_* (16 is their usual length) and by --inflate.")] = None,
    clip_stride: Annotated[Optional[int], typer.Option(min=1, help="Frames between clip starts (default: --clip-len, no overlap).")] = None,
    clip_tail: Annotated[str, typer.Option(help="The frames after the last full clip: pad (one more clip, the last frame repeated) or drop.")] = "pad",
    inflate: Annotated[Optional[str], typer.Option(help="Turn a 2D timm CNN (convolutions, batch norms, pools: ResNets, VGGs; others are refused) into a 3D clip backbone: mean (each k x k kernel repeated over time / T) or center (middle slice only).")] = None,
    inflate_time: Annotated[int, typer.Option(help="With --inflate: the temporal kernel size of the k x k convolutions.")] = 3,
    mean_cube: Annotated[Optional[Path], typer.Option(help="C3D (c3d, c3d_fc7) with --clip-len 16: a .npy mean cube (3x16x128x171 or 3x16x112x112, RGB, 0-255 scale, e.g. Sports-1M's) subtracted from every clip as the original C3D does; its sha256 is part of the store's identity.")] = None,
    stream: Annotated[str, typer.Option(help="rgb (frames), flow (optical-flow stacks into the same network, its first convolution cross-modality initialised), or both: RGB in `feature` and flow in `flow_feature` on one time grid. Needs opencv-python-headless (pip install 'featx[flow]').")] = "rgb",
    flow_len: Annotated[Optional[int], typer.Option(min=1, help="With --stream flow|both: flow fields stacked per row (2L input channels; default 5). Clip backbones take one field per frame: a (2, L, H, W) flow clip for --clip-len L.")] = None,
    flow: Annotated[str, typer.Option(help="With --stream flow|both: farneback (computed in the decoding workers), tvl1 (needs opencv-contrib-python-headless), or raft-small / raft-large (torchvision's RAFT on --device, weights from --weights-flow).")] = "farneback",
    weights_flow: Annotated[Optional[Path], typer.Option(help="With --flow raft-small|raft-large: torchvision's RAFT checkpoint of that size (a local state dict or .safetensors; featx downloads nothing).")] = None,
    resize_on: Annotated[Optional[str], typer.Option(help="Where frames are resized and cropped: cpu (FFmpeg's scaler in the decoding workers) or device (the workers send frames at their decoded size; torch resizes them on --device, antialiased). Recorded in the store: the two give slightly different features, so one store holds one. RGB frames only (no --clip-len, no --stream flow|both). Default: cpu, device with --decoder nvdec.")] = None,
    decoder: Annotated[str, typer.Option(help="pyav (FFmpeg on the CPU) or nvdec (the GPU's decoder through PyNvVideoCodec, pip install 'featx[nvdec]'; frames stay on the card, resized there). Without PyNvVideoCodec or a CUDA device, nvdec says why in one line and decodes with PyAV. Recorded in the store (what actually decoded).")] = "pyav",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the backbone (worth it for long runs on a GPU; compiling takes a while). Every batch is padded to --batch-size so it compiles once.")] = False,
    part_mb: Annotated[float, typer.Option(help="Commit a part file once it holds about this many MB of features (a crash loses at most the uncommitted part).")] = 64,
    shard: Annotated[Optional[str], typer.Option(help="i/N: extract only the videos of shard i of N (a stable hash of video_id). Shards may run at the same time, on any machines, into one store.")] = None,
    engine: Annotated[str, typer.Option(help="local, or ray: run --shards shards as Ray tasks (pip install 'featx[ray]').")] = "local",
    shards: Annotated[int, typer.Option(min=1, help="With --engine ray: how many shards (tasks) to split the inputs into.")] = 2,
    ray_address: Annotated[Optional[str], typer.Option(help="With --engine ray: an existing cluster (e.g. auto, ray://head:10001). Default: start Ray on this machine.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 when any video failed (default: failures are recorded in the manifest and the exit code is 0).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    recipe: Annotated[Optional[str], typer.Option(help="Named settings of published features: fills --backbone, --fps, --clip-len and --clip-stride where not given (the store records the values, not the name). --list-recipes names them.")] = None,
    list_recipes: Annotated[bool, typer.Option("--list-recipes", callback=_list_recipes, is_eager=True, help="Print the recipes: what each sets and where its numbers come from; then exit.")] = False,
) -> None:
    """Extract per-frame features of every input video into a Parquet store.

    Re-running on the same --out skips videos already extracted. Unreadable videos become `error` rows in the store's manifest (see `featx info`) and the run goes on; the exit code is 0 unless --strict.
    """
    import featx.api

    with user_errors(on_interrupt=RESUME_HINT):
        if weights is not None and random_init:
            raise FeatxError("--weights and --random-init exclude each other")
        options = dict(backbone=backbone, weights="random-init" if random_init else weights, fps=fps, dtype=dtype,
                       precision=precision, clip_len=clip_len, clip_stride=clip_stride, clip_tail=clip_tail,
                       inflate=inflate, inflate_time=inflate_time, mean_cube=mean_cube, stream=stream,
                       flow_len=flow_len, flow=flow, weights_flow=weights_flow, resize_on=resize_on, decoder=decoder,
                       batch_size=batch_size, workers=workers, device=device, progress=progress, part_mb=part_mb,
                       shard=shard, compile=compile)
        if recipe is not None:  # the recipe fills what was not typed
            for name in featx.api.RECIPE_FILLS:
                if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("COMMANDLINE", "ENVIRONMENT"):
                    options[name] = None
        summary = featx.api.extract(inputs, out, recipe=recipe, engine=engine, shards=shards, ray_address=ray_address,
                                    note=lambda line: typer.echo(line, err=True), **options)
    _print_summary(summary)
    if strict and summary.failed:
        raise typer.Exit(1)


def _number(value, spec: str) -> str:
    """A manifest number as text; '-' where the video has none (a failed one)."""
    import math

    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def _applies(config: dict) -> dict:
    """The settings that mean something for this store: clip settings for clip stores, inflation's for inflated
    backbones, flow's for flow streams; unset ones left out, except fps (None: every frame)."""
    clips, flow = config.get("clip_len") is not None, config.get("stream", "rgb") != "rgb"
    only = {"clip_tail": clips, "clip_stride": clips, "inflate_time": config.get("inflate") is not None,
            "flow_len": flow, "flow_method": flow}
    shown = {k: v for k, v in config.items() if only.get(k, True) and (v is not None or k == "fps")}
    if shown.get("fps", 0) is None:
        shown["fps"] = "every frame"
    return shown


def _format_info(info: dict) -> str:
    lines = [f"store      {info['store']}"]
    for key, value in _applies(info["config"] or {}).items():  # the settings the store was made with
        lines.append(f"{key:<14} {value}")
    lines.append(f"parts      {info['parts']} ({info['bytes'] / 2**20:.1f} MiB)")
    lines.append(f"rows       {info['rows']}")
    lines.append(f"videos     {info['videos_ok']} ok, {info['videos_failed']} failed")
    if len(info["shards"]) > 1 or "-" not in info["shards"]:
        for shard, counts in sorted(info["shards"].items()):
            lines.append(f"  shard {shard}: {counts['ok']} ok, {counts['failed']} failed")
    for fail in info["failed"]:
        lines.append(f"  failed {fail['video_id']} ({fail['path']}): {fail['error']}")
    if not info.get("pages_read", True):
        lines.append(f"pages      not read, footers only: `featx info --verify {info['store']}` reads every page")
    for problem in info["problems"]:
        lines.append(f"problem    {problem}")
    return "\n".join(lines)


@app.command(cls=ReadableHelp)
def info(
    store: Annotated[str, typer.Argument(help="A store written by `featx extract`: a directory or a pyarrow filesystem URI (s3://..., gs://...).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    inputs: Annotated[Optional[list[str]], typer.Option("--inputs", help="The extraction's inputs (repeatable): also report which of their videos have no ok or error row yet.")] = None,
    verify: Annotated[bool, typer.Option("--verify", help="Read every page of every part (checksums included); exit 1 naming missing or damaged parts and videos written twice.")] = False,
    repair: Annotated[bool, typer.Option("--repair", help="Verify, then set damaged parts aside in _damaged/, remove second copies of videos and mark the videos of lost parts failed, so that the next `featx extract` redoes them.")] = False,
    videos: Annotated[bool, typer.Option("--videos", help="Also list every video: id, status, rows, duration (s), source fps.")] = False,
) -> None:
    """Print a store's extraction config, counts, feature dimension, shards, the failed videos with reasons and any problems (missing or damaged parts, videos written twice)."""
    from featx.store import store_info, videos_to_do

    with user_errors():
        if verify or repair:
            from featx.store.check import check_store

            problems, repairs = check_store(store, repair=repair, progress=not as_json)
            for line in repairs:
                typer.echo(f"repaired   {line}", err=True)
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
    typer.echo(json.dumps(summary, indent=1, default=str) if as_json else _format_info(summary))
    if videos and not as_json:
        for row in summary["videos"]:
            typer.echo(f"  {row['video_id']}  {row['status']}  {_number(row['rows'], '.0f')} rows  "
                       f"{_number(row['duration'], '.2f')} s  {_number(row['fps'], '.3f')} fps")
    if inputs and not as_json:
        missing = summary["missing"]
        done = "complete: every input has an ok or error row" if not missing else f"{len(missing)} not done yet"
        typer.echo(f"inputs     {summary['inputs']}, {done}")
        for video_id in missing[:10]:
            typer.echo(f"  missing {video_id}")
    if verify and not repair and problems:
        typer.echo(f"error: {problems.summary()}; `featx info --repair {store}` repairs it", err=True)
        raise typer.Exit(1)


@app.command(cls=ReadableHelp)
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the videos and their labels into.")],
    kind: Annotated[str, typer.Option(help="trimmed (labels.csv), untrimmed (ActivityNet annotations.json) or motion (labels.csv; classes left, right, up, down that only motion tells apart).")] = "trimmed",
    videos: Annotated[int, typer.Option(help="Number of videos (trimmed, motion: classes assigned in turn).")] = 16,
    seconds: Annotated[Optional[float], typer.Option(help="Length of each video. Default: 3 (trimmed), 40 (untrimmed), 2 (motion).")] = None,
    fps: Annotated[str, typer.Option(help="Frame rate of the videos: 25, 30000/1001; 29.97 and 23.976 are the exact NTSC rates 30000/1001 and 24000/1001.")] = "8",
    size: Annotated[int, typer.Option(help="Width and height in pixels (even).")] = 96,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed: the same seed gives the same videos.")] = 0,
    lead_in: Annotated[float, typer.Option(min=0.0, max=0.9, help="Trimmed: each video starts with the background alone for a random share of its length below this.")] = 0.0,
    flashes: Annotated[float, typer.Option(min=0.0, max=0.24, help="Trimmed: each colour only flashes, for this share of the video, at a random time (first before second).")] = 0.0,
    hard: Annotated[bool, typer.Option("--hard", help="Untrimmed: 0.5-20 s actions, occlusions, order-only classes.")] = False,
    vfr: Annotated[bool, typer.Option("--vfr", help="Untrimmed: variable frame rate, each frame lasting 1 or 1.5 periods of --fps at random (at 30: 1/30 or 1/20 s).")] = False,
) -> None:
    """Make synthetic labelled videos for demos, tests and benchmarks."""
    from featx import synth as synth_lib

    from featx.store import refuse_output_in_store

    with user_errors(on_interrupt="some videos were written; run the same command again to write them all"):
        refuse_output_in_store(out, "OUT", folder=True)
        default_seconds = {"trimmed": 3.0, "untrimmed": 40.0, "motion": 2.0}
        if kind not in default_seconds:
            raise FeatxError(f"--kind must be trimmed, untrimmed or motion, not {kind!r}")
        if hard and kind != "untrimmed":
            raise FeatxError("--hard applies to --kind untrimmed only")
        if vfr and kind != "untrimmed":
            raise FeatxError("--vfr applies to --kind untrimmed only")
        if (lead_in or flashes) and kind != "trimmed":
            raise FeatxError("--lead-in and --flashes apply to --kind trimmed only")
        length = seconds if seconds is not None else default_seconds[kind]
        common = dict(videos=videos, seconds=length, fps=synth_lib.frame_rate(fps), size=size, seed=seed, progress=True)
        if kind == "trimmed":
            result = synth_lib.make_trimmed(out, lead_in=lead_in, flashes=flashes, **common)
        elif kind == "motion":
            result = synth_lib.make_motion(out, **common)
        else:
            result = synth_lib.make_untrimmed(out, hard=hard, vfr=vfr, **common)
    typer.echo(f"wrote {len(result.videos)} videos and {result.labels.name} to {result.folder}")


def _parse_options(options: list[str]) -> dict:
    """--option key=value pairs; values are read as JSON when they parse (numbers, true/false), else text."""
    parsed = {}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FeatxError(f"--option {item!r}: expected key=value, e.g. --option hidden=128")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


@app.command("train-head", cls=ReadableHelp)
def train_head(
    store: Annotated[str, typer.Argument(help="A store written by `featx extract` (a directory or a pyarrow filesystem URI).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder to write (config.json, checkpoint.pt, metrics.json, plots).")],
    labels: Annotated[Optional[Path], typer.Option(help="Classification: CSV with video_id,label[,split] (split: train / val). Several labels for a video (a `labels` cell separated by |, or one row per label) make it a multi-label run.")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="Detection (or --task multilabel): ActivityNet or ActionFormer JSON, a THUMOS14 folder of <Class>_val.txt / _test.txt, Charades CSV, or CSV video_id,start,end,label (docs/formats.md). Its subsets split the videos: training / validation, or THUMOS's validation / test.")] = None,
    train_subset: Annotated[Optional[str], typer.Option(help="Detection: the annotations' subset to train on (any case: training, validation, test). Default: training when the file has training and validation; validation for a THUMOS-shaped file (validation and test); else a random share of the non-test videos.")] = None,
    eval_subset: Annotated[Optional[str], typer.Option(help="Detection: the subset to score (default: validation, or test for a THUMOS-shaped file; a random --val-fraction share when the file names neither pair). Test videos never reach training unless named.")] = None,
    tiou: Annotated[Optional[str], typer.Option(help="Detection: tIoU thresholds reported: thumos (0.3:0.1:0.7), activitynet (0.5:0.05:0.95) or a list like 0.3,0.5. Default: thumos for a THUMOS-shaped file, else activitynet.")] = None,
    task: Annotated[str, typer.Option(help="classification, detection or multilabel (per-step sigmoid heads, Charades mAP). Default: detection with --annotations; multilabel with --labels naming several classes for a video; else classification.")] = "auto",
    head: Annotated[Optional[str], typer.Option(help="Classification: avgpool, maxpool, late-fusion, slow-fusion, lstm (default), skip-lstm, skip-gru or transformer. Detection: actionformer (default), montes-lstm, linear, skip-lstm or skip-gru (adaptive). Multilabel (per step): lstm (default), gru, skip-lstm or skip-gru.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs (default per head: 30 classification, 60 actionformer, 40 montes-lstm / linear).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Videos per batch (default per head: 32, actionformer 4, step detectors 8).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="AdamW peak learning rate (default per head: 1e-3, actionformer 2e-4).")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="AdamW weight decay on weights only (default per head: 1e-2, actionformer 0.05).")] = None,
    warmup_epochs: Annotated[Optional[float], typer.Option(help="Linear warm-up before the cosine decay (default per head: 2, actionformer 5).")] = None,
    ema_decay: Annotated[float, typer.Option(help="The saved weights are this exponential moving average of the trained ones.")] = 0.999,
    holdout: Annotated[float, typer.Option(help="Early stopping on this share of the training videos (0: train all epochs).")] = 0.0,
    patience: Annotated[int, typer.Option(help="With --holdout: stop after this many epochs without a lower held-out loss.")] = 10,
    budget: Annotated[float, typer.Option(help="Skip heads (classification, detection, multilabel): cost λ per updated step (budget loss λ·Σ u_t).")] = 0.0,
    gate_warmup: Annotated[float, typer.Option(help="Skip heads: share of the epochs, from the first, in which every step updates (the gates open) before the gates learn; 0: from the start. Without it a gate can close for good in the first epoch.")] = 0.25,
    max_steps: Annotated[Optional[int], typer.Option(help="Classification: sample at most this many steps per video, uniformly in time. Detection: training crop length (default 2304).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Validation share when the labels or annotations name no split.")] = 0.2,
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Random seed of the split, the initial weights and the batches.")] = 0,
    option: Annotated[Optional[list[str]], typer.Option(help="A head option as key=value, repeatable (e.g. hidden=128, layers=2, bidirectional=true, window=9).")] = None,
    ignore_missing: Annotated[bool, typer.Option("--ignore-missing", help="Leave out labelled videos missing from the store and store videos without a label, instead of failing.")] = False,
    background_weight: Annotated[float, typer.Option(help="Step detectors: loss weight of background steps (Montes et al.: 0.3).")] = 0.3,
    smooth: Annotated[int, typer.Option(help="Step detectors: mean-filter window in steps before thresholding.")] = 5,
    threshold: Annotated[float, typer.Option(help="Step detectors: a step is active when 1 - P(background) reaches this.")] = 0.5,
    stream: Annotated[Optional[str], typer.Option(help="The features the head reads: rgb, flow or both. Default: the store's own (both for a store from `extract --stream both`; a store from --stream flow holds flow in `feature`, read as flow). A stream the store lacks is an error.")] = None,
    fusion: Annotated[Optional[str], typer.Option(help="With --stream both: early (one head on each step's RGB and flow features side by side) or late (default: one head per stream, trained alike, their class probabilities averaged; Simonyan & Zisserman).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier run in --out (only once the new one is complete).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a head on a store's features: a video classifier (--labels) or a temporal activity detector
    (--annotations), under one protocol (AdamW, warm-up + cosine, weight EMA; fixed epochs or --holdout);
    print a per-epoch table and the validation metrics."""
    from tqdm.auto import tqdm

    import seqmodels.api

    with user_errors():
        run = seqmodels.api.train(
            store, out, labels, annotations, task, head, head_options=_parse_options(option or []),
            overwrite=overwrite, ignore_missing=ignore_missing, progress=progress, show=tqdm.write, epochs=epochs,
            batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, ema_decay=ema_decay,
            holdout=holdout, patience=patience, budget=budget, gate_warmup=gate_warmup, max_steps=max_steps,
            val_fraction=val_fraction, seed=seed, device=device, background_weight=background_weight, smooth=smooth,
            threshold=threshold, stream=stream, fusion=fusion, train_subset=train_subset, eval_subset=eval_subset,
            tiou=tiou,
        )
    for line in run.report:
        typer.echo(line)


def _tiou(value: str | None) -> tuple[float, ...] | None:
    from seqmodels.detection.map import parse_tiou

    return None if value is None else parse_tiou(value)


@app.command(cls=ReadableHelp)
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder written by `featx train-head`.")],
    store: Annotated[str, typer.Argument(help="A store with the same extraction config as the run's (a directory or a URI).")],
    labels: Annotated[Optional[Path], typer.Option(help="Classification (and multilabel) runs: CSV with video_id,label[,split].")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="Detection (and multilabel) runs: ActivityNet JSON or CSV video_id,start,end,label.")] = None,
    subset: Annotated[Optional[str], typer.Option(help="Detection: the annotations' subset to score (validation, test, training, any case), or all. Default: the subset the run was scored on when trained (for a random split: the annotated videos it did not train on).")] = None,
    tiou: Annotated[Optional[str], typer.Option(help="Detection: activitynet (0.5:0.05:0.95), thumos (0.3:0.1:0.7) or a list like 0.3,0.5. Default: the run's own (thumos for a THUMOS-shaped file).")] = None,
    split: Annotated[str, typer.Option(help="val (the run's validation split), train, or all labelled videos.")] = "val",
    clip_steps: Annotated[Optional[int], typer.Option(min=1, help="Also score clips of this many steps: clip hit@1, and video hit@k from the mean of a video's clips.")] = None,
    clips: Annotated[int, typer.Option(min=1, help="Clips per video with --clip-steps (spread evenly).")] = 10,
    out: Annotated[Optional[Path], typer.Option(help="Where to write the metrics JSON. Default: RUN/evaluation.json.")] = None,
    ignore_missing: Annotated[bool, typer.Option("--ignore-missing", help="Leave out videos missing on either side.")] = False,
) -> None:
    """Print and write a run's metrics: accuracy, macro-F1, hit@k, clip vs video hit@1 for a classifier; mAP per
    tIoU threshold and class (ActivityNet protocol) for a detector. The run reads the streams it was trained on."""
    from seqmodels.tasks import EvaluateOptions, Targets, task_of_run

    with user_errors():
        if out is not None:
            from featx.inputs import refuse_writing_over
            from featx.store import refuse_output_in_store
            from seqmodels.runs import refuse_output_in_run

            if out.suffix.lower() != ".json":
                raise FeatxError(f"--out {out}: the metrics are written as JSON: give a .json file")
            refuse_output_in_store(out)
            refuse_writing_over(out, [labels, annotations])
            refuse_output_in_run(out, run, allowed=("evaluation.json",))
        options = EvaluateOptions(split, clip_steps, clips, subset, _tiou(tiou), ignore_missing)
        lines = task_of_run(run).evaluate(run, store, Targets(labels, annotations), options, out or run / "evaluation.json")
    for line in lines:
        typer.echo(line)


@app.command(cls=ReadableHelp)
def predict(
    run: Annotated[Path, typer.Argument(help="A run folder written by `featx train-head`.")],
    sources: Annotated[list[str], typer.Argument(help="A store with the same extraction config as the run's, or video files, folders and list files: extracted first as the run's store was (into a temporary store), or read adaptively with --adaptive.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Classification: a .parquet or .csv file (video_id, label_1..k, score_1..k). Detection: a .json file in the ActivityNet results format. Multilabel: a .parquet or .csv file, one row per video, step and class (video_id, step, t_start, t_end, label, probability).")],
    top_k: Annotated[int, typer.Option(min=1, help="How many labels per video.")] = 5,
    adaptive: Annotated[bool, typer.Option("--adaptive", help="Skip heads on RGB only (classification skip-lstm / skip-gru, and the skip step detectors): decode the videos and run the backbone only on the frames whose step updates the state. Same predictions (or segments) as extracting every frame first.")] = False,
    device: Annotated[str, typer.Option(help="With --adaptive: the backbone's device (auto, cpu, cuda[:N]).")] = "auto",
    subset: Annotated[Optional[str], typer.Option(help="Detection with --annotations: only the videos of this subset (e.g. validation, test), so the official evaluator scores the file as `featx evaluate` does. Default with --annotations: the subset the run was scored on; without: every video of the store.")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="Detection: the annotations file that names the subsets (any format `train-head` reads).")] = None,
) -> None:
    """Predict the top-k labels of every video in a store, or straight from videos; with a detection run, the
    scored segments of every video as ActivityNet results JSON. The run reads the streams it was trained on."""
    from featx.store import refuse_output_in_store
    from seqmodels.tasks import PredictOptions, task_of_run

    with user_errors():
        from featx.inputs import refuse_writing_over
        from seqmodels.runs import refuse_output_in_run

        refuse_output_in_store(out)
        refuse_writing_over(out, [annotations, *sources])
        refuse_output_in_run(out, run)
        options = PredictOptions(top_k, adaptive, device, subset, annotations)
        lines = task_of_run(run).predict(run, sources, out, options)
    for line in lines:
        typer.echo(line)


@app.command(cls=ReadableHelp)
def export(
    store: Annotated[str, typer.Argument(help="A featx store (a directory or a pyarrow filesystem URI).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write (made; an existing non-empty one only with --overwrite).")],
    format: Annotated[str, typer.Option("--format", help="npy: one <video_id>.npy (T, D) per video, the folder ActionFormer, TriDet and OpenTAD read. hdf5: one features.h5, a dataset per video with its times as attributes (pip install 'featx[hdf5]'). csv: one <video_id>.csv per video, a header and a row per step (MMAction2 BMN).")] = "npy",
    column: Annotated[str, typer.Option(help="feature, or flow_feature of a two-stream store.")] = "feature",
    dtype: Annotated[Optional[str], typer.Option(help="float32 or float16. Default: the store's (exact).")] = None,
    annotations: Annotated[Optional[Path], typer.Option(help="Any annotations file train-head reads (docs/formats.md): also write OUT/annotations.json as ActionFormer and OpenTAD read it (per video subset, duration, fps, frame count, segments with label ids).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a non-empty --out, replacing the files of an earlier export there.")] = False,
    for_tool: Annotated[Optional[str], typer.Option("--for", metavar="TOOL", help="actionformer, tridet or opentad: also write OUT/<tool>.yaml, the dataset keys of the tool's config (feat_stride, num_frames, default_fps, input_dim, num_classes, max_seq_len, paths, split names; OpenTAD: its class map too). Needs --annotations.")] = None,
    train_subset: Annotated[Optional[str], typer.Option(help="With --for: the subset the tool trains on. Default as train-head: training, or validation for a THUMOS-shaped file.")] = None,
    eval_subset: Annotated[Optional[str], typer.Option(help="With --for: the subset the tool evaluates on. Default: validation, or test for a THUMOS-shaped file.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
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
        summary = export_store(store, out, format, column, dtype, parsed, overwrite, progress, for_tool, splits)
    _print_summary(summary)


@app.command("import", cls=ReadableHelp)
def import_(
    folder: Annotated[Path, typer.Argument(help="A folder of per-video .npy, .npz, .pt, .h5 or .csv arrays (searched recursively; id: the path without suffix), or a `featx export` folder.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Store to write (created, or appended to if its settings match).")],
    fps: Annotated[Optional[float], typer.Option(help="Frame rate of the videos the features come from. Row i spans frames [i*S, i*S + W): seconds i*S/F to (i*S + W)/F.")] = None,
    fps_file: Annotated[Optional[Path], typer.Option(help="Per-video frame rates instead of --fps: CSV video_id,fps, JSON {video_id: fps}, or an ActivityNet-style JSON whose videos say fps.")] = None,
    stride: Annotated[Optional[int], typer.Option(min=1, help="S: frames between the starts of consecutive rows. Default: 1.")] = None,
    window: Annotated[Optional[int], typer.Option(min=1, help="W: frames each row covers. Default: --stride.")] = None,
    layout: Annotated[str, typer.Option(help="TC: rows are time steps (T, D); CT: the transpose.")] = "TC",
    key: Annotated[Optional[str], typer.Option(help="The array to read in files that hold several (.npz, .pt dicts, .h5 datasets).")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="Storage dtype: float32 or float16. Default: float32, or a featx export's own.")] = None,
    backbone: Annotated[Optional[str], typer.Option(help="Name of the features' model, recorded in the store's config (e.g. i3d). Default: imported.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Import per-video feature arrays into a store that heads train on like any other. A `featx export`
    folder needs no options and comes back exactly; any other folder needs its grid: --fps (or --fps-file)
    --stride --window. Every array is checked before anything is written."""
    from featx.importer import Grid, import_folder

    with user_errors(on_interrupt=RESUME_HINT):
        grid = None
        if any(v is not None for v in (fps, fps_file, stride, window)):
            grid = Grid(fps, stride or 1, window or stride or 1)
        summary = import_folder(folder, out, grid, fps_file, layout, key, dtype, backbone, progress)
    _print_summary(summary)


@app.command(cls=ReadableHelp)
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's videos, store and runs.")] = Path("featx-demo"),
    videos: Annotated[int, typer.Option(min=8, help="Number of synthetic videos (half for validation).")] = 64,
    untrimmed: Annotated[int, typer.Option(min=4, help="Number of untrimmed 30 s videos for the detection part (a quarter for validation).")] = 16,
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
        run_demo(out, videos, untrimmed, say=typer.echo)


def main() -> None:  # pragma: no cover - `python cli.py`
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
