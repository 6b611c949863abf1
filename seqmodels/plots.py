"""Figures of a training run: learning curves, confusion matrix, and the skip heads' used/skipped steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def curves(history: list[dict], path: Path, score: str = "accuracy") -> None:
    """Loss and `score` (accuracy, mAP) per epoch, for the splits the history has; with one head per stream
    (late fusion), a pair of lines per head."""
    plt = _pyplot()
    fig, (loss, acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    heads = list(dict.fromkeys(row.get("stream") for row in history))  # [None] for a single head
    for head in heads:
        rows = [row for row in history if row.get("stream") == head]
        epochs = [row["epoch"] for row in rows]
        for split in ("train", "val"):
            label = f"{head} {split}" if head else split
            for axis, key in ((loss, f"{split}_loss"), (acc, f"{split}_{score}")):
                if key in rows[0]:
                    axis.plot(epochs, [row[key] for row in rows], label=label)
    loss.set(xlabel="epoch", ylabel="loss", title="loss")
    acc.set(xlabel="epoch", ylabel=score, title=score, ylim=(0, 1.02))
    loss.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion(matrix: list[list[int]], classes: list[str], path: Path) -> None:
    plt = _pyplot()
    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(classes), 1 + 0.55 * len(classes)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion (validation)")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def skips(ids: list[str], updates: list[np.ndarray], path: Path, most: int = 8) -> None:
    """One row per video: a filled cell where the state was updated (the step was used), empty if skipped."""
    plt = _pyplot()
    rows = list(zip(ids, updates))[:most]
    longest = max(len(u) for _, u in rows)
    fig, ax = plt.subplots(figsize=(min(14, 5 + 0.18 * longest), 1 + 0.35 * len(rows)))
    grid = np.full((len(rows), longest), np.nan)
    for r, (_, u) in enumerate(rows):
        grid[r, : len(u)] = u
    ax.imshow(grid, cmap="Greys", vmin=0, vmax=1.4, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(rows)), [f"{vid} ({u.mean():.0%})" for vid, u in rows])
    ax.set(xlabel="step", title="state updates (dark: used, light: skipped)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
