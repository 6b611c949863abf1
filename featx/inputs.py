"""Turn the command line's INPUT arguments (files, folders, list files) into (path, video_id) pairs.

video_id is the path relative to its input root, without suffix, with '/' separators, so equal file
names in different folders never collide.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePath

from featx.errors import FeatxError
from featx.ids import check_video_id

VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .avi .mkv .webm .mpg .mpeg .ts .flv .wmv .ogv .3gp .y4m".split()
)
LIST_SUFFIXES = frozenset({".txt", ".csv", ".lst"})


@dataclass(frozen=True)
class VideoInput:
    path: Path  # absolute
    video_id: str


def _video_id(path: Path, root: Path | None) -> str:
    try:
        rel = PurePath(path).relative_to(root) if root is not None else PurePath(path.name)
    except ValueError:  # outside the root: keep the whole path, so ids stay unique
        rel = PurePath(*path.parts[1:])
    return rel.with_suffix("").as_posix()


def _scan_folder(folder: Path) -> list[VideoInput]:
    """Video files below `folder`, following symlinked sub-folders (each real folder once, so a link
    back up the tree cannot loop); hidden files and folders are skipped."""
    files, seen = [], set()
    for here, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(here) / n for n in names if not n.startswith(".") and Path(n).suffix.lower() in VIDEO_SUFFIXES]
    files = sorted(p for p in files if p.is_file() or p.is_symlink())  # a dangling link: a failed row, not silence
    return [VideoInput(p.resolve(), _video_id(p, folder)) for p in files]


def read_text(path: Path, what: str = "") -> str:
    """A text file the user gave, as UTF-8 (a byte-order mark is dropped); one error line when it is not."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeatxError(f"{what}{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                         "save it as UTF-8") from None


def _read_list(list_file: Path) -> list[VideoInput]:
    base = list_file.parent.resolve()
    text = read_text(list_file)
    if list_file.suffix.lower() == ".csv":
        try:
            reader = csv.DictReader(io.StringIO(text, newline=""))
            if "path" not in (reader.fieldnames or []):
                raise FeatxError(f"{list_file}: a CSV list needs a 'path' column (found {reader.fieldnames})")
            rows = [(r["path"].strip(), (r.get("video_id") or "").strip()) for r in reader if (r["path"] or "").strip()]
        except csv.Error as exc:
            raise FeatxError(f"{list_file}: not a readable CSV ({exc})") from None
    else:
        rows = [(line.strip(), "") for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    out = []
    for raw, given_id in rows:
        path = Path(raw).expanduser()
        named = Path(os.path.normpath(path if path.is_absolute() else base / path))  # as listed: links kept
        if given_id:
            check_video_id(given_id, f"{list_file}: video_id")
        out.append(VideoInput(named.resolve(), given_id or _video_id(named, base)))
    return out


def collect_inputs(items: list[str | Path]) -> list[VideoInput]:
    """Videos named by files, folders (searched recursively for video suffixes) and list files
    (.txt/.lst: one path per line; .csv: a `path` column, optional `video_id`). Paths inside list files
    that do not exist are kept: they become `error` rows, so a missing file is reported, not skipped."""
    videos: list[VideoInput] = []
    for item in items:
        if not str(item).strip():
            raise FeatxError("an input is an empty path: give a video file, a folder or a list file")
        path = _local_path(str(item))
        if path.is_dir():
            found = _scan_folder(path)
            if not found:
                raise FeatxError(f"{path}: no video files found (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
            videos += found
        elif not path.exists():
            raise FeatxError(f"{path}: no such file or folder")
        elif path.suffix.lower() in LIST_SUFFIXES:
            videos += _read_list(path)
        else:
            videos.append(VideoInput(path.resolve(), _video_id(path, None)))
    return _unique(videos)


def path_argument(value, what: str) -> Path:
    """A path given to the Python API (a str or an os.PathLike such as a featx.Store), or one error line naming
    what it was given instead (None, a number, bytes, a list...)."""
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes) and str(os.fspath(value)):
        return Path(os.fspath(value)) if not isinstance(value, Path) else value
    raise FeatxError(f"{what} must be a path (a str or pathlib.Path), not {value!r}")


def check_option_types(options: dict, kinds: dict, where: str) -> None:
    """Each option of the Python API has the type its CLI twin parses to: int, float (an int is one too),
    str, bool or a path; None means "not given" for every option. One error line naming the first that is not."""
    names = {int: "a whole number", float: "a number", str: "a string", bool: "True or False", Path: "a path"}
    for key, value in options.items():
        kind = kinds.get(key)
        if kind is None or value is None:
            continue
        ok = {int: isinstance(value, int) and not isinstance(value, bool),
              float: isinstance(value, (int, float)) and not isinstance(value, bool),
              str: isinstance(value, str), bool: isinstance(value, bool),
              Path: isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes)}[kind]
        if not ok:
            raise FeatxError(f"{where}: {key} must be {names[kind]}, not {value!r}")


def refuse_writing_over(out: str | Path, inputs, option: str = "--out") -> None:
    """Before any work: refuse an output file that is one of the command's input files (it would be replaced
    by what the command writes)."""
    target = Path(out).resolve()
    for given in inputs:
        if given is not None and Path(given).exists() and Path(given).resolve() == target:
            raise FeatxError(f"{option} {out} is also an input of this command ({given}); write to another file")


def _local_path(item: str) -> Path:
    """An input as a local path: `file:///abs/path` is one; any other URI is refused in one line."""
    scheme, sep, rest = item.partition("://")
    if not sep or "/" in scheme or not scheme.replace("+", "").isalnum():
        return Path(item).expanduser()
    if scheme.lower() == "file" and rest.startswith("/"):
        return Path(rest)
    if scheme.lower() == "file":
        raise FeatxError(f"{item}: a file:// URI takes an absolute path (file:///home/me/video.mp4); "
                         "or give the path itself")
    raise FeatxError(f"{item}: featx reads videos from local files, not {scheme}:// URIs; download the videos "
                     "first (a store can live at a URI: --out s3://bucket/store)")


def _unique(videos: list[VideoInput]) -> list[VideoInput]:
    """Drop repeats of the same video; refuse two different files that would share a video_id."""
    seen: dict[str, Path] = {}
    unique = []
    for v in videos:
        check_video_id(v.video_id, f"{v.path}: its video id")
        if v.video_id in seen:
            if seen[v.video_id] != v.path:
                raise FeatxError(
                    f"two inputs map to video_id {v.video_id!r}: {seen[v.video_id]} and {v.path}; "
                    "rename one, or give ids in a CSV list with a video_id column"
                )
            continue
        seen[v.video_id] = v.path
        unique.append(v)
    return unique
