"""Synthetic labelled videos for demos, tests and benchmarks, made on the fly with PyAV.

trimmed:   one class per video, `labels.csv` (video_id,label,split). The classes are two pairs that differ
           only in temporal order (red then blue vs blue then red; green then yellow vs yellow then green):
           every frame of one appears in the other, so temporal pooling cannot tell them apart.
untrimmed: long videos with a few action segments on a moving background, `annotations.json` in the
           ActivityNet format (database -> video_id -> subset, duration, annotations [{segment, label}]).
           Easy (default): 3-8 s actions, one shape each, 2-8 s apart.
           Hard (`hard=True`, `featx synth --kind untrimmed --hard`): actions 0.5-20 s long (log-uniform),
           0.5-6 s apart; 0-2 short occluded stretches inside an action show the background alone; the four
           classes are two order pairs ("disc then square" vs "square then disc", "bar then ring" vs "ring then
           bar"), so no single frame tells a class from its pair; the background's brightness also varies
           slowly (+-20%). Frame j shows time (j + 0.5) / fps; segments lie on frame boundaries.
           Frame rates are exact fractions (`frame_rate`: 29.97 is the NTSC rate 30000/1001, whose frame j starts
           at j * 1001 / 30000 s in the container), so segment times stay on the frames shown at any rate.
           Variable frame rate (`vfr=True`, `--vfr`): each frame lasts one or one and a half periods of `fps` at
           random (at 30 fps: 1/30 or 1/20 s), written with those timestamps; segments lie on the boundaries of
           the frames as shown (`FrameTimes`).
motion:    one class per video, `labels.csv` like trimmed. The classes (left, right, up, down) differ only in
           the direction in which a few identical discs move over a static background, wrapping around the
           edges; their starting positions are uniform at random, so every single frame has the same
           distribution in every class: only motion (two frames or more) tells the class.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from featx.errors import FeatxError
from featx.synth_draw import (HARD_CLASSES, MOTION_CLASSES, TRIMMED_CLASSES, UNTRIMMED_CLASSES, Segment, drifting_view,
                              flash_frame, hard_frame, motion_centres, motion_frame, random_texture, shaking_view,
                              trimmed_frame, untrimmed_frame)
from featx.synth_video import FrameTimes, frame_rate, rate_json, write_video

ANNOTATION_VERSION = "featx-synth-1"


@dataclass(frozen=True)
class SynthResult:
    folder: Path
    videos: list[Path]
    labels: Path  # labels.csv (trimmed) or annotations.json (untrimmed)


# Written first into a synth folder: the settings that made it, so running the same command again resumes it,
# and a different command (or a folder of the user's) is refused instead of overwriting its labels and videos.
MARKER = ".featx-synth.json"


def _check_folder(folder: Path, made: dict) -> None:
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    try:
        earlier = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        raise FeatxError(f"{folder} is a non-empty folder not made by featx synth; choose a new folder") from None
    if earlier != made:
        changed = ", ".join(sorted(k for k in set(made) | set(earlier) if made.get(k) != earlier.get(k)))
        raise FeatxError(f"{folder} was made by featx synth with other settings ({changed}); choose a new folder "
                         "(the same command again resumes it)")


def _start(out, videos: int, seconds: float, rate: Fraction, size: int, seed: int, progress: bool, **settings):
    """Check the arguments, make the folder; returns (folder, rng, frames per video, video numbers).
    settings: what else made the folder (None values are left out, so older folders still resume)."""
    from featx.progress import progress as progress_bar

    if videos < 1 or not 0 < seconds < math.inf:
        raise FeatxError("synth needs --videos >= 1 and a finite --seconds > 0")
    if not 16 <= size <= 4096 or size % 2:
        raise FeatxError(f"--size must be an even number of pixels from 16 to 4096, not {size}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise FeatxError(f"{folder} exists and is not a folder; synth writes videos into a folder")
    settings = {k: v for k, v in settings.items() if v is not None}
    made = {**settings, "videos": videos, "seconds": seconds, "fps": rate_json(rate), "size": size, "seed": seed}
    _check_folder(folder, made)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FeatxError(f"{folder}: cannot make the folder ({exc.strerror or exc})") from None
    (folder / MARKER).write_text(json.dumps(made, sort_keys=True))
    numbers = progress_bar(range(videos), desc="synth", unit="video", enabled=progress)
    return folder, np.random.default_rng(seed), max(1, round(seconds * rate)), numbers


def make_trimmed(
    out: str | Path, videos: int = 16, seconds: float = 3.0, fps: int | float | str | Fraction = 8, size: int = 96, seed: int = 0,
    val_fraction: float = 0.25, progress: bool = False, lead_in: float = 0.0, flashes: float = 0.0,
) -> SynthResult:
    """`videos` clips, classes assigned in turn; about `val_fraction` of each class in split 'val'.
    lead_in > 0: each video first shows the background alone for a random share in [0, lead_in) of its
    length, so a model must look until the action starts (the first frame no longer gives the class away).
    flashes > 0: each colour shows only for this share of the video, at a random time (see flash_frame)."""
    if not 0 <= flashes < 0.25:
        raise FeatxError(f"--flashes must be in [0, 0.25), not {flashes}")
    fps = frame_rate(fps)
    folder, rng, n, numbers = _start(out, videos, seconds, fps, size, seed, progress, kind="trimmed",
                                     val_fraction=val_fraction, lead_in=lead_in, flashes=flashes)
    rows, paths = [], []
    for k in numbers:
        label, rank, split = _class_and_split(k, videos, TRIMMED_CLASSES, val_fraction)
        texture, centre = random_texture(rng, size), rng.uniform(2, size / 2 - 2, size=2)
        video_id = f"{label}_{rank:03d}"
        path = folder / f"{video_id}.mp4"
        # progress at frame centres, (j + 0.5) / n, so reversing a video maps its frames onto each other
        if flashes > 0:
            first_at = rng.uniform(0, 0.5 - flashes)
            second_at = rng.uniform(first_at + flashes, 1 - flashes)
            frames = (flash_frame(label, (j + 0.5) / n, shaking_view(texture, rng, size, centre), first_at, second_at, flashes)
                      for j in range(n))
        else:
            lead = rng.uniform(0, lead_in) if lead_in > 0 else 0.0
            frames = (trimmed_frame(label, (j + 0.5) / n, shaking_view(texture, rng, size, centre), lead) for j in range(n))
        write_video(path, frames, fps, size, intra_only=True)
        rows.append((video_id, label, split))
        paths.append(path)
    return SynthResult(folder, paths, _write_labels(folder, rows))


def _class_and_split(k: int, videos: int, classes: tuple[str, ...], val_fraction: float) -> tuple[str, int, str]:
    """Video k's class (assigned in turn), its rank within the class, and its split: the last
    `val_fraction` of each class (at least one video when the class has two or more) is 'val'."""
    rank = k // len(classes)
    per_class = -(-videos // len(classes))
    n_val = max(1, round(per_class * val_fraction)) if per_class > 1 and val_fraction > 0 else 0
    return classes[k % len(classes)], rank, "val" if rank >= per_class - n_val else "train"


def _write_labels(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    labels = folder / "labels.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video_id", "label", "split"])
        writer.writerows(rows)
    return labels


def make_motion(
    out: str | Path, videos: int = 16, seconds: float = 2.0, fps: int | float | str | Fraction = 8, size: int = 96, seed: int = 0,
    val_fraction: float = 0.25, progress: bool = False,
) -> SynthResult:
    """`videos` clips of MOTION_CLASSES (assigned in turn, split as make_trimmed): 3-6 white discs of radius
    size / 12 at uniformly random positions on a static smooth background, moving 3-5 % of the frame per frame
    (the same for every class) in the class's direction, wrapping around. Intra-coded, as trimmed videos are,
    so coding artefacts depend on a frame's content alone (inter coding follows the motion)."""
    fps = frame_rate(fps)
    folder, rng, n, numbers = _start(out, videos, seconds, fps, size, seed, progress, kind="motion", val_fraction=val_fraction)
    rows, paths = [], []
    for k in numbers:
        label, rank, split = _class_and_split(k, videos, MOTION_CLASSES, val_fraction)
        background = random_texture(rng, size)[:size, :size]
        speed = max(1, round(size * rng.uniform(0.03, 0.05)))  # pixels per frame
        centres = motion_centres(rng, int(rng.integers(3, 7)), n, size, label, speed)
        video_id = f"{label}_{rank:03d}"
        path = folder / f"{video_id}.mp4"
        write_video(path, (motion_frame(background, c, size / 12) for c in centres), fps, size, intra_only=True)
        rows.append((video_id, label, split))
        paths.append(path)
    return SynthResult(folder, paths, _write_labels(folder, rows))


