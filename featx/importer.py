"""`featx import`: per-video feature arrays made elsewhere (or by `featx export`) into a featx store.

Input: a folder, searched recursively (hidden files skipped), of `.npy`, `.npz`, `.pt` (a tensor, read with
`torch.load(weights_only=True)`), `.h5` / `.hdf5` and `.csv` (an optional header row, then one row per step: BMN's
layout) files. A video's id is its path below the folder without the suffix (`a/b.npy` -> `a/b`), as
`featx extract` names videos. An HDF5 file holding several datasets is one video per dataset (ids: the dataset
names): the one-file layout of `featx export --format hdf5` and of ActionFormer's hdf5 option.

Times: from a featx export's sidecar (featx_export.json + featx_times.parquet) exactly, and then the store's config
is the exported store's (identity unchanged: a run trained on the original evaluates on the round trip). A
foreign folder's rows get the grid its flags describe (`featx.timegrid.import_grid_times`): row i spans frames [i*S, i*S + W) of a
video at F frames/s; its config records the settings (`imported`, identity) and the folder (`import_source`,
not identity), and sets fps / clip_len / clip_stride to F / W / S, as an extraction with that grid would.

Every array is read and checked (2-d, one feature size, finite values) before anything is written, so a bad file
is one error line and the store stays as it was; rows then go through StoreWriter (manifest, lease, checksums).
Videos the store already holds are skipped, so an interrupted import resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featx.config import DTYPES, ExtractConfig
from featx.digests import file_sha256
from featx.errors import FeatxError
from featx.ids import check_video_id, file_inside
from featx.export import SIDECAR, SIDECAR_VERSION
from featx.export_formats import require_h5py
from featx.feature_files import READERS, Source, checked, h5_datasets, read_array
from featx.store import StoreWriter, ok_video_ids
from featx.timegrid import import_grid_times

LAYOUTS = ("TC", "CT")  # rows are time steps (T, C), or the transpose (C, T)


# Frame numbers of a row are i * stride + window: keep them exact in float64 seconds and far from int64's end.
_MAX_FRAMES = 2**40


@dataclass(frozen=True)
class Grid:
    """A foreign folder's time grid: row i spans frames [i*stride, i*stride + window) at fps frames/s."""

    fps: float | None  # None: each video's own, from --source-fps-file
    stride: int
    window: int

    def __post_init__(self) -> None:
        if self.fps is not None and not 0 < self.fps < math.inf:
            raise FeatxError(f"--source-fps must be a positive number of frames per second, not {self.fps}")
        if self.stride < 1 or self.window < 1:
            raise FeatxError("--clip-stride and --clip-len must be positive numbers of frames")
        if max(self.stride, self.window) > _MAX_FRAMES:  # frame numbers are int64, seconds float64
            raise FeatxError(f"--clip-stride and --clip-len must be at most {_MAX_FRAMES} frames")


def _inside(folder: Path, name) -> Path:
    """A file an export sidecar names: inside the export folder, or one error line (never read elsewhere)."""
    target = file_inside(folder, name)
    if target is None:
        raise FeatxError(f"{folder / SIDECAR}: file {name!r} is not a file inside {folder}; the sidecar was edited")
    return target


