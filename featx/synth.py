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
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from featx.errors import FeatxError

TRIMMED_CLASSES = ("red_then_blue", "blue_then_red", "green_then_yellow", "yellow_then_green")
UNTRIMMED_CLASSES = ("red_disc", "blue_square", "yellow_bar")
HARD_CLASSES = ("disc_then_square", "square_then_disc", "bar_then_ring", "ring_then_bar")
MOTION_CLASSES = ("left", "right", "up", "down")
RED, BLUE, GREEN, YELLOW = (220, 30, 30), (30, 60, 220), (40, 190, 60), (235, 210, 20)
WHITE = (235, 235, 235)
MOTION_STEPS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (rows, columns) per frame
ANNOTATION_VERSION = "featx-synth-1"
# The NTSC rates: a decimal --fps within NTSC_TOLERANCE of n * 1000 / 1001 for one of these n is that exact rate.
NTSC_BASES = (24, 30, 48, 60, 120)
NTSC_TOLERANCE = 5e-4
MAX_FPS = 1000


def frame_rate(value: int | float | str | Fraction) -> Fraction:
    """A frame rate as an exact fraction: 25 -> 25, "30000/1001" -> 30000/1001, and the decimals people write for
    NTSC rates (29.97, 23.976, 59.94) -> n * 1000 / 1001, the rate such a video really has; other decimals as
    written (12.5 -> 25/2). Raises FeatxError unless it is a rate from 1 to MAX_FPS frames per second."""
    wrong = FeatxError(f"--fps must be a frame rate from 1 to {MAX_FPS} (25, 29.97, 30000/1001), not {str(value)!r}")
    try:
        rate = Fraction(value.strip()) if isinstance(value, str) else Fraction(value)
    except (ValueError, ZeroDivisionError, OverflowError, TypeError):
        raise wrong from None
    if not 1 <= rate <= MAX_FPS:
        raise wrong
    for n in NTSC_BASES:
        ntsc = Fraction(n * 1000, 1001)
        if rate != n and abs(rate - ntsc) < NTSC_TOLERANCE:
            return ntsc
    return rate.limit_denominator(1001)


def _rate_json(rate: Fraction) -> int | str:
    """The rate in a synth folder's marker: an int when whole (as before fractional rates), else "30000/1001"."""
    return rate.numerator if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"


@dataclass(frozen=True, eq=False)
class FrameTimes:
    """When each frame of a video shows: frame j from boundary j to boundary j + 1, boundary k at
    ticks[k] * time_base seconds (exact). Constant rate: ticks are 0, 1, 2, ... of 1 / rate; variable rate
    (`variable`): each frame lasts 2 or 3 ticks of 1 / (2 rate), at random.

    `position(t)` is the frame position of time t (boundary k at position k, linear in between); segment and
    occlusion times are boundaries, `at(k)`, so they stay exact relative to the frames shown."""

    ticks: np.ndarray  # (frames + 1,) int64: start of every frame, then the end of the last, in time_base units
    time_base: Fraction  # seconds per tick
    rate: Fraction  # the nominal rate (constant rate: the rate; variable: the fastest one)
    constant: bool

    @classmethod
    def regular(cls, frames: int, rate: Fraction) -> "FrameTimes":
        return cls(np.arange(frames + 1, dtype=np.int64), 1 / rate, rate, True)

    @classmethod
    def variable(cls, rng: np.random.Generator, seconds: float, rate: Fraction) -> "FrameTimes":
        """Frames lasting 1 or 1.5 periods of `rate` at random, until `seconds` are covered (at least one frame)."""
        time_base = 1 / (2 * rate)
        gaps = rng.choice(np.array([2, 3], np.int64), size=max(1, math.ceil(seconds * rate)))
        ticks = np.concatenate([[0], np.cumsum(gaps)])
        frames = max(1, int(np.searchsorted(ticks * float(time_base), seconds - 1e-9)))
        return cls(ticks[: frames + 1], time_base, rate, False)

    @property
    def frames(self) -> int:
        return len(self.ticks) - 1

    @property
    def duration(self) -> float:
        return self.at(self.frames)

    def at(self, k: int) -> float:
        """Seconds of boundary k (the start of frame k; k = frames: the end of the video)."""
        return float(int(self.ticks[k]) * self.time_base)

    def start(self, j: int) -> float:
        return self.at(j)

    def centre(self, j: int) -> float:
        return float(Fraction(int(self.ticks[j]) + int(self.ticks[j + 1]), 2) * self.time_base)

    def position(self, t: float) -> float:
        if self.constant:
            return t * float(self.rate)  # the arithmetic of integer rates before FrameTimes: same videos per seed
        return float(np.interp(t, self.ticks * float(self.time_base), np.arange(len(self.ticks))))

    def nearest(self, t: float) -> int:
        return min(self.frames, round(self.position(t)))

    def frames_in(self, first: int, seconds: float) -> int:
        """Frames from boundary `first` to the boundary nearest `seconds` later (at least one)."""
        if self.constant:
            return max(1, round(seconds * float(self.rate)))
        return max(1, self.nearest(self.at(first) + seconds) - first)