def _frame_times(times: FrameTimes | int | Fraction, duration: float) -> FrameTimes:
    """`times` as FrameTimes: a bare rate means constant-rate frames over `duration`."""
    if isinstance(times, FrameTimes):
        return times
    rate = frame_rate(times)
    return FrameTimes.regular(max(1, round(duration * rate)), rate)


def easy_segments(rng: np.random.Generator, duration: float, times: FrameTimes | int | Fraction) -> list[Segment]:
    """Non-overlapping action segments of 3-8 s with at least 2 s of background between them, on the frame
    boundaries of `times` (a FrameTimes, or a constant frame rate)."""
    times = _frame_times(times, duration)
    segments, t = [], rng.uniform(1.0, 4.0)
    while True:
        length = rng.uniform(3.0, 8.0)
        if t + length > duration - 1.0:
            return segments
        start, end = times.at(times.nearest(t)), times.at(times.nearest(t + length))  # on frame boundaries
        segments.append(Segment(start, end, str(rng.choice(UNTRIMMED_CLASSES))))
        t = end + rng.uniform(2.0, 8.0)


def hard_segments(rng: np.random.Generator, duration: float, times: FrameTimes | int | Fraction) -> list[Segment]:
    """Non-overlapping actions of 0.5-20 s (log-uniform, so short ones are as common as long ones; the last
    one cut to fit) with 0.5-6 s of background between them, each with its occluded stretches; on the frame
    boundaries of `times` (a FrameTimes, or a constant frame rate)."""
    times = _frame_times(times, duration)
    segments, t = [], rng.uniform(0.5, 3.0)
    while t <= duration - 1.0:  # room for a 0.5 s action and 0.5 s of background after it
        length = min(np.exp(rng.uniform(np.log(0.5), np.log(20.0))), duration - 0.5 - t)
        first = times.nearest(t)
        last = min(times.frames, first + times.frames_in(first, length))  # on frame boundaries, at least one frame
        start, end = times.at(first), times.at(last)
        label = str(rng.choice(HARD_CLASSES))
        segments.append(Segment(start, end, label, _occlusions(rng, start, end, times)))
        t = end + rng.uniform(0.5, 6.0)
    return segments


