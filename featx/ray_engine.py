"""Shards as Ray tasks: the same `extract` per shard, on a local Ray instance or an existing cluster.

Ray is an optional extra (`pip install featx[ray]`): nothing else in featx imports it. Each task extracts one
deterministic shard (featx.shards) into the shared store path; shards never touch each other's files, so a
failed or killed task is simply run again (the store resumes). Ray schedules, retries and places the tasks;
featx adds no scheduler of its own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.pipeline import ExtractSummary, RunOptions, extract
from featx.inputs import VideoInput


def _extract_shard(inputs: list[VideoInput], out: str, config: ExtractConfig, options: RunOptions) -> ExtractSummary:
    return extract(inputs, out, config, options)


def extract_on_ray(
    inputs: list[VideoInput], out: str | Path, config: ExtractConfig, options: RunOptions, shards: int,
    address: str | None = None,
) -> ExtractSummary:
    """Run `shards` shards of the extraction as Ray tasks (a GPU each when the cluster has GPUs) and merge
    their summaries. `address`: an existing cluster ("auto", "ray://host:10001"); None starts Ray locally."""
    try:
        import ray
    except ImportError:
        raise FeatxError("--engine ray needs Ray: pip install 'featx[ray]'") from None
    if shards < 1:
        raise FeatxError(f"--shards must be at least 1, not {shards}")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 and options.device != "cpu" else 0
        task = ray.remote(num_gpus=gpus, num_cpus=1)(_extract_shard)
        per_shard = [dataclasses.replace(options, shard=(i, shards), progress=False) for i in range(shards)]
        summaries = ray.get([task.remote(inputs, str(out), config, o) for o in per_shard])
    finally:
        if started_here:
            ray.shutdown()
    merged = ExtractSummary(store=str(out))
    for s in summaries:
        merged.ok, merged.failed, merged.skipped = merged.ok + s.ok, merged.failed + s.failed, merged.skipped + s.skipped
        merged.frames += s.frames
        merged.seconds = max(merged.seconds, s.seconds)
        merged.decode_seconds = max(merged.decode_seconds, s.decode_seconds)
        merged.failures += s.failures
        merged.pages_read = merged.pages_read and s.pages_read
        merged.repairs += s.repairs
    return merged