@dataclass(frozen=True)
class SynthResult:
    folder: Path
    videos: list[Path]
    labels: Path  # labels.csv (trimmed) or annotations.json (untrimmed)


@dataclass(frozen=True)
class Segment:
    """One action instance of an untrimmed video; times in seconds, on frame boundaries."""

    start: float
    end: float
    label: str
    occluded: tuple[tuple[float, float], ...] = ()  # (start, end) stretches showing the background alone

    def covers(self, t: float) -> bool:
        return self.start <= t < self.end

    def hidden(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.occluded)

    def progress(self, t: float) -> float:
        return (t - self.start) / (self.end - self.start)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, muted random colour field twice the frame size, so it can drift (camera motion)."""
    coarse = rng.uniform(60, 170, size=(6, 6, 3))
    reps = -(-2 * size // 6)
    big = np.kron(coarse, np.ones((reps, reps, 1)))[: 2 * size, : 2 * size]
    return big.astype(np.uint8)


def _view(texture: np.ndarray, dy: float, dx: float, size: int) -> np.ndarray:
    """The size x size window of the texture at offset (dy, dx), each in [0, size / 2]."""
    dy, dx = int(np.clip(dy, 0, size // 2)), int(np.clip(dx, 0, size // 2))
    return texture[dy : dy + size, dx : dx + size].copy()


def _drifting(texture: np.ndarray, t: float, size: int, phase: np.ndarray) -> np.ndarray:
    """The texture seen by a slowly drifting camera (untrimmed videos)."""
    return _view(texture, (np.cos(t * 0.5 + phase[1]) + 1) * size / 4, (np.sin(t * 0.7 + phase[0]) + 1) * size / 4, size)


def _shaking(texture: np.ndarray, rng: np.random.Generator, size: int, centre: np.ndarray) -> np.ndarray:
    """The texture seen by a camera shaking at random around `centre` (trimmed videos). The shake is
    independent from frame to frame, so nothing in the background tells early frames from late ones: a
    smooth drift would (the backgrounds of "A then B" and "B then A" would then differ in distribution)."""
    dy, dx = centre + rng.integers(-2, 3, size=2)
    return _view(texture, dy, dx, size)


def _disc(img: np.ndarray, cx: float, cy: float, r: float, colour) -> None:
    h, w = img.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour


def _square(img: np.ndarray, cx: float, cy: float, half: float, colour) -> None:
    h, w = img.shape[:2]
    y0, y1 = int(max(0, cy - half)), int(min(h, cy + half))
    x0, x1 = int(max(0, cx - half)), int(min(w, cx + half))
    img[y0:y1, x0:x1] = colour


def _ring(img: np.ndarray, cx: float, cy: float, r: float, colour) -> None:
    inside = img.copy()
    _disc(img, cx, cy, r, colour)
    hole = np.zeros(img.shape[:2], bool)
    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
    hole[(yy - cy) ** 2 + (xx - cx) ** 2 <= (0.55 * r) ** 2] = True
    img[hole] = inside[hole]


def _bar(img: np.ndarray, cy: float, size: int, colour) -> None:
    img[int(cy) - size // 12 : int(cy) + size // 12, size // 10 : -size // 10] = colour


# Each colour has its own shape, so a single frame shows which half of which class it comes from.
_SHAPES = {
    "red": lambda img, s: _disc(img, s * 0.5, s * 0.5, s * 0.22, RED),
    "blue": lambda img, s: _square(img, s * 0.5, s * 0.5, s * 0.2, BLUE),
    "green": lambda img, s: _ring(img, s * 0.5, s * 0.5, s * 0.25, GREEN),
    "yellow": lambda img, s: _bar(img, s * 0.5, s, YELLOW),
}


def trimmed_frame(label: str, progress: float, background: np.ndarray, lead: float = 0.0) -> np.ndarray:
    """Frame of class `label` ("<first>_then_<second>") at `progress` in [0, 1): the background alone before
    `lead`, then the first colour's shape for half of the rest, then the second's."""
    first, _, second = label.partition("_then_")
    if label not in TRIMMED_CLASSES:
        raise FeatxError(f"unknown trimmed class {label!r}; known: {', '.join(TRIMMED_CLASSES)}")
    if progress >= lead:
        _SHAPES[first if progress < lead + (1 - lead) / 2 else second](background, background.shape[0])
    return background


def flash_frame(label: str, progress: float, background: np.ndarray, first_at: float, second_at: float, length: float) -> np.ndarray:
    """Frame of class `label` when its two colours only flash: the first during [first_at, first_at + length),
    the second during [second_at, second_at + length) (progress in [0, 1)); the background otherwise. No single
    frame tells the order, and the flashes come at times a model cannot know in advance."""
    first, _, second = label.partition("_then_")
    if label not in TRIMMED_CLASSES:
        raise FeatxError(f"unknown trimmed class {label!r}; known: {', '.join(TRIMMED_CLASSES)}")
    for colour, start in ((first, first_at), (second, second_at)):
        if start <= progress < start + length:
            _SHAPES[colour](background, background.shape[0])
    return background


# Shapes that pulse or move with the time t in seconds (untrimmed videos), drawn on an s x s image.
_MOVING = {
    "disc": lambda img, t, s: _disc(img, s * 0.5, s * 0.5, s * (0.18 + 0.06 * np.sin(t * 6)), RED),
    "square": lambda img, t, s: _square(img, s * (0.5 + 0.25 * np.sin(t * 2)), s * 0.5, s * 0.16, BLUE),
    "bar": lambda img, t, s: _bar(img, s * (0.5 + 0.3 * np.sin(t * 3)), s, YELLOW),
    "ring": lambda img, t, s: _ring(img, s * (0.5 + 0.2 * np.cos(t * 2.5)), s * (0.5 + 0.2 * np.sin(t * 2.5)), s * 0.22, GREEN),
}
_EASY_SHAPES = {"red_disc": "disc", "blue_square": "square", "yellow_bar": "bar"}


def untrimmed_frame(label: str | None, t: float, background: np.ndarray) -> np.ndarray:
    """Frame at time t: the background, plus the action `label` when one is running."""
    if label is not None:
        if label not in _EASY_SHAPES:
            raise FeatxError(f"unknown untrimmed class {label!r}; known: {', '.join(UNTRIMMED_CLASSES)}")
        _MOVING[_EASY_SHAPES[label]](background, t, background.shape[0])
    return background


def order_frame(label: str, progress: float, t: float, background: np.ndarray) -> np.ndarray:
    """Frame at time t of the hard class `label` ("<first>_then_<second>") at `progress` in [0, 1) of its
    instance: the first shape before 0.5, the second after, so a class at p and its pair at 1 - p match."""
    if label not in HARD_CLASSES:
        raise FeatxError(f"unknown hard untrimmed class {label!r}; known: {', '.join(HARD_CLASSES)}")
    first, _, second = label.partition("_then_")
    _MOVING[first if progress < 0.5 else second](background, t, background.shape[0])
    return background


def hard_frame(segment: Segment | None, t: float, background: np.ndarray) -> np.ndarray:
    """Frame at time t of a hard video: the background alone outside actions and in their occluded stretches."""
    if segment is None or segment.hidden(t):
        return background
    return order_frame(segment.label, segment.progress(t), t, background)


def write_video(
    path: Path, frames, fps: int | Fraction, size: int | tuple[int, int], codec: str = "libx264", intra_only: bool = False,
    gop: int | None = None, times: FrameTimes | None = None,
) -> None:
    """Encode an iterable of (H, W, 3) uint8 RGB frames at a constant `fps` (an int or an exact Fraction such as
    30000/1001); size is (W, H), or one int for square frames. gop: keyframe spacing in frames (default: the
    encoder's). times: each frame's timestamp and duration (a variable frame rate); `fps` is then nominal.

    intra_only: every frame a keyframe at a constant quantiser, so a frame's coding artefacts depend on
    its content alone, never on its position in the video (inter coding degrades the frames after a cut,
    which would let order-blind models tell "A then B" from "B then A")."""
    import av

    # written under a hidden name and renamed when complete: an interrupted synth never leaves a short video
    # that plays (and would extract) as if it were whole
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    with av.open(str(partial), "w") as container:
        options = {"qp": "20"} if intra_only else {}
        if times is not None:  # no B-frames: decode order is display order, so the container's duration is exact
            options["bf"] = "0"
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = (size, size) if isinstance(size, int) else size
        stream.pix_fmt = "yuv420p"
        if intra_only or gop:
            stream.gop_size = 1 if intra_only else gop
        durations = {}  # pts -> duration: the muxer would give the last frame the one before it
        if times is not None:
            stream.codec_context.time_base = stream.time_base = times.time_base
            durations = {int(a): int(b - a) for a, b in zip(times.ticks[:-1], times.ticks[1:])}
        for j, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = int(times.ticks[j]), times.time_base
            for packet in stream.encode(frame):
                _mux(container, packet, durations)
        for packet in stream.encode():
            _mux(container, packet, durations)
    os.replace(partial, path)


def _mux(container, packet, durations: dict) -> None:
    if durations and packet.pts in durations:
        packet.duration = durations[packet.pts]
    container.mux(packet)


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
    made = {**settings, "videos": videos, "seconds": seconds, "fps": _rate_json(rate), "size": size, "seed": seed}
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
        texture, centre = _texture(rng, size), rng.uniform(2, size / 2 - 2, size=2)
        video_id = f"{label}_{rank:03d}"
        path = folder / f"{video_id}.mp4"
        # progress at frame centres, (j + 0.5) / n, so reversing a video maps its frames onto each other
        if flashes > 0:
            first_at = rng.uniform(0, 0.5 - flashes)
            second_at = rng.uniform(first_at + flashes, 1 - flashes)
            frames = (flash_frame(label, (j + 0.5) / n, _shaking(texture, rng, size, centre), first_at, second_at, flashes)
                      for j in range(n))
        else:
            lead = rng.uniform(0, lead_in) if lead_in > 0 else 0.0
            frames = (trimmed_frame(label, (j + 0.5) / n, _shaking(texture, rng, size, centre), lead) for j in range(n))
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


def motion_centres(rng: np.random.Generator, objects: int, frames: int, size: int, direction: str, speed: int) -> np.ndarray:
    """(frames, objects, 2) integer (row, column) centres on a size x size torus: uniform at random in the
    first frame, then all moved `speed` pixels per frame in `direction`, modulo size. A uniform point moved
    on a torus stays uniform, so the centres of any one frame have the same distribution in every direction."""
    if direction not in MOTION_STEPS:
        raise FeatxError(f"unknown motion class {direction!r}; known: {', '.join(MOTION_CLASSES)}")
    start = rng.integers(0, size, size=(objects, 2))
    step = np.array(MOTION_STEPS[direction]) * speed
    return (start[None] + np.arange(frames)[:, None, None] * step[None, None]) % size


def motion_frame(background: np.ndarray, centres: np.ndarray, radius: float, colour=WHITE) -> np.ndarray:
    """The background with a disc of `radius` at each (row, column) centre, drawn on the torus: a disc
    across an edge comes back on the opposite side, so nothing in a frame depends on where the discs went."""
    h, w = background.shape[:2]
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    img = background.copy()
    for cy, cx in centres:
        dy = (rows - cy + h // 2) % h - h // 2  # signed distance on the torus
        dx = (cols - cx + w // 2) % w - w // 2
        img[dy**2 + dx**2 <= radius**2] = colour
    return img


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
        background = _texture(rng, size)[:size, :size]
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
        yield untrimmed_frame(label, t, _drifting(texture, t, size, phase))


def _hard_frames(segments: list[Segment], times: FrameTimes, texture: np.ndarray, phase: np.ndarray, light: tuple[float, float]):
    """light: (period in s, phase) of the background's slow +-20% brightness change."""
    size = texture.shape[0] // 2
    for j in range(times.frames):
        t = times.centre(j)  # frame centres, so reversing an action maps its frames onto each other
        gain = 1 + 0.2 * np.sin(2 * np.pi * t / light[0] + light[1])
        background = np.clip(_drifting(texture, t, size, phase) * gain, 0, 255).astype(np.uint8)
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
        texture, phase = _texture(rng, size), rng.uniform(0, 2 * np.pi, size=2)
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
