"""Temporal annotations of untrimmed videos: ActivityNet JSON or CSV in, per-step targets out.

ActivityNet JSON: {"database": {video_id: {"subset": "training" | "validation" | "testing", "duration": s,
"annotations": [{"segment": [start, end], "label": name}, ...]}}, ...}.
CSV: columns video_id,start,end,label (optional: subset, duration); one row per segment.

Every problem is one FeatxError line naming the file and the entry.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featx.errors import FeatxError

BACKGROUND = "background"  # class 0 of every per-step target


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    label: str


@dataclass
class VideoAnnotation:
    subset: str | None  # "training", "validation", "testing" (None when the file does not say)
    duration: float | None  # seconds (None when the file does not say)
    segments: list[Segment] = field(default_factory=list)


@dataclass
class Annotations:
    source: str  # the file, for messages
    videos: dict[str, VideoAnnotation]

    @property
    def classes(self) -> list[str]:
        """Action classes, sorted; class index k + 1 in per-step targets (0 is background)."""
        return sorted({s.label for v in self.videos.values() for s in v.segments})

    def subset(self, name: str | None) -> list[str]:
        """Video ids of a subset (all when name is None)."""
        return [vid for vid, v in self.videos.items() if name is None or v.subset == name]


def load_annotations(path: str | Path) -> Annotations:
    path = Path(path)
    if not path.is_file():
        raise FeatxError(f"{path}: no such annotations file")
    if path.suffix.lower() == ".json":
        return _from_json(path)
    if path.suffix.lower() == ".csv":
        return _from_csv(path)
    raise FeatxError(f"{path}: annotations must be ActivityNet .json or .csv (video_id,start,end,label)")


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
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FeatxError(f"{path}: not valid JSON ({exc})") from None
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise FeatxError(f"{path}: no 'database' object (ActivityNet format: database -> video_id -> annotations)")
    videos = {}
    for vid, entry in database.items():
        where = f"{path}: database[{vid!r}]"
        if not isinstance(entry, dict):
            raise FeatxError(f"{where}: must be an object")
        duration = _duration(where, entry.get("duration"))
        segments = []
        listed = entry.get("annotations")
        if listed is None:  # a video with nothing annotated may say null
            listed = []
        if not isinstance(listed, list):
            raise FeatxError(f"{where}: annotations must be a list, not {type(listed).__name__}")
        for k, anno in enumerate(listed):
            seg = anno.get("segment") if isinstance(anno, dict) else None
            if not isinstance(seg, list) or len(seg) != 2:
                raise FeatxError(f"{where}.annotations[{k}]: 'segment' must be [start, end]")
            segments.append(_segment(f"{where}.annotations[{k}]", seg[0], seg[1], anno.get("label"), duration))
        videos[str(vid)] = VideoAnnotation(_subset(where, entry.get("subset")), duration, segments)
    return Annotations(str(path), videos)


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
        raise FeatxError(f"{path}: missing columns {sorted(missing)} (need video_id,start,end,label)")
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
