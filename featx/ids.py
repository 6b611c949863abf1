"""One rule for video ids, whatever they come from (folders, list files, HDF5 dataset names, imports, exports),
and one for file names read from featx's own metadata.

A video id is a relative POSIX path in canonical form: parts separated by single '/', none empty, none '.' or
'..', none starting with '.' (hidden files are never videos), no leading or trailing '/', no backslash or
control character, valid UTF-8. Canonical form is what makes ids safe as file names below an export folder and
distinct ids distinct files there: 'a/./b', 'a//b' and 'c/' would otherwise name the same files as 'a/b' and 'c'
or a hidden one.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from featx.errors import FeatxError


def id_problem(video_id: str) -> str | None:
    """Why `video_id` is not a valid id, or None when it is."""
    if not isinstance(video_id, str) or not video_id:
        return "it is empty"
    try:
        video_id.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8 (rename the file)"
    if any(ord(c) < 32 or c in "\\\x7f" for c in video_id):
        return "it holds a backslash or a control character"
    if video_id.startswith("/") or video_id.endswith("/"):
        return "it starts or ends with '/'"
    parts = video_id.split("/")
    if any(p == "" for p in parts):
        return "it holds '//'"
    if any(p in (".", "..") or p.startswith(".") for p in parts):
        return "a part of it is '.', '..' or starts with '.'"
    return None


def check_video_id(video_id: str, where: str = "video id") -> str:
    """`video_id` itself when valid (module docstring); else one FeatxError line naming `where`."""
    problem = id_problem(video_id)
    if problem:
        raise FeatxError(f"{where} {video_id!r} cannot be a video id: {problem}")
    return video_id


def file_inside(folder: Path, name) -> Path | None:
    """`folder / name` when `name` is a relative path that stays inside `folder` (symbolic links resolved), else
    None: names read from a file featx wrote once may since have been edited to point anywhere."""
    if not isinstance(name, str) or not name or PurePosixPath(name).is_absolute() or "\\" in name:
        return None
    if ".." in PurePosixPath(name).parts:
        return None
    target = folder / name
    try:
        if not target.resolve().is_relative_to(folder.resolve()):
            return None
    except (OSError, RuntimeError):
        return None
    return target
