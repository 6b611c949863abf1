"""What synthetic videos show: the classes, their shapes and colours, and one frame of each kind of video
(trimmed order pairs, flashes, untrimmed actions on a drifting background, hard order pairs, moving discs)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featx.errors import FeatxError

TRIMMED_CLASSES = ("red_then_blue", "blue_then_red", "green_then_yellow", "yellow_then_green")
UNTRIMMED_CLASSES = ("red_disc", "blue_square", "yellow_bar")
HARD_CLASSES = ("disc_then_square", "square_then_disc", "bar_then_ring", "ring_then_bar")
MOTION_CLASSES = ("left", "right", "up", "down")
RED, BLUE, GREEN, YELLOW = (220, 30, 30), (30, 60, 220), (40, 190, 60), (235, 210, 20)
WHITE = (235, 235, 235)
MOTION_STEPS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}  # (rows, columns) per frame


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


def random_texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth, muted random colour field twice the frame size, so it can drift (camera motion)."""
    coarse = rng.uniform(60, 170, size=(6, 6, 3))
    reps = -(-2 * size // 6)
    big = np.kron(coarse, np.ones((reps, reps, 1)))[: 2 * size, : 2 * size]
    return big.astype(np.uint8)


def _view(texture: np.ndarray, dy: float, dx: float, size: int) -> np.ndarray:
    """The size x size window of the texture at offset (dy, dx), each in [0, size / 2]."""
    dy, dx = int(np.clip(dy, 0, size // 2)), int(np.clip(dx, 0, size // 2))
    return texture[dy : dy + size, dx : dx + size].copy()


def drifting_view(texture: np.ndarray, t: float, size: int, phase: np.ndarray) -> np.ndarray:
    """The texture seen by a slowly drifting camera (untrimmed videos)."""
    return _view(texture, (np.cos(t * 0.5 + phase[1]) + 1) * size / 4, (np.sin(t * 0.7 + phase[0]) + 1) * size / 4, size)


def shaking_view(texture: np.ndarray, rng: np.random.Generator, size: int, centre: np.ndarray) -> np.ndarray:
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
