"""What the benchmark scripts share: their parser, timing, markdown tables, the results JSON and synthetic clips.

bench/ is not a package: `python bench/X.py` puts this folder first on sys.path, so the scripts import this
module as `from _common import ...`. It imports nothing heavier than numpy (featx only inside `make_videos`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).parent / "results"
Clock = Callable[[], float]


# --- arguments ---------------------------------------------------------------------------------------------


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose --help prints the script's docstring as written (its example command lines included)."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_out(parser: argparse.ArgumentParser, name: str) -> None:
    """`--out PATH` for the results JSON, by default bench/results/NAME. A NAME holding `<device>` (the file
    depends on the device the script resolves) defaults to None: `results_path` fills it in."""
    default = None if "<device>" in name else str(RESULTS / name)
    parser.add_argument("--out", default=default, help=f"results JSON (default bench/results/{name})")


def results_path(out: str | None, name: str, device: str) -> Path:
    """`--out` when given, else bench/results/NAME with `<device>` replaced by `device` ("cpu", "cuda")."""
    return Path(out) if out else RESULTS / name.replace("<device>", device)


# --- timing ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed run of a call, and what its last run returned."""

    runs: tuple[float, ...]  # one entry per timed run, in order
    result: Any = None  # the last run's return value

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.runs)


def timed(fn: Callable[[], Any], repeats: int = 1, warmup: int = 0, sync: Callable[[], Any] | None = None,
          clock: Clock = time.perf_counter) -> Timing:
    """Call `fn` `warmup` times untimed, then `repeats` times, timing each call on `clock`.

    `sync` (a CUDA synchronize) runs before each timed call starts and again before its time is read, so work
    a call queued on a GPU counts in that call and not the next."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        fn()
    runs, result = [], None
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = clock()
        result = fn()
        if sync is not None:
            sync()
        runs.append(clock() - start)
    return Timing(tuple(runs), result)


class Stopwatch:
    """Seconds a block took: `with Stopwatch() as watch: ...`, then `watch.seconds`. Outside a `with`, it runs
    from its creation and `seconds` is the time so far (a loop that may stop early)."""

    def __init__(self, clock: Clock = time.perf_counter):
        self._clock = clock
        self._start = clock()
        self._end: float | None = None

    def __enter__(self) -> Stopwatch:
        self._start, self._end = self._clock(), None
        return self

    def __exit__(self, *exc) -> None:
        self._end = self._clock()

    @property
    def seconds(self) -> float:
        return (self._clock() if self._end is None else self._end) - self._start


# --- tables ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One column of a markdown table."""

    header: str
    align: str = ">"  # "<" left, ">" right, "^" centre: f-string alignment, and the rule's colons
    width: int = 0  # cells (and the header) padded to this many characters; 0: not padded, rule `---`

    def __post_init__(self):
        if self.align not in ("<", ">", "^"):
            raise ValueError(f"align must be '<', '>' or '^', got {self.align!r}")

    def cell(self, text: Any) -> str:
        return f" {text:{self.align}{self.width}} " if self.width else f" {text} "

    def rule(self) -> str:
        colons = {"<": 0, ">": 1, "^": 2}[self.align]
        dashes = "-" * (self.width + 2 - colons if self.width else 3)  # a padded rule is as wide as its cells
        return {"<": dashes, ">": dashes + ":", "^": ":" + dashes + ":"}[self.align]


def table_row(columns: Sequence[Column], cells: Sequence[Any]) -> str:
    """One markdown row; each cell is already formatted (numbers as the script wants them shown)."""
    return "|" + "|".join(c.cell(x) for c, x in zip(columns, cells, strict=True)) + "|"


def table_header(columns: Sequence[Column]) -> str:
    """The header row and the alignment rule under it (for scripts that print rows as they come)."""
    return table_row(columns, [c.header for c in columns]) + "\n|" + "|".join(c.rule() for c in columns) + "|"


def markdown_table(columns: Sequence[Column], rows: Iterable[Sequence[Any]]) -> str:
    """Header, rule and rows of a markdown table, as the README's tables are written."""
    return "\n".join([table_header(columns), *(table_row(columns, r) for r in rows)])


