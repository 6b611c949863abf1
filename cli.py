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

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Extract video features once, with a frozen pretrained backbone, into a Parquet store that pandas, "
    "pyarrow and DuckDB read. (Training temporal heads on stores is not built yet.)",
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


@contextlib.contextmanager
def user_errors():
    """At the CLI boundary a FeatxError is one line on stderr and exit code 1, never a traceback."""
    try:
        yield
    except FeatxError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: finished videos were committed; run the same command again to resume", err=True)
        raise typer.Exit(130) from None


def _print_summary(summary) -> None:
    typer.echo(
        f"ok {summary.ok} | failed {summary.failed} | skipped {summary.skipped} (already in the store) | "
        f"{summary.frames} frames in {summary.seconds:.1f} s ({summary.frames_per_second:.1f} frames/s after "
        f"loading the model) "
        f"-> {summary.store}"
    )
    for video_id, reason in summary.failures[:10]:
        typer.echo(f"  failed {video_id}: {reason}")
    if len(summary.failures) > 10:
        typer.echo(f"  ... and {len(summary.failures) - 10} more (see `featx info {summary.store}`)")


@app.command()
def extract(
    inputs: Annotated[list[str], typer.Argument(help="Video files, folders (searched recursively) or list files (.txt: one path per line; .csv: a 'path' column, optional 'video_id').")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Store directory (created, or resumed if it exists).")],
    backbone: Annotated[str, typer.Option(help="Any timm model name. The default has bundled ImageNet weights and works offline.")] = DEFAULT_BACKBONE,
    weights: Annotated[Optional[Path], typer.Option(help="Local weights: a state dict, a timm checkpoint or .safetensors (loaded with weights_only=True).")] = None,
    random_init: Annotated[bool, typer.Option("--random-init", help="Untrained, seeded weights (for tests; the features mean nothing).")] = False,
    fps: Annotated[Optional[float], typer.Option(help="Sample frames at this rate by presentation time. Default: every frame.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Frames per backbone call (batches span videos).")] = 32,
    workers: Annotated[Optional[int], typer.Option(min=0, help="Decoding processes (0: decode in the main process). Default: several with CUDA; on the CPU 0 for up to 2 cores (a worker would compete with the model for them), else cores/8.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    dtype: Annotated[str, typer.Option(help="Storage dtype of the features: float16 or float32.")] = "float16",
    part_mb: Annotated[float, typer.Option(help="Commit a part file once it holds about this many MB of features (a crash loses at most the uncommitted part).")] = 64,
    strict: Annotated[bool, typer.Option("--strict", help="Exit with code 1 when any video failed (default: failures are recorded in the manifest and the exit code is 0).")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Extract per-frame features of every input video into a Parquet store.

    Re-running on the same --out skips videos already extracted. Unreadable videos become `error` rows in the store's manifest (see `featx info`) and the run goes on; the exit code is 0 unless --strict.
    """
    from featx.config import ExtractConfig
    from featx.extract import RunOptions
    from featx.extract import extract as run_extract
    from featx.inputs import collect_inputs

    with user_errors():
        if weights is not None and random_init:
            raise FeatxError("--weights and --random-init exclude each other")
        config = ExtractConfig(
            backbone=backbone,
            weights="random-init" if random_init else str(weights) if weights else "auto",
            fps=fps,
            dtype=dtype,
        )
        videos = collect_inputs(inputs)
        if config.weights == "auto" and backbone != DEFAULT_BACKBONE:
            typer.echo(f"fetching pretrained weights for {backbone} from timm's hub (offline? use --weights PATH)", err=True)
        options = RunOptions(
            batch_size=batch_size, workers=workers, device=device, progress=progress, part_mb=part_mb
        )
        summary = run_extract(videos, out, config, options)
    _print_summary(summary)
    if strict and summary.failed:
        raise typer.Exit(1)


def _format_info(info: dict) -> str:
    lines = [f"store      {info['store']}"]
    config = info["config"] or {}
    for key in ("backbone", "weights", "weights_sha256", "fps", "dtype", "feature_dim", "input_size", "mean", "std", "interpolation", "crop_pct", "versions", "format_version"):
        lines.append(f"{key:<14} {config.get(key)}")
    lines.append(f"parts      {info['parts']} ({info['bytes'] / 2**20:.1f} MiB)")
    lines.append(f"rows       {info['rows']}")
    lines.append(f"videos     {info['videos_ok']} ok, {info['videos_failed']} failed")
    for fail in info["failed"]:
        lines.append(f"  failed {fail['video_id']} ({fail['path']}): {fail['error']}")
    return "\n".join(lines)


@app.command()
def info(
    store: Annotated[Path, typer.Argument(help="A store directory written by `featx extract`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Print a store's extraction config, counts, feature dimension and the failed videos with reasons."""
    from featx.store import store_info

    with user_errors():
        summary = store_info(store)
    typer.echo(json.dumps(summary, indent=1, default=str) if as_json else _format_info(summary))


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the videos and their labels into.")],
    kind: Annotated[str, typer.Option(help="trimmed (labels.csv) or untrimmed (ActivityNet annotations.json).")] = "trimmed",
    videos: Annotated[int, typer.Option(help="Number of videos (trimmed: classes assigned in turn).")] = 16,
    seconds: Annotated[Optional[float], typer.Option(help="Length of each video. Default: 3 (trimmed), 40 (untrimmed).")] = None,
    fps: Annotated[int, typer.Option(help="Frame rate of the videos.")] = 8,
    size: Annotated[int, typer.Option(help="Width and height in pixels (even).")] = 96,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same videos.")] = 0,
) -> None:
    """Make synthetic labelled videos for demos, tests and benchmarks."""
    from featx import synth as synth_lib

    with user_errors():
        if kind not in ("trimmed", "untrimmed"):
            raise FeatxError(f"--kind must be trimmed or untrimmed, not {kind!r}")
        make = synth_lib.make_trimmed if kind == "trimmed" else synth_lib.make_untrimmed
        length = seconds if seconds is not None else (3.0 if kind == "trimmed" else 40.0)
        result = make(out, videos=videos, seconds=length, fps=fps, size=size, seed=seed, progress=True)
    typer.echo(f"wrote {len(result.videos)} videos and {result.labels.name} to {result.folder}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's videos and store.")] = Path("featx-demo"),
    videos: Annotated[int, typer.Option(help="Number of synthetic videos.")] = 16,
) -> None:
    """Make a small synthetic dataset, extract it with the bundled pretrained backbone, show how to load it."""
    from featx import synth as synth_lib
    from featx.config import ExtractConfig
    from featx.extract import RunOptions
    from featx.extract import extract as run_extract
    from featx.inputs import collect_inputs
    from featx.store import load_sequences

    with user_errors():
        data = synth_lib.make_trimmed(out / "videos", videos=videos, progress=True)
        typer.echo(f"1. synthetic videos: {len(data.videos)} in {data.folder} (labels: {data.labels})")
        store = out / "store"
        summary = run_extract(collect_inputs([data.folder]), store, ExtractConfig(fps=4.0), RunOptions())
        typer.echo("2. extracted with the bundled ImageNet EfficientNet-Lite0 at 4 frames/s:")
        _print_summary(summary)
        sequences = load_sequences(store)
        first = next(iter(sequences))
        typer.echo(f"3. {len(sequences)} sequences; {first!r} has shape {sequences[first].shape}")
    typer.echo(
        "\nOpen the store in pandas:\n"
        "    import pandas as pd\n"
        f"    df = pd.read_parquet({str(store)!r})\n"
        "    print(df.groupby('video_id').size())\n"
        f"\nOr: featx info {store}"
    )


def main() -> None:  # pragma: no cover - `python cli.py`
    app(sys.argv[1:])


if __name__ == "__main__":  # pragma: no cover
    main()
