"""The Python interface to stage 1, what `featx extract` calls: `featx.extract` into a store, and
`featx.embed` of one video into memory for a notebook. Options are the CLI's, as keywords
(`featx extract --clip-len 16` is `clip_len=16`); docs/python.md shows each call."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from featx.config import DEFAULT_BACKBONE
from featx.errors import FeatxError

# The options that decide the features (the store's identity) and those that only decide how the run goes.
CONFIG_OPTIONS = ("backbone", "weights", "fps", "dtype", "precision", "clip_len", "clip_stride", "clip_tail", "inflate",
                  "inflate_time", "mean_cube", "stream", "flow_len", "flow", "weights_flow", "weights_flow_backbone",
                  "resize_on", "decoder", "layer", "runtime")
RUN_OPTIONS = ("batch_size", "workers", "device", "progress", "part_mb", "shard", "compile")
RECIPE_FILLS = ("backbone", "fps", "clip_len", "clip_stride")
OPTION_TYPES = {"backbone": str, "weights": Path, "fps": float, "dtype": str, "precision": str, "clip_len": int,
                "clip_stride": int, "clip_tail": str, "inflate": str, "inflate_time": int, "mean_cube": Path,
                "stream": str, "flow_len": int, "flow": str, "weights_flow": Path, "weights_flow_backbone": Path,
                "resize_on": str, "decoder": str, "layer": str, "runtime": str,
                "batch_size": int, "workers": int, "device": str, "progress": bool, "part_mb": float, "shard": str,
                "compile": bool}


def extract(sources: Iterable[str | Path] | str | Path, out: str | Path, *, recipe: str | None = None,
            engine: str = "local", shards: int = 2, ray_address: str | None = None, **options):
    """Extract features of every video in `sources` (video files, folders searched recursively, list files)
    into the store `out` (created, or resumed: videos already ok there are skipped). Returns the run's
    ExtractSummary (ok, failed, skipped, frames, failures with reasons).

    options: backbone (default tf_efficientnet_lite0, bundled weights), weights (a local file, "random-init", or
    None: the backbone's own pretrained ones, from the hub's cache or downloaded there: featx.backbones.hub),
    fps (None: every frame), clip_len / clip_stride / clip_tail (clip backbones), inflate / inflate_time,
    mean_cube, stream ("rgb", "flow", "both"), flow_len, flow, weights_flow (RAFT's checkpoint, for computing
    flow), weights_flow_backbone (the flow stream's own backbone checkpoint), resize_on, decoder, dtype,
    precision, runtime ("auto": OpenVINO on the CPU where it gives torch float32's features, "torch", "openvino";
    featx.backbones.runtime); batch_size, workers, device, progress, part_mb, shard ("i/N"), compile. `recipe` fills
    backbone, fps, clip_len and clip_stride where they are not given (None). Unknown options, and values that
    make no sense, are one FeatxError line.
    """
    from featx.backbones import extraction_config
    from featx.inputs import check_option_types, collect_inputs, path_argument
    from featx.pipeline import RunOptions
    from featx.pipeline import extract as run_extract
    from featx.shards import parse_shard

    unknown = sorted(set(options) - set(CONFIG_OPTIONS) - set(RUN_OPTIONS))
    if unknown:
        raise FeatxError(f"featx.extract: unknown option(s) {', '.join(unknown)} (options: "
                         f"{', '.join(CONFIG_OPTIONS + RUN_OPTIONS)})")
    check_option_types(options, OPTION_TYPES, "featx.extract")
    out = out if "://" in str(out) else path_argument(out, "featx.extract: out")
    if isinstance(sources, (str, os.PathLike)) and not isinstance(sources, bytes):
        sources = [sources]
    if not isinstance(sources, (list, tuple)) or not sources:
        raise FeatxError(f"featx.extract: sources must be a path or a non-empty list of paths, not {sources!r}")
    for source in sources:  # kept as given: a URI's `//` must reach collect_inputs whole
        path_argument(source, "featx.extract: each source")
    if recipe is not None:
        from featx.recipes import apply_recipe

        given = {name for name in RECIPE_FILLS if options.get(name) is not None}
        options.update(apply_recipe(recipe, {name: options.get(name) for name in RECIPE_FILLS}, given))
    config = extraction_config(**_config_fields({k: v for k, v in options.items() if k in CONFIG_OPTIONS}))
    run = {k: v for k, v in options.items() if k in RUN_OPTIONS}
    if run.get("shard") is not None:
        run["shard"] = parse_shard(run["shard"])
    run_options = RunOptions(**run)
    videos = collect_inputs(sources)
    if engine == "ray":
        if run_options.shard:
            raise FeatxError("--engine ray makes its own shards: use --shards N, not --shard")
        from featx.ray_engine import extract_on_ray

        return extract_on_ray(videos, out, config, run_options, shards, ray_address)
    if engine != "local":
        raise FeatxError(f"--engine must be local or ray, not {engine!r}")
    return run_extract(videos, out, config, run_options)


def _config_fields(given: dict) -> dict:
    """The CLI's option names and values as ExtractConfig's fields."""
    renamed = {"flow": "flow_method", "weights_flow": "flow_weights", "weights_flow_backbone": "flow_backbone_weights"}
    fields = {k: v for k, v in given.items() if k not in ("weights", "mean_cube", *renamed)}
    weights = given.get("weights")
    fields["weights"] = "auto" if weights is None else str(weights)
    fields["backbone"] = given.get("backbone") or DEFAULT_BACKBONE
    if given.get("mean_cube") is not None:
        fields["mean_cube"] = str(given["mean_cube"])
    for option, field in renamed.items():
        if given.get(option) is not None:
            fields[field] = given[option] if option == "flow" else str(given[option])
    return fields


def embed(video: str | Path, **options) -> tuple[pd.DataFrame, np.ndarray]:
    """One video's features in memory: (its rows' times, a (T, D) float32 array), exactly what `featx.extract`
    would store for it with the same options (it extracts into a temporary store, then reads it back).
    The times: t_start, t_end (seconds; t_center for clips), frame_start, frame_end (frames [start, end)).
    A video that cannot be decoded is one FeatxError line with the reason."""
    from featx.inputs import path_argument
    from featx.store import open_store

    path = path_argument(video, "featx.embed: video")
    refused = sorted(set(options) & {"shard", "part_mb", "engine"})
    if refused:
        raise FeatxError(f"featx.embed: {', '.join(refused)} is for stores (featx.extract), not one video in memory")
    if not path.is_file():
        raise FeatxError(f"{path}: no such video file")
    options.setdefault("progress", False)
    with tempfile.TemporaryDirectory(prefix="featx-embed-") as tmp:
        summary = extract([path], Path(tmp) / "store", **options)
        if summary.failed:
            raise FeatxError(f"{path}: {summary.failures[0][1]}")
        store = open_store(Path(tmp) / "store")
        video_id = store.ok_ids()[0]
        rows = store.rows(ids=[video_id]).sort_values("step")
        features = np.stack(rows.pop("feature").to_numpy()).astype(np.float32)
        times = rows.drop(columns=[c for c in ("video_id", "step", "flow_feature") if c in rows]).reset_index(drop=True)
    return times, features