# -- finding the videos ---------------------------------------------------------------------------------------
def find_sources(folder: Path, key: str | None = None, exclude: set[Path] = frozenset()) -> list[Source]:
    """Every video array below `folder`, sorted by id; two files giving one id are refused."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in READERS and p.is_file()
                   and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
                   and p.resolve() not in exclude)
    sources: dict[str, Source] = {}
    for path in files:
        stem = path.relative_to(folder).with_suffix("").as_posix()
        found = [Source(stem, path, key)]
        if path.suffix.lower() in (".h5", ".hdf5") and key is None:
            require_h5py()
            try:
                names = h5_datasets(path)
            except OSError as exc:
                raise FeatxError(f"{path}: cannot be read as HDF5 ({exc})") from None
            one_file_layout = len(names) > 1
            found = [Source(name if one_file_layout else stem, path, name) for name in names]
        for source in found:
            check_video_id(source.video_id, f"{source}: its video id")
            if source.video_id in sources:
                raise FeatxError(f"{sources[source.video_id]} and {source} both give video {source.video_id!r}")
            sources[source.video_id] = source
    if not sources:
        raise FeatxError(f"{folder} holds no {', '.join(READERS)} files (searched recursively)")
    return [sources[v] for v in sorted(sources)]


def read_fps_file(path: Path) -> dict[str, float]:
    """{video_id: fps} from a CSV (columns video_id, fps), a JSON object {video_id: fps}, or an ActivityNet-style
    JSON whose database entries say `fps` (ActionFormer's thumos14.json does)."""
    try:
        if path.suffix.lower() == ".csv":
            import pandas as pd

            table = pd.read_csv(path, dtype={"video_id": str})
            if not {"video_id", "fps"} <= set(table.columns):
                raise FeatxError(f"--source-fps-file {path}: needs the columns video_id and fps")
            pairs = zip(table["video_id"], table["fps"])
        else:
            data = json.loads(path.read_text())
            data = data.get("database", data) if isinstance(data, dict) else None
            if not isinstance(data, dict):
                raise FeatxError(f"--source-fps-file {path}: expected a JSON object {{video_id: fps}}")
            pairs = [(vid, v.get("fps") if isinstance(v, dict) else v) for vid, v in data.items()]
            pairs = [(vid, v) for vid, v in pairs if v is not None]  # a video without one: "no fps" if imported
    except (OSError, ValueError) as exc:
        raise FeatxError(f"--source-fps-file {path}: cannot be read ({str(exc).splitlines()[0]})") from None
    fps = {}
    for vid, value in pairs:
        try:
            fps[str(vid)] = Grid(float(value), 1, 1).fps
        except (TypeError, ValueError, FeatxError):
            raise FeatxError(f"--source-fps-file {path}: video {vid!r} has fps {value!r}, not a positive number") from None
    return fps


# -- the import -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportSummary:
    store: Path
    videos: int  # imported now
    skipped: int  # already in the store
    rows: int
    seconds: float

    def lines(self) -> list[str]:
        skipped = f"; {self.skipped} already there, skipped" if self.skipped else ""
        return [f"imported {self.videos} videos, {self.rows} rows into {self.store} in {self.seconds:.1f} s{skipped}"]


class _ExportPlan:
    """A featx export's folder: the config, files and exact times its sidecar and times file give."""

    def __init__(self, folder: Path, dtype: str | None):
        import pyarrow.parquet as pq

        try:
            sidecar = json.loads((folder / SIDECAR).read_text())
            version = sidecar["format_version"]
            self.entries = sidecar["videos"]
            original = ExtractConfig.from_dict(sidecar["config"])
            table = pq.read_table(_inside(folder, sidecar["times"])).to_pandas()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FeatxError(f"{folder / SIDECAR}: not a readable featx export sidecar ({exc})") from None
        kinds = [(version, int, "format_version"), (self.entries, dict, "videos"), (sidecar.get("column"), str, "column"),
                 (sidecar.get("dtype"), str, "dtype")]
        for value, kind, key in kinds:
            if not isinstance(value, kind) or isinstance(value, bool):
                raise FeatxError(f"{folder / SIDECAR}: {key} must be {kind.__name__}, not {value!r}; export the store again")
        if not all(isinstance(e, dict) and isinstance(e.get("file"), str) for e in self.entries.values()):
            raise FeatxError(f"{folder / SIDECAR}: every video entry needs a 'file' name; export the store again")
        if version > SIDECAR_VERSION:
            raise FeatxError(f"{folder / SIDECAR}: format_version {version}, written by a newer featx; upgrade featx")
        stream = "flow" if sidecar["column"] == "flow_feature" else "rgb" if original.stream == "both" else original.stream
        self.config = dataclasses.replace(original, dtype=dtype or sidecar["dtype"], stream=stream,
                                          import_source=str(folder.resolve()))
        h5 = _inside(folder, sidecar["hdf5_file"]) if sidecar.get("hdf5_file") else None
        if h5 is not None and sidecar.get("hdf5_sha256"):
            _check_digest(h5, sidecar["hdf5_sha256"])
        self.sources = [Source(check_video_id(vid, f"{folder / SIDECAR}: video"), h5, entry["file"]) if h5
                        else Source(check_video_id(vid, f"{folder / SIDECAR}: video"), _inside(folder, entry["file"]))
                        for vid, entry in sorted(self.entries.items())]
        self._times = {vid: tuple(g[c].to_numpy() for c in ("t_start", "t_end", "frame_start", "frame_end"))
                       for vid, g in table.sort_values(["video_id", "step"]).groupby("video_id")}
        self._times_file = _inside(folder, sidecar["times"])

    def config_for(self, dim: int) -> ExtractConfig:
        return self.config

    def verify(self, source: Source) -> None:
        """The file is the one the export wrote (its sha256 in the sidecar; exports before featx 0.1 have none)."""
        expected = self.entries[source.video_id].get("sha256")
        if expected:
            _check_digest(source.path, expected)

    def times(self, source: Source, rows: int) -> tuple:
        times = self._times.get(source.video_id)
        if times is None or len(times[0]) != rows:
            have = 0 if times is None else len(times[0])
            raise FeatxError(f"{source}: {rows} rows, but {self._times_file} has {have} for {source.video_id!r}")
        return times

    def record(self, source: Source, rows: int) -> dict:
        e = self.entries[source.video_id]
        return {"path": e.get("path"), "fps": e.get("source_fps"), "frames": e.get("frames"),
                "duration": e.get("duration"), "width": e.get("width"), "height": e.get("height")}


def _check_digest(path: Path, expected: str) -> None:
    if file_sha256(path) != expected:
        raise FeatxError(f"{path} is not the file the export wrote (its sha256 differs from the sidecar's): damaged "
                         "or replaced; export it again")


class _GridPlan:
    """A foreign folder: the arrays found below it, on the grid its flags describe."""

    def verify(self, source: Source) -> None:
        """Nothing to check a foreign file against."""

    config = None  # made once the feature size is known (config_for)

    def __init__(self, folder: Path, grid: Grid | None, fps_file: Path | None, layout: str, key: str | None,
                 dtype: str, backbone: str | None):
        if grid is None or (grid.fps is None) == (fps_file is None):
            raise FeatxError(f"{folder} has no {SIDECAR} (not a featx export): give its grid, --source-fps F "
                             "(or --source-fps-file) --clip-stride S --clip-len W")
        self.folder, self.grid, self.layout, self.key, self.dtype, self.backbone = folder, grid, layout, key, dtype, backbone
        self.sources = find_sources(folder, key, exclude={Path(fps_file).resolve()} if fps_file else set())
        self.fps = {s.video_id: grid.fps for s in self.sources}
        if fps_file:
            per_video = read_fps_file(Path(fps_file))
            missing = [vid for vid in self.fps if vid not in per_video]
            if missing:
                raise FeatxError(f"--source-fps-file {fps_file}: no fps for video {missing[0]!r}")
            self.fps = {vid: per_video[vid] for vid in self.fps}

    def config_for(self, dim: int) -> ExtractConfig:
        from featx.version import __version__

        grid = self.grid
        return ExtractConfig(
            backbone=self.backbone or "imported", weights="imported", fps=grid.fps, dtype=self.dtype,
            clip_len=grid.window, clip_stride=grid.stride, feature_dim=dim, versions={"featx": __version__},
            imported={"fps": grid.fps, "stride": grid.stride, "window": grid.window, "layout": self.layout,
                      "key": self.key},
            import_source=str(self.folder.resolve()),
        )

    def times(self, source: Source, rows: int) -> tuple:
        return import_grid_times(rows, self.fps[source.video_id], self.grid.stride, self.grid.window)

    def record(self, source: Source, rows: int) -> dict:
        fps = self.fps[source.video_id]
        frames = (rows - 1) * self.grid.stride + self.grid.window
        return {"path": str(source), "fps": fps, "frames": frames, "duration": frames / fps, "width": None,
                "height": None}


def import_folder(folder, out, grid: Grid | None = None, fps_file: Path | None = None, layout: str = "TC",
                  key: str | None = None, dtype: str | None = None, backbone: str | None = None,
                  progress: bool = True) -> ImportSummary:
    """Import every array below `folder` into the store `out` (see the module docstring). A featx export's folder
    needs no other argument; a foreign one needs `grid` (with fps, or fps=None and `fps_file`)."""
    from featx.progress import progress as progress_bar

    started = time.monotonic()
    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise FeatxError(f"{folder} is not a folder")
    if layout not in LAYOUTS:
        raise FeatxError(f"--layout must be TC (rows are steps) or CT (columns are steps), not {layout!r}")
    if dtype is not None and dtype not in DTYPES:
        raise FeatxError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if (folder / SIDECAR).is_file():
        if grid is not None or fps_file or layout != "TC" or key or backbone:
            raise FeatxError(f"{folder} is a featx export ({SIDECAR} gives its grid and config): leave out "
                             "--source-fps(-file), --clip-stride, --clip-len, --layout, --key and --backbone")
        plan = _ExportPlan(folder, dtype)
    else:
        plan = _GridPlan(folder, grid, fps_file, layout, key, dtype or "float32", backbone)
    done = ok_video_ids(out) if (out / "_videos").is_dir() else set()
    todo = [s for s in plan.sources if s.video_id not in done]
    dim = plan.config.feature_dim if plan.config else None
    dtype = plan.config.dtype if plan.config else plan.dtype
    for source in progress_bar(todo, unit="video", desc="check", enabled=progress):  # nothing is written until all pass
        plan.verify(source)
        array = checked(source, read_array(source, layout), dtype, dim, layout)
        plan.times(source, len(array))
        dim = array.shape[1]
    if dim is None:  # nothing left to import: the store's config is still checked against these settings
        dim = read_array(plan.sources[0], layout).shape[1]
    rows = 0
    with StoreWriter(out, plan.config_for(dim)) as writer:
        # what is done is decided again under the writer's lease: another import may have finished meanwhile
        done = ok_video_ids(out)
        todo = [s for s in todo if s.video_id not in done]
        for source in progress_bar(todo, unit="video", desc="import", enabled=progress):
            began = time.monotonic()
            # a copy in memory: a mapped file's rows queued for the part would hold its file open until the
            # part is flushed, and thousands of small files would exhaust the process's 1,024 descriptors
            array = np.array(checked(source, read_array(source, layout), dtype, dim, layout))
            record = {**plan.record(source, len(array)), "video_id": source.video_id, "error": None,
                      "seconds": time.monotonic() - began, "finished_at": time.time()}
            writer.add_video(record, writer.table(source.video_id, *plan.times(source, len(array)), array))
            rows += len(array)
    return ImportSummary(out, len(todo), len(plan.sources) - len(todo), rows, time.monotonic() - started)
