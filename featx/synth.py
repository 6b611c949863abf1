"""Synthetic labelled videos for demos, tests and benchmarks, made on the fly with PyAV.

trimmed:   one class per video, `labels.csv` (video_id,label,split). Two pairs of classes differ only in
           temporal order (red then blue vs blue then red; moving left vs moving right): every frame of one
           appears in the other, so temporal pooling of per-frame features cannot tell them apart.
untrimmed: long videos with a few action segments on a moving background, `annotations.json` in the
           ActivityNet format (database -> video_id -> subset, duration, annotations [{segment, label}]).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featx.errors import FeatxError

TRIMMED_CLASSES = ("red_then_blue", "blue_then_red", "left_to_right", "right_to_left")
UNTRIMMED_CLASSES = ("red_disc", "blue_square", "yellow_bar")
RED, BLUE, YELLOW = (220, 30, 30), (30, 60, 220), (235, 210, 20)
ANNOTATION_VERSION = "featx-synth-1"


@dataclass(frozen=True)
class SynthResult:
    folder: Path
    videos: list[Path]
    labels: Path  # labels.csv (trimmed) or annotations.json (untrimmed)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, muted random colour field twice the frame size, so it can drift (camera motion)."""
    coarse = rng.uniform(60, 170, size=(6, 6, 3))
    reps = -(-2 * size // 6)
    big = np.kron(coarse, np.ones((reps, reps, 1)))[: 2 * size, : 2 * size]
    return big.astype(np.uint8)


def _background(texture: np.ndarray, t: float, size: int) -> np.ndarray:
    dx = int((np.sin(t * 0.7) + 1) * size / 4)
    dy = int((np.cos(t * 0.5) + 1) * size / 4)
    return texture[dy : dy + size, dx : dx + size].copy()


def _disc(img: np.ndarray, cx: float, cy: float, r: float, colour) -> None:
    h, w = img.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour


def _square(img: np.ndarray, cx: float, cy: float, half: float, colour) -> None:
    h, w = img.shape[:2]
    y0, y1 = int(max(0, cy - half)), int(min(h, cy + half))
    x0, x1 = int(max(0, cx - half)), int(min(w, cx + half))
    img[y0:y1, x0:x1] = colour


def trimmed_frame(label: str, progress: float, background: np.ndarray) -> np.ndarray:
    """Frame of class `label` at `progress` in [0, 1) through the video."""
    img, size = background, background.shape[0]
    if label in ("red_then_blue", "blue_then_red"):
        first = label == "red_then_blue"
        if (progress < 0.5) == first:
            _disc(img, size * 0.5, size * 0.5, size * 0.22, RED)
        else:
            _square(img, size * 0.5, size * 0.5, size * 0.2, BLUE)
    elif label in ("left_to_right", "right_to_left"):
        x = 0.15 + 0.7 * (progress if label == "left_to_right" else 1 - progress)
        _square(img, size * x, size * 0.5, size * 0.14, YELLOW)
    else:
        raise FeatxError(f"unknown trimmed class {label!r}; known: {', '.join(TRIMMED_CLASSES)}")
    return img


def untrimmed_frame(label: str | None, t: float, background: np.ndarray) -> np.ndarray:
    """Frame at time t: the background, plus the action `label` when one is running."""
    img, size = background, background.shape[0]
    if label == "red_disc":
        _disc(img, size * 0.5, size * 0.5, size * (0.18 + 0.06 * np.sin(t * 6)), RED)
    elif label == "blue_square":
        _square(img, size * (0.5 + 0.25 * np.sin(t * 2)), size * 0.5, size * 0.16, BLUE)
    elif label == "yellow_bar":
        y = size * (0.5 + 0.3 * np.sin(t * 3))
        img[int(y) - size // 12 : int(y) + size // 12, size // 10 : -size // 10] = YELLOW
    elif label is not None:
        raise FeatxError(f"unknown untrimmed class {label!r}; known: {', '.join(UNTRIMMED_CLASSES)}")
    return img


def write_video(path: Path, frames, fps: int, size: int, codec: str = "libx264") -> None:
    """Encode an iterable of (size, size, 3) uint8 RGB frames at a constant `fps`."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _start(out, videos: int, seconds: float, fps: int, size: int, seed: int, progress: bool):
    """Check the arguments, make the folder; returns (folder, rng, frames per video, video numbers)."""
    from tqdm.auto import tqdm

    if videos < 1 or seconds <= 0 or fps < 1:
        raise FeatxError("synth needs --videos >= 1, --seconds > 0 and --fps >= 1")
    if size < 16 or size % 2:
        raise FeatxError(f"--size must be an even number of pixels >= 16, not {size}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    numbers = tqdm(range(videos), desc="synth", unit="video", disable=not progress)
    return folder, np.random.default_rng(seed), max(1, round(seconds * fps)), numbers


def make_trimmed(
    out: str | Path, videos: int = 16, seconds: float = 3.0, fps: int = 8, size: int = 96, seed: int = 0,
    val_fraction: float = 0.25, progress: bool = False,
) -> SynthResult:
    """`videos` clips, classes assigned in turn; about `val_fraction` of each class in split 'val'."""
    folder, rng, n, numbers = _start(out, videos, seconds, fps, size, seed, progress)
    rows, paths = [], []
    for k in numbers:
        label = TRIMMED_CLASSES[k % len(TRIMMED_CLASSES)]
        rank = k // len(TRIMMED_CLASSES)  # index of this video within its class
        per_class = -(-videos // len(TRIMMED_CLASSES))
        n_val = max(1, round(per_class * val_fraction)) if per_class > 1 and val_fraction > 0 else 0
        split = "val" if rank >= per_class - n_val else "train"
        texture = _texture(rng, size)
        video_id = f"{label}_{rank:03d}"
        path = folder / f"{video_id}.mp4"
        write_video(path, (trimmed_frame(label, j / n, _background(texture, j / fps, size)) for j in range(n)), fps, size)
        rows.append((video_id, label, split))
        paths.append(path)
    labels = folder / "labels.csv"
    with open(labels, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video_id", "label", "split"])
        writer.writerows(rows)
    return SynthResult(folder, paths, labels)


def _segments(rng: np.random.Generator, duration: float, fps: int) -> list[tuple[float, float, str]]:
    """Non-overlapping action segments of 3-8 s with at least 2 s of background between them."""
    segments, t = [], rng.uniform(1.0, 4.0)
    while True:
        length = rng.uniform(3.0, 8.0)
        if t + length > duration - 1.0:
            return segments
        start, end = round(t * fps) / fps, round((t + length) * fps) / fps  # on frame boundaries
        segments.append((start, end, str(rng.choice(UNTRIMMED_CLASSES))))
        t = end + rng.uniform(2.0, 8.0)


def make_untrimmed(
    out: str | Path, videos: int = 8, seconds: float = 40.0, fps: int = 8, size: int = 96, seed: int = 0,
    val_fraction: float = 0.25, progress: bool = False,
) -> SynthResult:
    """`videos` long videos with action segments; `annotations.json` in the ActivityNet format."""
    folder, rng, n, numbers = _start(out, videos, seconds, fps, size, seed, progress)
    duration = n / fps
    n_val = round(videos * val_fraction)
    database, paths = {}, []
    for k in numbers:
        video_id = f"untrimmed_{k:03d}"
        segments = _segments(rng, duration, fps)
        texture = _texture(rng, size)

        def label_at(t: float) -> str | None:
            return next((lab for s, e, lab in segments if s <= t < e), None)

        frames = (untrimmed_frame(label_at(j / fps), j / fps, _background(texture, j / fps, size)) for j in range(n))
        path = folder / f"{video_id}.mp4"
        write_video(path, frames, fps, size)
        paths.append(path)
        database[video_id] = {
            "subset": "validation" if k >= videos - n_val else "training",
            "duration": duration,
            "annotations": [{"segment": [s, e], "label": lab} for s, e, lab in segments],
        }
    annotations = folder / "annotations.json"
    taxonomy = [{"nodeName": c} for c in UNTRIMMED_CLASSES]
    annotations.write_text(json.dumps({"version": ANNOTATION_VERSION, "taxonomy": taxonomy, "database": database}, indent=1))
    return SynthResult(folder, paths, annotations)
