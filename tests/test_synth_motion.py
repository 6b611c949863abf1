"""`featx synth --kind motion`: a single frame has the same distribution in every class; motion tells them apart."""

import csv

import av
import numpy as np
import pytest

from featx.errors import FeatxError
from featx.synth import make_motion
from featx.synth_draw import MOTION_CLASSES, MOTION_STEPS, motion_centres, motion_frame

SIZE, FRAMES, SPEED, RADIUS = 24, 8, 3, 3.0
BACKGROUND = np.full((SIZE, SIZE, 3), 100, np.uint8)


def single_frames(direction: str, count: int, seed: int, start_columns: int = SIZE, times: int = FRAMES) -> np.ndarray:
    """`count` frames (channel 0), each of its own video at a random one of its first `times` frames; the discs
    start in the first `start_columns` columns (all of them: the motion set)."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, SIZE, SIZE), np.float32)
    for k in range(count):
        centres = motion_centres(rng, 2, FRAMES, SIZE, direction, SPEED)
        if start_columns < SIZE:  # the control: discs that start in the first columns only
            centres[..., 1] = (centres[..., 1] - centres[:1, :, 1] + rng.integers(0, start_columns, size=2)) % SIZE
        out[k] = motion_frame(BACKGROUND, centres[rng.integers(0, times)], RADIUS)[..., 0]
    return out


def between_vs_within(frames_by_class: dict[str, np.ndarray]) -> tuple[float, float]:
    """(largest RMS difference between two classes' mean frames, smallest RMS difference between the two halves'
    mean frames within a class). Noise alone makes the first about 1/sqrt(2) of the second."""
    means = {c: f.mean(0) for c, f in frames_by_class.items()}
    between = max(np.sqrt(((means[a] - means[b]) ** 2).mean()) for a in means for b in means if a < b)
    within = min(np.sqrt(((f[: len(f) // 2].mean(0) - f[len(f) // 2 :].mean(0)) ** 2).mean()) for f in frames_by_class.values())
    return float(between), float(within)


def test_a_single_frame_has_the_same_distribution_in_every_class():
    frames = {c: single_frames(c, 600, seed=k) for k, c in enumerate(MOTION_CLASSES)}
    between, within = between_vs_within(frames)
    assert between < 1.5 * within  # the classes' mean frames differ no more than noise does (about 0.7 x)
    # where the discs are: uniform over rows and columns in every class (chi-square, 23 degrees of freedom)
    rng = np.random.default_rng(9)
    for direction in MOTION_CLASSES:
        centres = np.concatenate([motion_centres(rng, 3, FRAMES, SIZE, direction, SPEED)[rng.integers(0, FRAMES)]
                                  for _ in range(2000)])
        for axis in (0, 1):
            counts = np.bincount(centres[:, axis], minlength=SIZE)
            expected = len(centres) / SIZE
            assert ((counts - expected) ** 2 / expected).sum() < 49.7  # chi-square 0.999 quantile at 23 dof


def test_the_check_sees_a_set_whose_frames_give_the_direction_away():
    # the same discs starting in the left third, seen in their first two frames: where they are hints at where
    # they go (as in a set whose objects enter on one side)
    frames = {c: single_frames(c, 600, seed=k, start_columns=SIZE // 3, times=2) for k, c in enumerate(("left", "right"))}
    between, within = between_vs_within(frames)
    assert between > 3 * within


@pytest.mark.parametrize("direction", MOTION_CLASSES)
def test_consecutive_frames_move_in_the_labelled_direction(direction):
    centres = motion_centres(np.random.default_rng(1), 4, FRAMES, SIZE, direction, SPEED)
    rows, cols = MOTION_STEPS[direction]
    for t in range(FRAMES - 1):
        now, after = motion_frame(BACKGROUND, centres[t], RADIUS), motion_frame(BACKGROUND, centres[t + 1], RADIUS)
        np.testing.assert_array_equal(after, np.roll(now, (rows * SPEED, cols * SPEED), axis=(0, 1)))
        assert not np.array_equal(after, now)


def test_unknown_direction_is_refused():
    with pytest.raises(FeatxError, match="unknown motion class 'sideways'"):
        motion_centres(np.random.default_rng(0), 1, 2, SIZE, "sideways", 1)


def _frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_motion_videos_move_as_labelled_and_are_labelled_like_trimmed_ones(tmp_path):
    from featx.flow import optical_flow

    result = make_motion(tmp_path, videos=8, seconds=1, fps=8, size=64, seed=3)
    with open(result.labels) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == list(MOTION_CLASSES) * 2
    assert sorted(r["split"] for r in rows if r["label"] == "left") == ["train", "val"]
    for row, path in zip(rows, result.videos):
        frames = _frames(path)
        assert frames.shape == (8, 64, 64, 3)
        flow = optical_flow(frames[2], frames[3])  # (H, W, 2): dx, dy
        moving = np.linalg.norm(flow, axis=-1) > 1
        dx, dy = np.median(flow[moving], axis=0)
        rows_step, cols_step = MOTION_STEPS[row["label"]]
        assert np.sign(np.round([dy, dx])).tolist() == [rows_step, cols_step], (row, dx, dy)