def _occlusions(rng: np.random.Generator, start: float, end: float, times: FrameTimes) -> tuple[tuple[float, float], ...]:
    """0-2 stretches of 0.3-1.5 s (they may overlap) inside the middle 60% of [start, end), each at most a
    quarter of the action: its first and last 20% always show, so both halves of an order pair are seen."""
    length, stretches = end - start, []
    for _ in range(rng.integers(0, 3)):
        size = rng.uniform(0.3, 1.5)
        if size > length / 4:
            continue
        at = rng.uniform(start + 0.2 * length, end - 0.2 * length - size)
        # frame boundaries inside [at, at + size]
        a, b = times.at(math.ceil(times.position(at))), times.at(math.floor(times.position(at + size)))
        if b > a:
            stretches.append((float(a), float(b)))
    return tuple(sorted(stretches))


def _easy_frames(segments: list[Segment], times: FrameTimes, texture: np.ndarray, phase: np.ndarray):
    size = texture.shape[0] // 2
    for j in range(times.frames):
        t = times.start(j)
        label = next((seg.label for seg in segments if seg.covers(t)), None)
        yield untrimmed_frame(label, t, drifting_view(texture, t, size, phase))


def _hard_frames(segments: list[Segment], times: FrameTimes, texture: np.ndarray, phase: np.ndarray, light: tuple[float, float]):
    """light: (period in s, phase) of the background's slow +-20% brightness change."""
    size = texture.shape[0] // 2
    for j in range(times.frames):
        t = times.centre(j)  # frame centres, so reversing an action maps its frames onto each other
        gain = 1 + 0.2 * np.sin(2 * np.pi * t / light[0] + light[1])
        background = np.clip(drifting_view(texture, t, size, phase) * gain, 0, 255).astype(np.uint8)
        yield hard_frame(next((seg for seg in segments if seg.covers(t)), None), t, background)


