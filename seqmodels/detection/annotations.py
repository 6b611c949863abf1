"""Temporal annotations of untrimmed videos, read as the datasets publish them; per-step targets out.

`load_annotations` tells the format from the path (docs/formats.md has each layout and an example):
- ActivityNet 1.3 JSON: {"database": {video_id: {"subset": "training" | "validation" | "testing", "duration": s,
  "annotations": [{"segment": [start, end], "label": name}, ...]}}, ...}.
- ActionFormer's JSON (its thumos14.json, ...): the same, plus per video "fps" and per segment "label_id" and
  "segment(frames)"; subsets capitalised ("Validation", "Test").
- THUMOS14's text files: a folder of <Class>_val.txt / <Class>_test.txt, lines `video start end`;
  Ambiguous_*.txt are ignore regions, not a class.
- Charades_v1_{train,test}.csv: id,...,actions,length with actions `c092 11.90 21.20;c147 0.00 12.60`.
- featx CSV: columns video_id,start,end,label (optional: subset, duration); one row per segment.

Every problem is one FeatxError line naming the file and the entry.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featx.errors import FeatxError
from seqmodels.detection.map import Detection

BACKGROUND = "background"  # class 0 of every per-step target


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    label: str


AMBIGUOUS = "Ambiguous"  # THUMOS14's label for stretches the annotators could not decide: ignore regions


@dataclass
class VideoAnnotation:
    subset: str | None  # "training", "validation", "testing" (None when the file does not say)
    duration: float | None  # seconds (None when the file does not say)
    segments: list[Segment] = field(default_factory=list)
    fps: float | None = None  # the source video's frame rate when the file gives it (ActionFormer JSON)
    ignore: list[Segment] = field(default_factory=list)  # regions scored as neither hit nor miss (THUMOS Ambiguous)


@dataclass
class Annotations:
    source: str  # the file, for messages
    videos: dict[str, VideoAnnotation]
    format: str = "featx CSV"  # the format it was read as, for messages and docs/formats.md
    notes: list[str] = field(default_factory=list)  # what reading changed (clipped / dropped segments), to print

    @property
    def classes(self) -> list[str]:
        """Action classes, sorted; class index k + 1 in per-step targets (0 is background)."""
        return sorted({s.label for v in self.videos.values() for s in v.segments})

    def subset(self, name: str | None) -> list[str]:
        """Video ids of a subset (all when name is None)."""
        return [vid for vid, v in self.videos.items() if name is None or v.subset == name]

    def ignore_regions(self, ids=None) -> list[Detection]:
        """The ignore regions (THUMOS14 Ambiguous) of these videos (all when ids is None), as the `ignore`
        argument of `detection_map` takes them."""
        ids = self.videos if ids is None else ids
        return [Detection(v, s.start, s.end, s.label) for v in ids for s in self.videos[v].ignore]


FORMATS = ("ActivityNet JSON, ActionFormer JSON, a THUMOS14 folder of <Class>_val.txt / <Class>_test.txt, "
           "Charades_v1_*.csv or featx CSV (video_id,start,end,label)")


def load_annotations(path: str | Path) -> Annotations:
    """Annotations in any format of the module docstring, told apart by the path (folder, .json, .csv) and
    then by the content (ActionFormer's extra keys, Charades' columns)."""
    path = Path(path)
    if path.is_dir():
        return _from_thumos_folder(path)
    if not path.is_file():
        raise FeatxError(f"{path}: no such annotations file or folder")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(path)
    if suffix == ".csv":
        return _from_charades(path) if _is_charades(path) else _from_csv(path)
    if suffix == ".txt" and THUMOS_FILE.match(path.name):
        raise FeatxError(f"{path}: one THUMOS14 class file; pass the folder that holds all <Class>_val.txt / _test.txt files")
    raise FeatxError(f"{path}: annotations must be {FORMATS}")


def _segment(where: str, start, end, label, duration: float | None) -> Segment:
    try:
        start, end = float(start), float(end)
    except (TypeError, ValueError):
        raise FeatxError(f"{where}: start and end must be numbers, not {start!r}, {end!r}") from None
    if not isinstance(label, str) or not label.strip():
        raise FeatxError(f"{where}: empty label")
    if not (np.isfinite(start) and np.isfinite(end)) or start < 0:
        raise FeatxError(f"{where}: segment [{start}, {end}] must be finite and start at 0 or later")
    if start >= end:
        raise FeatxError(f"{where}: start {start} >= end {end}")
    if duration is not None and end > duration + 1e-6:
        raise FeatxError(f"{where}: segment [{start}, {end}] ends after the video's duration {duration}")
    return Segment(start, end, label.strip())


SUBSETS = {"train": "training", "training": "training", "val": "validation", "valid": "validation",
           "validation": "validation", "test": "testing", "testing": "testing"}


def _subset(where: str, value) -> str | None:
    """A subset name, case and spacing ignored ('Training' -> 'training', 'val' -> 'validation')."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    name = SUBSETS.get(str(value).strip().lower())
    if name is None:
        raise FeatxError(f"{where}: subset must be training, validation or testing, not {value!r}")
    return name


