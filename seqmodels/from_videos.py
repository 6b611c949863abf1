"""Stage 2 straight from videos: the extraction a run's training store was made with, run again on new videos
(`featx predict RUN VIDEOS...`, `TrainedRun.predict(videos)`) so that a head meets the features it learnt on."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from featx.config import ExtractConfig
from featx.errors import FeatxError


def run_extraction(store_config: dict | None) -> ExtractConfig:
    """The config that extracts features as the run's store holds them: the same settings, and the weights
    found again where they came from (bundled or a hub: looked up again; a file: that file), checked by sha256
    when the backbone loads (`check_same_weights`)."""
    if store_config is None:
        raise FeatxError("this run does not record its store's extraction config (trained before featx recorded "
                         "it): extract the videos with `featx extract` and predict on that store")
    config = ExtractConfig.from_dict(store_config)
    hubs = ("bundled:", "timm-hub:", "torchvision:", "url:", "hf:")  # featx.backbones.hub's sources: look up again
    source = "auto" if config.weights.startswith(hubs) else config.weights
    return dataclasses.replace(config, weights=source)


def check_same_weights(found: ExtractConfig, wanted: ExtractConfig) -> None:
    if found.weights_sha256 != wanted.weights_sha256:
        raise FeatxError(f"the weights found for {wanted.backbone} ({found.weights}) differ from those the run's "
                         "store was extracted with (sha256 mismatch)")


def is_store(source) -> bool:
    """Whether a predict source is a store (a featx.Store, a URI, or a folder holding a store's files) rather
    than videos, folders of videos or list files."""
    if isinstance(source, os.PathLike) and not isinstance(source, Path):
        return True  # a featx.Store (a plain path is told apart below)
    text = str(source)
    if "://" in text and not text.startswith("file://"):
        return True
    path = Path(text)
    return path.is_dir() and ((path / "_videos").is_dir() or any(path.glob("part-*.parquet")))


def extract_for_run(store_config: dict | None, sources: list, out: Path, device: str = "auto", progress: bool = False):
    """Extract the videos `sources` names into the new store `out` as the run's store was extracted; returns
    the ExtractSummary (its failures are the videos that could not be read)."""
    from featx.inputs import collect_inputs
    from featx.pipeline import RunOptions, extract

    wanted = run_extraction(store_config)
    summary = extract(collect_inputs(sources), out, wanted, RunOptions(device=device, progress=progress))
    from featx.store import read_config

    made = read_config(out)
    differ = made.differences(ExtractConfig.from_dict(store_config)) if made is not None else []
    if differ:
        raise FeatxError(f"the videos were extracted differently from the run's store here ({'; '.join(differ)}): "
                         "the backbone or its weights on this machine are not the ones the run was trained on")
    if summary.ok == 0:
        reason = f": {summary.failures[0][0]}: {summary.failures[0][1]}" if summary.failures else ""
        raise FeatxError(f"no video could be read{reason}")
    return summary