# --- results JSON ------------------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _torch_version() -> str | None:
    if "torch" in sys.modules:  # its own string keeps the build's local label ("+cu130"); metadata may not
        return sys.modules["torch"].__version__
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def machine_facts(device: str = "cpu") -> dict:
    """Where and when a result was measured: date (UTC), CPU, architecture, cores, Python, torch, the device
    the script ran on and, on CUDA, the card's name."""
    facts = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": _cpu_name(),
             "arch": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
             "torch": _torch_version(), "device": device}
    if device.startswith("cuda"):
        import torch  # only a CUDA run asks, and it has torch loaded already

        facts["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return facts


def write_results(path: str | Path, result: dict, device: str = "cpu") -> Path:
    """Write `result` plus the machine facts (under "host") as JSON, atomically: a reader, or a later run after
    this one is killed mid-write, finds the previous file or the new one, never half of one."""
    if "host" in result:
        raise ValueError("result already has a 'host' key: write_results adds the machine facts there")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({**result, "host": machine_facts(device)}, indent=1, default=str)  # default: Paths in args
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # same folder, so the rename stays on one filesystem
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- synthetic video ---------------------------------------------------------------------------------------


def colour_field(rng: np.random.Generator, height: int, width: int, margin: int) -> np.ndarray:
    """A smooth random colour field of 8x8-pixel blocks, `margin` blocks larger than height x width each way
    so that `panned` can slide over it: (H + 8 margin, W + 8 margin, 3) uint8 (rounded down to blocks)."""
    coarse = rng.uniform(0, 255, (height // 8 + margin, width // 8 + margin, 3))
    return np.kron(coarse, np.ones((8, 8, 1))).astype(np.uint8)


def panned(field: np.ndarray, t: int, height: int, width: int) -> np.ndarray:
    """Frame `t` of a pan over `field`: down 1 and right 2 pixels per frame, wrapping every 64 / 32 frames."""
    return field[t % 64 : t % 64 + height, 2 * t % 64 : 2 * t % 64 + width]


def synthetic_clip(rng: np.random.Generator, seconds: float, fps: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Frames (H, W, 3) uint8 of a panning smooth colour field with a moving disc and mild sensor noise: a
    bitrate like real low-resolution footage (pure noise would make decoding several times slower than real
    video). `size` is (W, H)."""
    w, h = size
    field = colour_field(rng, h, w, 16)
    yy, xx = np.mgrid[0:h, 0:w]
    for t in range(int(seconds * fps)):
        frame = panned(field, t, h, w).astype(np.int16)
        disc = (yy - h / 2 - h / 4 * np.sin(t / 10)) ** 2 + (xx - w / 2 - w / 4 * np.cos(t / 13)) ** 2 < (h / 8) ** 2
        frame[disc] = (255, 40, 40)
        yield np.clip(frame + rng.integers(-6, 7, frame.shape), 0, 255).astype(np.uint8)


def make_videos(folder: Path, distinct: int, seconds: float, fps: int, size: tuple[int, int], gop: int,
                copies: int) -> list[Path]:
    """`distinct` h264 clips (`synthetic_clip`, keyframes every `gop` frames), each hard-linked `copies` times
    under its own name (distinct video ids) so that many frames cost few encodes. Returns the sorted paths."""
    from featx.synth_video import write_video

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for v in range(distinct):
        first = folder / f"clip{v:02d}_000.mp4"
        write_video(first, synthetic_clip(rng, seconds, fps, size), fps, size, gop=gop)
        for c in range(1, copies):
            os.link(first, folder / f"clip{v:02d}_{c:03d}.mp4")
    return sorted(folder.glob("*.mp4"))


def plain_script(backbone, paths: list[Path], fps: float | None = None, batch: int = 32) -> int:
    """The peer script a user would write, serially: PyAV decodes each whole video, keeps every frame (or, at
    `fps`, the first at or after each 1/fps), resizes its shorter side and centre-crops it (swscale, bicubic), and
    the backbone embeds batches of `batch`. Returns the frames embedded."""
    import av
    import torch

    pre, frames = backbone.preprocess, 0
    for path in paths:
        kept, next_t = [], 0.0
        with av.open(str(path)) as container:
            for f in container.decode(video=0):
                if fps is not None:
                    if f.time < next_t - 1e-6:
                        continue
                    next_t = (int(f.time * fps + 1e-6) + 1) / fps
                scale = pre.resize_shorter / min(f.width, f.height)
                w, h = round(f.width * scale), round(f.height * scale)
                rgb = f.reformat(width=w, height=h, format="rgb24", interpolation="BICUBIC").to_ndarray()
                top, left = (h - pre.crop[0]) // 2, (w - pre.crop[1]) // 2
                kept.append(rgb[top : top + pre.crop[0], left : left + pre.crop[1]])
        pixels = np.stack(kept)
        for s in range(0, len(pixels), batch):
            backbone.embed(torch.from_numpy(pixels[s : s + batch]))
        frames += len(pixels)
    return frames
