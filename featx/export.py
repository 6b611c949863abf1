"""`featx export`: a store's rows as the files other tools read, with a sidecar that says their time grid.

Formats (DIR is `--out`):
- npy:  DIR/<video_id>.npy, one (T, D) array per ok video, in sub-folders when the id has them: the folder
        ActionFormer, TriDet and OpenTAD read (`feat_folder`, `file_ext: .npy`).
- hdf5: DIR/features.h5, one (T, D) dataset per video named by its id, with its rows' times and grid as
        attributes: the file ActionFormer's `feat_folder: x.hdf5` option reads (`h5[file_prefix + video_id]`).
- csv:  DIR/<video_id>.csv, a header `f0,...,f{D-1}` and one row per step: MMAction2 BMN's input
        (`np.loadtxt(path, delimiter=",", skiprows=1)`). Values are printed with 9 significant digits, which
        float32 (and so float16) reads back exactly.
Every export also writes DIR/featx_times.parquet (every row's t_start, t_end, frame_start, frame_end, exact) and
DIR/featx_export.json, the sidecar: the store's extraction config and, per video, the time grid in the units the
tools configure (`featx.timegrid.tool_grid`). `featx import DIR` reads both back, so export -> import is exact.

The export is written in a hidden folder beside DIR and moved into place at the end: a failure or Ctrl-C
leaves DIR as it was.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featx.config import DTYPES, FEATURE_COLUMNS
from featx.errors import FeatxError
from featx.interrupts import held_interrupts
from featx.store.lease import remove_left_by_dead
from featx import tool_configs
from featx.digests import file_sha256
from featx.export_formats import HDF5_FILE, WRITERS, require_h5py
from featx.ids import check_video_id, file_inside
from featx.timegrid import tool_grid
from featx.store import load_features, load_sequences, open_store, refuse_output_in_store

SIDECAR = "featx_export.json"
SIDECAR_VERSION = 1
TIMES = "featx_times.parquet"
ANNOTATIONS = "annotations.json"
COLUMNS = FEATURE_COLUMNS
TIME_COLUMNS = ["video_id", "step", "t_start", "t_end", "frame_start", "frame_end"]
TIMES_SCHEMA = pa.schema([("video_id", pa.string()), ("step", pa.int32()), ("t_start", pa.float64()),
                          ("t_end", pa.float64()), ("frame_start", pa.int64()), ("frame_end", pa.int64())])
CHUNK_BYTES = 256 * 2**20  # features read from the store at a time: memory stays bounded on any store


def tool_settings(videos: dict[str, dict], dim: int, file_ext: str) -> dict:
    """The dataset keys of ActionFormer and OpenTAD configs for the whole export: None for a tool when the
    videos' grids disagree (each video's own values are in its sidecar entry)."""

    def common(values: list):
        return values[0] if values and all(v == values[0] for v in values) else None

    former = common([(v["actionformer"]["feat_stride"], v["actionformer"]["num_frames"]) for v in videos.values()])
    fps = common([v["actionformer"]["fps"] for v in videos.values()])
    tad = common([(v["opentad"]["feature_stride"], v["opentad"]["offset_frames"]) if v["opentad"] else None
                  for v in videos.values()])
    return {
        "actionformer": None if former is None else {
            "feat_stride": former[0], "num_frames": former[1], "default_fps": fps, "input_dim": dim,
            "file_prefix": None, "file_ext": file_ext},
        "opentad": None if tad is None else {"feature_stride": tad[0], "sample_stride": 1, "offset_frames": tad[1]},
    }


def tool_annotations(annotations, videos: dict[str, dict]) -> dict:
    """ActivityNet-style annotations (seqmodels.detection.annotations.Annotations, or anything with `.videos`
    {id: subset, duration, segments} and `.classes`) as the JSON ActionFormer and OpenTAD read, for the exported
    videos: per video subset, duration, `fps` (ActionFormer's, with `default_fps: null`), `frame` (OpenTAD's
    frame count: its fps is frame / duration) and segments with their `label_id` (index in the sorted classes)."""
    # label ids index the classes of the exported videos: a tool counts its classes from this file
    classes = sorted({s.label for vid in videos if vid in annotations.videos for s in annotations.videos[vid].segments})
    database = {}
    for vid, entry in videos.items():
        ann = annotations.videos.get(vid)
        if ann is None:
            continue
        duration = ann.duration if ann.duration is not None else entry["duration"] or entry["last_t_end"]
        clock = (entry["opentad"] or entry["actionformer"])["fps"]
        database[vid] = {
            "subset": ann.subset or "training",
            "duration": duration,
            "fps": entry["actionformer"]["fps"],
            "frame": round(duration * clock),
            "annotations": [{"label": s.label, "label_id": classes.index(s.label), "segment": [s.start, s.end]}
                            for s in ann.segments],
        }
    return {"version": f"featx export {SIDECAR_VERSION}", "database": database}


# -- the export -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportSummary:
    out: Path
    fmt: str
    videos: int
    rows: int
    seconds: float
    annotated: int | None  # videos written to annotations.json (None: no --annotations)
    unannotated: int  # annotated videos left out of annotations.json: the store has no rows for them
    tool_config: str | None = None  # the --for fragment written (its file name)
    splits: tuple[str, str] | None = None  # its train and evaluation subsets

    def lines(self) -> list[str]:
        lines = [f"exported {self.videos} videos, {self.rows} rows ({self.fmt}) to {self.out}/ in {self.seconds:.1f} s"
                 f" (grid and config: {self.out / SIDECAR})"]
        if self.annotated is not None:
            missing = f"; {self.unannotated} annotated videos have no features and were left out" if self.unannotated else ""
            lines.append(f"wrote {self.out / ANNOTATIONS} ({self.annotated} videos){missing}")
        if self.tool_config is not None:
            lines.append(f"wrote {self.out / self.tool_config}: the dataset keys to merge into the tool's config "
                         f"(train on {self.splits[0]}, evaluate on {self.splits[1]})")
        return lines


def export_store(store, out, fmt: str = "npy", column: str = "feature", dtype: str | None = None,
                 annotations=None, overwrite: bool = False, progress: bool = True, for_tool: str | None = None,
                 splits: tuple[str, str] | None = None) -> ExportSummary:
    """Write every ok video of `store` to `out` in format `fmt` (see the module docstring). dtype: of the arrays
    (default: the store's). annotations: parsed annotations (`tool_annotations`), or None. for_tool: also write
    OUT/<tool>.yaml (featx.tool_configs) training on splits[0] and evaluating on splits[1] (annotation subsets)."""
    started = time.monotonic()
    _check_request(fmt, column, dtype, for_tool, annotations, splits)
    handle = open_store(store)
    root, config = handle.root, handle.config
    if column == "flow_feature" and config.stream != "both":
        raise FeatxError(f"{store} has no flow_feature column (it was extracted with --stream {config.stream})")
    out = Path(out)
    _check_out(out, overwrite)
    latest = handle.videos()
    ok = latest[latest["status"] == "ok"].sort_values("video_id", ignore_index=True)
    if ok.empty:
        raise FeatxError(f"{store} has no extracted videos to export")
    for vid in ok["video_id"]:  # canonical ids: each names its own file, inside the export folder
        check_video_id(vid, "the store's video id")
    dtype = dtype or config.dtype
    tmp = out.parent / f".{out.name}.featx-export-{os.getpid()}.tmp"
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_left_by_dead(out.parent, f".{out.name}.featx-export-*.tmp")  # of exports killed before finishing
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        videos = _write_all(root, tmp, fmt, column, dtype, config, ok, progress)
        sidecar = _sidecar(tmp, root, config, fmt, column, dtype, videos)
        annotated = unannotated = None
        if annotations is not None:
            written = tool_annotations(annotations, videos)
            (tmp / ANNOTATIONS).write_text(json.dumps(written, indent=1))
            annotated = len(written["database"])
            unannotated = sum(1 for v in annotations.videos if v not in videos)
        if for_tool is not None:
            _write_tool_config(tmp, out, for_tool, json.loads(json.dumps(sidecar, default=_json_default)), written, splits)
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=1, default=_json_default))
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    rows = sum(v["rows"] for v in videos.values())
    return ExportSummary(out, fmt, len(videos), rows, time.monotonic() - started, annotated, unannotated or 0,
                         f"{for_tool}.yaml" if for_tool else None, splits if for_tool else None)


def _check_request(fmt: str, column: str, dtype: str | None, for_tool: str | None, annotations, splits) -> None:
    """One error line for options that cannot work together, before anything is read."""
    if for_tool is not None:
        if for_tool not in tool_configs.TOOLS:
            raise FeatxError(f"--for must be one of {', '.join(tool_configs.TOOLS)}, not {for_tool!r}")
        if annotations is None or splits is None:
            raise FeatxError(f"--for {for_tool} needs --annotations naming training and evaluation subsets")
        if fmt != "npy":  # the tools' THUMOS-style datasets np.load one <id>.npy per video
            raise FeatxError(f"--for {for_tool} reads one .npy per video: use --format npy, not {fmt}")
    if fmt not in WRITERS:
        raise FeatxError(f"--format must be one of {', '.join(WRITERS)}, not {fmt!r}")
    if column not in COLUMNS:
        raise FeatxError(f"--column must be one of {', '.join(COLUMNS)}, not {column!r}")
    if dtype is not None and dtype not in DTYPES:
        raise FeatxError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if fmt == "hdf5":
        require_h5py()


def _sidecar(tmp: Path, root, config, fmt: str, column: str, dtype: str, videos: dict) -> dict:
    """DIR/featx_export.json: what was exported, from which store and config, and each video's time grid."""
    return {
        "format_version": SIDECAR_VERSION,
        "format": fmt,
        "column": column,
        "dtype": dtype,
        "feature_dim": config.feature_dim,
        "times": TIMES,
        "hdf5_file": HDF5_FILE if fmt == "hdf5" else None,
        "hdf5_sha256": file_sha256(tmp / HDF5_FILE) if fmt == "hdf5" else None,
        "store": str(root),
        "config": config.to_dict(),
        **tool_settings(videos, config.feature_dim, WRITERS[fmt].ext),
        "videos": videos,
    }


def _write_tool_config(tmp: Path, out: Path, tool: str, sidecar: dict, annotations: dict, splits) -> None:
    """OUT/<tool>.yaml (JSON is YAML: every YAML reader loads it) and, for OpenTAD, its class map."""
    found = {v["subset"] for v in annotations["database"].values()}
    missing = [s for s in splits if s not in found]
    if missing:
        raise FeatxError(f"--for {tool}: no exported video is in subset {missing[0]!r} (subsets here: {', '.join(sorted(found))})")
    fragment = tool_configs.fragment(tool, out, sidecar, annotations, splits)
    header = f"# featx export --for {tool}: merge into the tool's config (docs/interop.md)\n"
    (tmp / f"{tool}.yaml").write_text(header + json.dumps(fragment, indent=1) + "\n")
    if tool == "opentad":
        (tmp / tool_configs.CLASS_MAP).write_text("\n".join(tool_configs.class_map_lines(annotations)) + "\n")


def _write_all(root, folder: Path, fmt: str, column: str, dtype: str, config, ok, progress: bool) -> dict[str, dict]:
    """Write every video's array and its times; returns the sidecar's `videos` entries."""
    from featx.progress import progress as progress_bar

    writer = WRITERS[fmt](folder, config.feature_dim, config.to_json())
    times_writer = pq.ParquetWriter(folder / TIMES, TIMES_SCHEMA)
    videos: dict[str, dict] = {}
    records = ok.set_index("video_id")
    bar = progress_bar(total=len(ok), unit="video", desc=f"export {fmt}", enabled=progress)
    try:
        for chunk in _chunks(ok, config.feature_dim * np.dtype(config.dtype).itemsize):
            seqs = load_sequences(root, chunk, column)
            rows = load_features(root, columns=TIME_COLUMNS, video_ids=chunk).sort_values(["video_id", "step"])
            times_writer.write_table(pa.Table.from_pandas(rows, schema=TIMES_SCHEMA, preserve_index=False))
            for vid, group in rows.groupby("video_id", sort=True):
                times = {k: group[k].to_numpy() for k in TIME_COLUMNS[2:]}
                entry = _video_entry(records.loc[vid], config.fps, times)
                name = writer.write(vid, seqs[vid].astype(dtype, copy=False), entry, times)
                digest = {} if fmt == "hdf5" else {"sha256": file_sha256(folder / name)}  # import checks it
                videos[vid] = {"file": name, **digest, **entry}
                bar.update()
    finally:
        bar.close()
        times_writer.close()
        writer.close()
    return videos


def _chunks(ok, row_bytes: int):
    """Video ids in groups of at most CHUNK_BYTES of features (a longer video is a group of its own)."""
    chunk, size = [], 0
    for vid, rows in zip(ok["video_id"], ok["rows"]):
        if chunk and size + rows * row_bytes > CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(vid)
        size += rows * row_bytes
    if chunk:
        yield chunk


def _video_entry(record, fps: float | None, times: dict) -> dict:
    """A video's sidecar entry: its manifest facts and its time grid."""
    source_fps = _number(record["fps"])
    grid = tool_grid(times["t_start"], times["t_end"], times["frame_start"], times["frame_end"], fps or source_fps)
    return {
        "rows": len(times["t_start"]),
        "path": record["path"],
        "source_fps": source_fps,
        "fps": fps,  # the sampling rate (None: every frame was kept)
        "frames": _number(record["frames"], int),
        "duration": _number(record["duration"]),
        "width": _number(record["width"], int),
        "height": _number(record["height"], int),
        **grid,
    }


def _number(value, kind=float):
    """A manifest value for JSON: None when missing (null, NaN), else `kind` (float or int)."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return None
    return kind(value)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")




def _check_out(out: Path, overwrite: bool) -> None:
    refuse_output_in_store(out)
    if out.exists() and not out.is_dir():
        raise FeatxError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FeatxError(f"--out {out} is not empty; choose a new folder, or --overwrite to replace an earlier export there")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Replace `out` by the finished export: one rename when `out` is new or empty; else the files of an earlier
    export there are removed and the new ones moved in, the sidecar last. A file of the user's (not listed by an
    earlier export's sidecar) that the export would replace is refused before anything is touched."""
    files = sorted(p for p in tmp.rglob("*") if p.is_file() and p.name != SIDECAR) + [tmp / SIDECAR]
    earlier = set(_earlier_export_files(out))
    clash = [p.relative_to(tmp).as_posix() for p in files
             if (out / p.relative_to(tmp)).exists() and p.relative_to(tmp).as_posix() not in earlier]
    if clash:
        raise FeatxError(f"--out {out}: {clash[0]} is not from an earlier featx export and would be replaced; "
                         "move it away or choose a new folder")
    outside = [p.relative_to(tmp).as_posix() for p in files if file_inside(out, p.relative_to(tmp).as_posix()) is None]
    if outside:  # a symbolic link inside --out leads elsewhere: nothing is written through it
        raise FeatxError(f"--out {out}: {outside[0]} would be written outside {out} (through a symbolic link); "
                         "remove the link or choose a new folder")
    with held_interrupts():  # the earlier export or the new one, never half of each
        _remove_earlier_export(out)
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if not out.exists():
            os.replace(tmp, out)
            return
        for path in files:
            target = out / path.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    shutil.rmtree(tmp)


def _earlier_export_files(out: Path) -> list[str]:
    """The files an earlier export in `out` wrote, by its sidecar (none without one)."""
    try:
        earlier = json.loads((out / SIDECAR).read_text())
    except (OSError, ValueError):
        return []
    videos = earlier.get("videos") if isinstance(earlier, dict) else None
    names = [v.get("file") for v in videos.values() if isinstance(v, dict)] if isinstance(videos, dict) else []
    if earlier.get("format") == "hdf5":
        names = []
    tools = [f"{tool}.yaml" for tool in tool_configs.TOOLS] + [tool_configs.CLASS_MAP]
    # only names that stay inside `out`: an edited sidecar must never make --overwrite delete anything else
    return [n for n in [*names, HDF5_FILE, TIMES, ANNOTATIONS, *tools, SIDECAR] if file_inside(out, n) is not None]


def _remove_earlier_export(out: Path) -> None:
    for name in _earlier_export_files(out):
        target = file_inside(out, name)
        if target is not None and not target.is_symlink() and target.is_file():
            target.unlink()
