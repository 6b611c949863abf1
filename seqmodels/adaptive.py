"""Adaptive extraction: a trained Skip RNN head decides, before a frame's features exist, whether it needs
them; the backbone runs only on the frames whose step updates the state.

Why this is exact: the gate for step t, ũ_t, depends only on steps before t (seqmodels.heads.skip_rnn). A
skipped step copies the state and never reads x_t, so its features are never computed. The features that are
computed are rounded to the store's dtype, so the head sees the very values it would read from a store.
Videos are decoded side by side and their needed frames embedded in one batch (within one video the frame
after an update can only be chosen once that update is done).

Skipped frames are not decoded either, where that can be avoided: right after an update the head knows how
many steps it will skip (ũ grows by Δũ per skipped step until it rounds to 1), so the steps are run on ahead
(`_skips`) and the video source passes over that many frames without converting or resizing them, seeking
past them when featx.seek's keyframe cost model says a jump is cheaper than decoding on (featx.frames_on_demand).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from featx.backbones import Backbone, load_backbone
from featx.config import ExtractConfig
from seqmodels.from_videos import check_same_weights, run_extraction
from featx.errors import FeatxError
from featx.inputs import VideoInput
from featx.frames_on_demand import FramesOnDemand
from seqmodels.classify import top_k_columns
from seqmodels.heads.skip_rnn import SkipRNNHead
from seqmodels.classifier import load_run


@dataclass
class _Stream:
    """One video being read adaptively."""

    source: VideoInput
    frames: FramesOnDemand  # the video's sampled frames, decoded and resized only when taken
    state: dict
    updates: list[int] = field(default_factory=list)
    outputs: list = field(default_factory=list)  # (step, h (1, H)) after each update
    calls: int = 0  # backbone calls made for this video


@dataclass
class AdaptiveResult:
    table: pd.DataFrame  # video_id, label_1, score_1, ..., backbone_calls, frames, update_fraction
    frames: int  # frames sampled
    backbone_calls: int
    seconds: float
    failures: list[tuple[str, str]]


def backbone_for_run(store_config: dict, device: str = "auto") -> Backbone:
    """The backbone that made the run's training store, with the same weights (checked by sha256)."""
    config = run_extraction(store_config)
    if config.clips:
        raise FeatxError("--adaptive skips single frames; this run was trained on clip features (--clip-len)")
    if config.resize_on != "cpu":
        raise FeatxError("--adaptive resizes frames as `extract --resize-on cpu` does; this run's store was extracted "
                         f"with --resize-on {config.resize_on} (its features differ slightly): extract with --resize-on cpu")
    backbone = load_backbone(config, device)
    check_same_weights(backbone.config, ExtractConfig.from_dict(store_config))
    return backbone


# Skipped steps run on ahead at most this many at a time (a step is a few small matrix products; a gate whose
# Δũ is tiny would otherwise run on far past the end of the video before the frames run out).
_LOOKAHEAD = 1024


def _skips(head: SkipRNNHead, state: dict) -> tuple[list[dict], bool]:
    """The states after 0, 1, ..., k skipped steps from `state` (the same step calls, on inputs they never
    read, that skipping frame by frame makes), and whether the step after the k-th updates (False: the
    look-ahead ran out first)."""
    states = [state]
    zero = torch.zeros(1, head.input_gates)  # never read: u_t = 0 copies the state
    while len(states) <= _LOOKAHEAD:
        if torch.round(head.update_probability(states[-1])).item() == 1:
            return states, True
        states.append(head.step(zero, states[-1])[0])
    return states, False


def _advance(head: SkipRNNHead, stream: _Stream):
    """Move past the frames this video does not need. Returns the next frame to embed, or None at the end."""
    while True:
        states, updates_next = _skips(head, stream.state)
        passed = stream.frames.skip(len(states) - 1)
        stream.state = states[passed]
        stream.updates.extend([0] * passed)
        if passed < len(states) - 1:  # the video ended first
            stream.frames.take()  # None; runs the end-of-video checks
            return None
        if updates_next:
            return stream.frames.take()


def _skip_head(run, run_dir) -> SkipRNNHead:
    """The Skip RNN of a classification or detection run, once the run is checked to be one --adaptive follows."""
    from seqmodels.detection.heads import SkipSteps

    stream = run.config.stream or (run.store_config or {}).get("stream", "rgb")
    if stream != "rgb":
        raise FeatxError(f"--adaptive embeds RGB frames only; {run_dir} reads the {stream} stream (predict on its store instead)")
    if isinstance(run.model, SkipSteps):
        head = run.model.skip
    elif isinstance(run.model, SkipRNNHead):
        head = run.model
    else:
        raise FeatxError(f"--adaptive needs a skip-lstm or skip-gru run; {run_dir} is a {run.config.head} run")
    if run.store_config is None:
        raise FeatxError(f"{run_dir} does not record its store's extraction config; retrain it with this featx")
    if run.config.max_steps is not None and run.task == "classification":
        raise FeatxError("--adaptive cannot follow a run trained with --max-steps (it resamples whole videos)")
    return head.cpu().eval()