def _from_json(path: Path) -> Annotations:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FeatxError(f"{path}: not valid JSON ({exc})") from None
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise FeatxError(f"{path}: not ActivityNet / ActionFormer JSON: no 'database' object (database -> video_id -> annotations)")
    result = Annotations(str(path), {}, "ActionFormer JSON" if _is_actionformer(database) else "ActivityNet JSON")
    lenient = result.format == "ActionFormer JSON"  # published files with a few segments past the duration
    for vid, entry in database.items():
        where = f"{path}: database[{vid!r}]"
        if not isinstance(entry, dict):
            raise FeatxError(f"{where}: must be an object")
        duration = _duration(where, entry.get("duration"))
        fps = _duration(f"{where}.fps", entry.get("fps"))  # same rules: a positive number or absent
        listed = entry.get("annotations")
        if listed is None:  # a video with nothing annotated may say null
            listed = []
        if not isinstance(listed, list):
            raise FeatxError(f"{where}: annotations must be a list, not {type(listed).__name__}")
        video = VideoAnnotation(_subset(where, entry.get("subset")), duration, fps=fps)
        for k, anno in enumerate(listed):
            seg = anno.get("segment") if isinstance(anno, dict) else None
            if not isinstance(seg, list) or len(seg) != 2:
                raise FeatxError(f"{where}.annotations[{k}]: 'segment' must be [start, end]")
            _add(result, video, f"{where}.annotations[{k}]", seg[0], seg[1], anno.get("label"), lenient)
        result.videos[str(vid)] = video
    return result


def _is_actionformer(database: dict) -> bool:
    """ActionFormer's JSON adds per-video fps and per-segment label_id / segment(frames) to ActivityNet's."""
    for entry in database.values():
        if isinstance(entry, dict):
            if "fps" in entry:
                return True
            annos = entry.get("annotations") or []
            if annos and isinstance(annos[0], dict) and ("label_id" in annos[0] or "segment(frames)" in annos[0]):
                return True
    return False


def _add(result: Annotations, video: VideoAnnotation, where: str, start, end, label, lenient: bool) -> None:
    """Append one segment to `video`. Lenient (published files that are read as they are): a segment past the
    duration is clipped to it and an empty one dropped, each recorded in `result.notes`; strict: an error."""
    if lenient:
        try:
            start, end = float(start), float(end)
        except (TypeError, ValueError):
            raise FeatxError(f"{where}: start and end must be numbers, not {start!r}, {end!r}") from None
        if video.duration is not None and end > video.duration + 1e-6:
            result.notes.append(f"{where}: segment [{start}, {end}] clipped to the duration {video.duration}")
            end = video.duration
        if np.isfinite(start) and np.isfinite(end) and end <= start:
            result.notes.append(f"{where}: empty segment [{start}, {end}] left out")
            return
    video.segments.append(_segment(where, start, end, label, video.duration))