def make_untrimmed(
    out: str | Path, videos: int = 8, seconds: float = 40.0, fps: int | float | str | Fraction = 8, size: int = 96,
    seed: int = 0, val_fraction: float = 0.25, progress: bool = False, hard: bool = False, vfr: bool = False,
) -> SynthResult:
    """`videos` long videos with action segments; `annotations.json` in the ActivityNet format.
    fps: the frame rate, exact (see frame_rate: 29.97 is 30000/1001). hard: HARD_CLASSES, actions of 0.5-20 s
    with occluded stretches, a background whose brightness varies (see hard_segments, hard_frame); off, the
    same seed gives the same videos as before it existed. vfr: a variable frame rate, each frame lasting 1 or
    1.5 periods of `fps` at random (FrameTimes.variable); each video's `duration` is then its own."""
    fps = frame_rate(fps)
    folder, rng, n, numbers = _start(out, videos, seconds, fps, size, seed, progress, kind="untrimmed",
                                     val_fraction=val_fraction, hard=hard, vfr=vfr or None)
    n_val = round(videos * val_fraction)
    database, paths = {}, []
    for k in numbers:
        video_id = f"untrimmed_{k:03d}"
        times = FrameTimes.variable(rng, seconds, fps) if vfr else FrameTimes.regular(n, fps)
        segments = (hard_segments if hard else easy_segments)(rng, times.duration, times)
        texture, phase = random_texture(rng, size), rng.uniform(0, 2 * np.pi, size=2)
        if hard:
            light = (rng.uniform(15.0, 40.0), rng.uniform(0, 2 * np.pi))
            frames = _hard_frames(segments, times, texture, phase, light)
        else:
            frames = _easy_frames(segments, times, texture, phase)
        path = folder / f"{video_id}.mp4"
        write_video(path, frames, fps, size, times=None if times.constant else times)
        paths.append(path)
        database[video_id] = {
            "subset": "validation" if k >= videos - n_val else "training",
            "duration": times.duration,
            "annotations": [{"segment": [seg.start, seg.end], "label": seg.label} for seg in segments],
        }
    annotations = folder / "annotations.json"
    taxonomy = [{"nodeName": c} for c in (HARD_CLASSES if hard else UNTRIMMED_CLASSES)]
    annotations.write_text(json.dumps({"version": ANNOTATION_VERSION, "taxonomy": taxonomy, "database": database}, indent=1))
    return SynthResult(folder, paths, annotations)


DEFAULT_SECONDS = {"trimmed": 3.0, "untrimmed": 40.0, "motion": 2.0}  # per kind


def make_videos(out: str | Path, kind: str = "trimmed", videos: int = 16, seconds: float | None = None,
                fps: int | float | str | Fraction = 8, size: int = 96, seed: int = 0, lead_in: float = 0.0,
                flashes: float = 0.0, hard: bool = False, vfr: bool = False, progress: bool = True) -> SynthResult:
    """`featx synth`: videos of one `kind` (trimmed, untrimmed or motion; seconds default per kind); the options
    of another kind are refused in one line rather than ignored."""
    if kind not in DEFAULT_SECONDS:
        raise FeatxError(f"--kind must be trimmed, untrimmed or motion, not {kind!r}")
    if hard and kind != "untrimmed":
        raise FeatxError("--hard applies to --kind untrimmed only")
    if vfr and kind != "untrimmed":
        raise FeatxError("--vfr applies to --kind untrimmed only")
    if (lead_in or flashes) and kind != "trimmed":
        raise FeatxError("--lead-in and --flashes apply to --kind trimmed only")
    length = seconds if seconds is not None else DEFAULT_SECONDS[kind]
    common = dict(videos=videos, seconds=length, fps=frame_rate(fps), size=size, seed=seed, progress=progress)
    if kind == "trimmed":
        return make_trimmed(out, lead_in=lead_in, flashes=flashes, **common)
    if kind == "motion":
        return make_motion(out, **common)
    return make_untrimmed(out, hard=hard, vfr=vfr, **common)