def _read_adaptively(head: SkipRNNHead, backbone: Backbone, videos: list[VideoInput], streams: int):
    """Run `head` over `videos`, embedding only the frames of the steps it updates on. Returns (the finished
    streams, sorted by video id, and (video id, reason) failures)."""
    store_dtype = torch.float16 if backbone.config.dtype == "float16" else torch.float32
    pending, active, done, failures = list(videos), [], [], []
    with torch.no_grad():
        while pending or active:
            while pending and len(active) < streams:
                v = pending.pop(0)
                try:
                    frames = FramesOnDemand(v.path, backbone.config.fps, backbone.preprocess)
                except FeatxError as exc:
                    failures.append((v.video_id, str(exc)))
                    continue
                active.append(_Stream(v, frames, head.initial_state(1, torch.zeros(1))))
            needed, still = [], []
            for stream in active:
                try:
                    pixels = _advance(head, stream)
                except FeatxError as exc:
                    stream.frames.close()
                    failures.append((stream.source.video_id, str(exc)))
                    continue
                if pixels is None:
                    stream.frames.close()
                    done.append(stream)
                else:
                    needed.append((stream, pixels))
                    still.append(stream)
            active = still
            if not needed:
                continue
            feats = backbone.embed(torch.from_numpy(np.stack([p for _, p in needed])))  # (B, D) float32
            feats = feats.to(store_dtype).float()  # the values a store would hold
            gates = head.project(head.norm(feats))  # (B, G)
            for row, (stream, _) in enumerate(needed):
                stream.state, u = head.step(gates[row : row + 1], stream.state)
                stream.updates.append(int(u.item()))
                stream.outputs.append((len(stream.updates) - 1, stream.state["h"]))
                stream.calls += 1
    return sorted(done, key=lambda s: s.source.video_id), failures


def adaptive_predict(
    run_dir: str | Path, videos: list[VideoInput], top_k: int = 5, device: str = "auto", streams: int = 16,
) -> AdaptiveResult:
    """Predict with a skip head, computing backbone features only for the steps the head updates on.
    `streams` videos are decoded side by side; their needed frames form one backbone batch."""
    t0 = time.monotonic()
    run = load_run(run_dir)
    head = _skip_head(run, run_dir)
    done, failures = _read_adaptively(head, backbone_for_run(run.store_config, device), videos, streams)
    return _result(run, head, done, failures, top_k, time.monotonic() - t0)


def step_probabilities(head: SkipRNNHead, stream: "_Stream") -> np.ndarray:
    """(T, C) softmax scores of every step of a video read adaptively: a skipped step copies the state, so its
    scores are those of the last step that updated (the first step always updates)."""
    steps = len(stream.updates)
    if not stream.outputs:
        return np.zeros((steps, 0))
    with torch.no_grad():
        at = [t for t, _ in stream.outputs]
        probs = torch.softmax(head.classifier(torch.cat([h for _, h in stream.outputs])), -1).numpy()  # (U, C)
    last = np.searchsorted(np.asarray(at), np.arange(steps), side="right") - 1  # the update each step follows
    return probs[np.maximum(last, 0)]


def adaptive_detect(run_dir: str | Path, videos: list[VideoInput], device: str = "auto", streams: int = 16):
    """Detect with a skip step detector (`featx train-head --annotations --head skip-gru|skip-lstm`) from the
    videos themselves, running the backbone only on the steps it updates on; segments come from the same
    post-processing as `featx predict RUN STORE` (same step grid: the rows' times a store would hold).
    Returns (ActivityNet results dict, AdaptiveResult with per-video counts)."""
    from seqmodels.detection.map import Detection
    from seqmodels.detection.postprocess import segments_from_probs
    from seqmodels.detection.run import load_detection_run, results_json
    from featx.timegrid import TimeGrid

    t0 = time.monotonic()
    run = load_detection_run(run_dir)
    head = _skip_head(run, run_dir)
    done, failures = _read_adaptively(head, backbone_for_run(run.store_config, device), videos, streams)
    detections = []
    for stream in done:
        times = np.asarray(stream.frames.times, float)
        if len(times) == 0:
            continue
        ends = np.append(times[1:], max(stream.frames.end_time, times[-1]))  # featx.timegrid.row_spans
        grid = TimeGrid.from_rows(times, ends)
        probs = step_probabilities(head, stream)
        for start, end, label, score in segments_from_probs(probs, *grid.cells(), run.config.smooth, run.config.threshold):
            detections.append(Detection(stream.source.video_id, start, end, run.classes[label - 1], score))
    counts = pd.DataFrame({"video_id": [s.source.video_id for s in done], "frames": [len(s.updates) for s in done],
                           "backbone_calls": [s.calls for s in done]})
    frames, calls = int(counts.frames.sum()), int(counts.backbone_calls.sum())
    summary = AdaptiveResult(counts, frames, calls, time.monotonic() - t0, failures)
    return results_json(detections, [s.source.video_id for s in done]), summary


def _result(run, head: SkipRNNHead, done: list[_Stream], failures, top_k: int, seconds: float) -> AdaptiveResult:
    if not done:
        return AdaptiveResult(pd.DataFrame(), 0, 0, seconds, failures)
    with torch.no_grad():
        h = torch.cat([s.state["h"] for s in done])
        probs = torch.softmax(head.classifier(h), -1).numpy()  # (V, C)
    table = top_k_columns([s.source.video_id for s in done], probs, run.classes, top_k)
    table["frames"] = [len(s.updates) for s in done]
    table["backbone_calls"] = [s.calls for s in done]
    table["update_fraction"] = [s.calls / max(1, len(s.updates)) for s in done]
    frames = sum(len(s.updates) for s in done)
    calls = sum(s.calls for s in done)
    return AdaptiveResult(pd.DataFrame(table), frames, calls, seconds, failures)