def _duration(where: str, value) -> float | None:
    """A video's duration in seconds, or None when not given (null, empty, NaN)."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        duration = float(value)
    except (TypeError, ValueError):
        raise FeatxError(f"{where}: duration must be a number of seconds, not {value!r}") from None
    if not 0 < duration < math.inf:
        raise FeatxError(f"{where}: duration must be a positive number of seconds, not {value!r}")
    return duration


def _from_csv(path: Path) -> Annotations:
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"video_id": str, "label": str, "subset": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FeatxError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = {"video_id", "start", "end", "label"} - set(table.columns)
    if missing:
        raise FeatxError(f"{path}: missing columns {sorted(missing)} (featx CSV needs video_id,start,end,label; a Charades CSV id,...,actions,length)")
    videos: dict[str, VideoAnnotation] = {}
    for row, rec in enumerate(table.to_dict("records"), start=2):  # line numbers, after the header
        vid = str(rec["video_id"]).strip()
        where = f"{path}: line {row} ({vid})"
        if not vid:
            raise FeatxError(f"{where}: empty video_id")
        duration = _duration(where, rec.get("duration"))
        video = videos.setdefault(vid, VideoAnnotation(_subset(where, rec.get("subset")), duration))
        video.segments.append(_segment(where, rec["start"], rec["end"], rec["label"], duration))
    return Annotations(str(path), videos)


THUMOS_FILE = re.compile(r"^(?P<label>.+)_(?P<subset>val|test)\.txt$", re.IGNORECASE)


def _from_thumos_folder(folder: Path) -> Annotations:
    """THUMOS14's temporal annotations as published (TH14_Temporal_annotations_validation/annotation/ and the
    test set's): one file per class and subset, lines `video_id start end` in seconds. The folder is searched
    recursively, so the parent of the validation and test folders loads both."""
    files = sorted((p for p in folder.rglob("*.txt") if THUMOS_FILE.match(p.name)), key=lambda p: p.name)
    if not files:
        raise FeatxError(f"{folder}: not a THUMOS14 annotation folder: no <Class>_val.txt or <Class>_test.txt files in it")
    result = Annotations(str(folder), {}, "THUMOS14 text files")
    for path in files:
        match = THUMOS_FILE.match(path.name)
        label, subset = match["label"], "validation" if match["subset"].lower() == "val" else "testing"
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{path}: line {number}"
            if len(fields) != 3:
                raise FeatxError(f"{where}: expected `video_id start end` (THUMOS14), not {line.strip()!r}")
            vid = fields[0]
            video = result.videos.setdefault(vid, VideoAnnotation(subset, None))
            if video.subset != subset:
                raise FeatxError(f"{where}: video {vid!r} is in both the {video.subset} and the {subset} files")
            seg = _segment(where, fields[1], fields[2], label, None)
            (video.ignore if label.lower() == AMBIGUOUS.lower() else video.segments).append(seg)
    return result


CHARADES_COLUMNS = ("id", "actions", "length")


def _is_charades(path: Path) -> bool:
    with open(path, newline="", errors="replace") as fh:
        header = next(csv.reader(fh), [])
    return "actions" in [h.strip() for h in header]


def _from_charades(path: Path) -> Annotations:
    """Charades_v1_train.csv / _test.csv as published: one row per video, `actions` holds `class start end`
    triples separated by ';' (empty: nothing annotated), `length` the duration in seconds. The subset comes
    from the file name (train -> training, test -> testing)."""
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FeatxError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in CHARADES_COLUMNS if c not in table.columns]
    if missing:
        raise FeatxError(f"{path}: not a Charades CSV: missing columns {missing} (need id,...,actions,length)")
    named = re.search(r"(?:^|_)(train|test)(?:_|$)", path.stem.lower())
    subset = {"train": "training", "test": "testing"}[named[1]] if named else None
    result = Annotations(str(path), {}, "Charades CSV")
    for row, rec in enumerate(table.to_dict("records"), start=2):
        vid = rec["id"].strip()
        where = f"{path}: line {row} ({vid})"
        if not vid:
            raise FeatxError(f"{where}: empty id")
        video = VideoAnnotation(subset, _duration(where, rec["length"]))
        for action in filter(None, (a.strip() for a in rec["actions"].split(";"))):
            fields = action.split()
            if len(fields) != 3:
                raise FeatxError(f"{where}: action {action!r} must be `class start end` (Charades: c092 11.90 21.20)")
            _add(result, video, where, fields[1], fields[2], fields[0], lenient=True)
        if vid in result.videos:
            raise FeatxError(f"{where}: video {vid!r} appears more than once")
        result.videos[vid] = video
    return result


def check_videos(annotations: Annotations, store_ids: set[str], ignore_missing: bool = False) -> list[str]:
    """The annotated videos present in the store. An annotated video missing from the store is an error naming
    it (unless ignore_missing); store videos without annotations are simply not used."""
    missing = [vid for vid in annotations.videos if vid not in store_ids]
    if missing and not ignore_missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise FeatxError(
            f"{annotations.source}: video {missing[0]!r} is not in the store ({', '.join(missing[1:3])}{more} neither)"
            if len(missing) > 1 else f"{annotations.source}: video {missing[0]!r} is not in the store"
        )
    return [vid for vid in annotations.videos if vid in store_ids]


def step_targets(t_start: np.ndarray, t_end: np.ndarray, segments: list[Segment], classes: list[str]) -> np.ndarray:
    """(T,) int64 class per step: 0 background, k + 1 for classes[k]. A step takes an action's label when at
    least half of the step lies inside one of its segments (Montes et al.: 8 of 16 frames); when several
    segments qualify, the one covering more of the step wins."""
    index = {c: k + 1 for k, c in enumerate(classes)}
    length = np.maximum(t_end - t_start, 1e-9)
    best = np.zeros(len(t_start))
    target = np.zeros(len(t_start), np.int64)
    for seg in segments:
        cover = np.clip(np.minimum(t_end, seg.end) - np.maximum(t_start, seg.start), 0, None) / length
        take = (cover >= 0.5 - 1e-9) & (cover > best)
        target[take] = index[seg.label]
        best[take] = cover[take]
    return target
