"""Checking a store's parts against its manifest, and repairing what a check finds.

What can go wrong, and what is done about it:
- a part the manifest names is missing (deleted, lost in a copy): readers refuse the store; the next
  `featx extract` (or `featx info --repair`) records its videos as failed, so they are extracted again;
- a part cannot be read (truncated file, bad footer, a page whose checksum fails): the same, and the part
  is moved to `_damaged/` (never deleted: nothing is lost);
- a video written into two parts (two writers at once, in stores written before leases, or by hand):
  readers refuse the store; a repair keeps the copy the manifest names last and rewrites the other parts
  without it.
Cheap checks (the manifest, the files present, each part's footer) run on every open; `verify_store` reads
every page of every part.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from featx.errors import FeatxError
from featx.store import location
from featx.store.format import CONFIG_KEY, MANIFEST_DIR, MANIFEST_SCHEMA, PART_GLOB, PART_VIDEOS_KEY, manifest_table
from featx.store.manifest import (is_fragment, latest_manifest, latest_rows, read_config, read_manifest,
                                  readable_table, require_store)

DAMAGED_DIR = "_damaged"


@dataclass
class StoreProblems:
    """What a check found; empty when the store is sound."""

    missing: dict[str, list[str]] = field(default_factory=dict)  # part -> its videos (latest rows)
    damaged: dict[str, str] = field(default_factory=dict)  # part -> why it cannot be read
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # video_id -> the parts holding it
    stray: list[str] = field(default_factory=list)  # files featx did not write that pandas / DuckDB would read

    def __bool__(self) -> bool:
        return bool(self.missing or self.damaged or self.duplicates or self.stray)

    def lines(self) -> list[str]:
        out = [f"missing part {p} ({_some(v)})" for p, v in sorted(self.missing.items())]
        out += [f"damaged part {p} ({why})" for p, why in sorted(self.damaged.items())]
        out += [f"video {v!r} written twice ({', '.join(parts)})" for v, parts in sorted(self.duplicates.items())]
        out += [f"{name} is not featx's: pandas.read_parquet(store) and DuckDB's store/*.parquet would read it as "
                f"rows; move it out of the store (or --repair moves it to {DAMAGED_DIR}/)" for name in self.stray]
        return out

    def summary(self) -> str:
        """One line naming every kind of problem (the first few of each)."""
        pieces = []
        if self.missing:
            pieces.append(f"{len(self.missing)} missing part(s): {_some(sorted(self.missing))}")
        if self.damaged:
            first = sorted(self.damaged)[0]
            pieces.append(f"{len(self.damaged)} damaged part(s): {_some(sorted(self.damaged))} ({first}: "
                          f"{self.damaged[first][:160]})")
        if self.duplicates:
            pieces.append(f"{len(self.duplicates)} video(s) written twice: {_some(sorted(self.duplicates))}")
        if self.stray:
            pieces.append(f"{len(self.stray)} file(s) featx did not write, which pandas and DuckDB would read: "
                          f"{_some(self.stray)} (move them out of the store)")
        return "; ".join(pieces)


def _some(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _ok_rows(manifest):
    return manifest[(manifest["status"] == "ok") & manifest["part"].notna()]


def quick_check(root, manifest, read_footers: bool = False) -> StoreProblems:
    """Missing parts (named by a video's latest row in `manifest`, as read_manifest gives it), videos ok in
    two existing parts and, with read_footers, parts whose footer cannot be read or whose row count
    disagrees with the manifest."""
    present = {p.name: p for p in root.glob(PART_GLOB)}
    problems = StoreProblems()
    latest_ok = _ok_rows(latest_rows(manifest))
    for part, group in latest_ok.groupby("part"):
        if part not in present:
            problems.missing[part] = sorted(group["video_id"])
    held = _ok_rows(manifest)
    held = held[held["part"].isin(list(present))].drop_duplicates(["video_id", "part"])
    twice = held[held.duplicated("video_id", keep=False)]  # one pandas group per video cost 0.66 s at 10k videos
    for video, group in twice.groupby("video_id"):
        problems.duplicates[video] = sorted(group["part"])
    if read_footers:
        rows = held.groupby("part")["rows"].sum()
        configs: dict[str, bytes] = {}
        for name, path in present.items():
            try:
                footer = location.parquet_metadata(path)
            except (OSError, pa.ArrowException) as exc:
                problems.damaged[name] = _reason(exc)
                continue
            configs[name] = (footer.metadata or {}).get(CONFIG_KEY, b"")
            if name in rows.index and footer.num_rows != rows[name]:
                problems.damaged[name] = f"{footer.num_rows} rows, the manifest says {rows[name]}"
        problems.damaged.update(_foreign_parts(configs))
    return problems


def _foreign_parts(configs: dict[str, bytes]) -> dict[str, str]:
    """Parts whose extraction config differs from the store's (a part copied in from another store): the
    store's is the config most parts hold (ties: the oldest part's; part names start with their UTC time)."""
    from featx.config import ExtractConfig

    if len(set(configs.values())) <= 1:
        return {}
    counts: dict[bytes, int] = {}
    for name in sorted(configs):
        counts[configs[name]] = counts.get(configs[name], 0) + 1
    ours = max(counts, key=counts.get)  # the first of the most common, in part-name order
    try:
        store = ExtractConfig.from_json(ours.decode())
    except (ValueError, FeatxError):
        return {}
    foreign = {}
    for name, raw in configs.items():
        if raw == ours:
            continue
        try:
            diff = store.differences(ExtractConfig.from_json(raw.decode()))
        except (ValueError, FeatxError, UnicodeDecodeError):
            diff = ["no readable featx config"]
        if diff:
            foreign[name] = f"written with another extraction config ({'; '.join(diff)[:160]}): not this store's"
    return foreign


def _reason(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]


def verify_store(root, progress: bool = False) -> StoreProblems:
    """Every check, reading every page of every part (checksums verified where the part has them) and
    looking for repeated (video_id, step) rows."""
    from featx.progress import progress as progress_bar

    problems = quick_check(root, read_manifest(root), read_footers=True)
    problems.stray = stray_files(root)
    holders: dict[str, set[str]] = {}  # video_id -> the parts with rows of it
    parts = progress_bar(sorted(root.glob(PART_GLOB)), unit="part", desc="verify", enabled=progress)
    for path, table in _read_pages(parts, problems.damaged):
        keys = table.select(["video_id", "step"]).group_by(["video_id", "step"]).aggregate([([], "count_all")])
        for video in keys.filter(pc.greater(keys["count_all"], 1))["video_id"].unique().to_pylist():
            problems.duplicates[video] = [path.name]  # twice inside one part
        for video in table["video_id"].unique().to_pylist():
            holders.setdefault(video, set()).add(path.name)
    for video, parts in holders.items():
        if len(parts) > 1:
            problems.duplicates[video] = sorted(parts)
    return problems


def _read_pages(parts, damaged: dict[str, str]):
    """Yield (path, table) for each part not already in `damaged`, decoding every page and checking its CRC; a
    part that fails is added to `damaged` with the reason instead."""
    for path in parts:
        if path.name in damaged:
            continue
        try:
            table = location.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            damaged[path.name] = _reason(exc)
            continue
        yield path, table


def read_every_page(root, problems: StoreProblems) -> None:
    """Add to `problems.damaged` every part of `root` whose pages do not all decode with their checksums."""
    for _ in _read_pages(sorted(root.glob(PART_GLOB)), problems.damaged):
        pass


def stray_files(root) -> list[str]:
    """Entries of a local store's folder that featx did not write and that readers of the folder would take for
    data: pyarrow / pandas read every file and folder not starting with '_' or '.', DuckDB every *.parquet."""
    if location.is_remote(root):
        return []
    stray = [p.name for p in root.iterdir() if not p.name.startswith(("_", ".")) and not (p.is_file() and p.match(PART_GLOB))]
    fragments = root / MANIFEST_DIR  # featx's readers take every readable manifest table there for manifest rows
    for path in sorted(fragments.iterdir()) if fragments.is_dir() else []:
        if path.name.startswith("."):
            continue
        table = readable_table(path) if path.is_file() and path.suffix == ".parquet" else None
        if not is_fragment(table):
            stray.append(f"{MANIFEST_DIR}/{path.name}")
    return sorted(stray)


def repair_store(root, problems: StoreProblems) -> list[str]:
    """Set damaged parts aside, record the videos of missing and damaged parts as failed (so the next
    extraction redoes them), and remove every second copy of a video. Returns what was done, one line each.
    Only for a writer that holds the store's lease (featx.store.lease), or when no writer runs."""
    done = []
    lost: dict[str, str] = {}  # part -> why its videos are gone
    for part, why in problems.damaged.items():
        aside = root / DAMAGED_DIR
        aside.mkdir(exist_ok=True)
        os.replace(root / part, aside / part)
        lost[part] = f"part {part} was damaged ({why}); moved to {DAMAGED_DIR}/"
        done.append(f"moved damaged part {part} to {DAMAGED_DIR}/")
    for part in problems.missing:
        lost[part] = f"part {part} is missing"
    for name in problems.stray:
        aside = root / DAMAGED_DIR
        aside.mkdir(exist_ok=True)
        os.replace(root / name, aside / name.rsplit("/", 1)[-1])
        done.append(f"moved {name}, which featx did not write, to {DAMAGED_DIR}/")
    if lost:
        _record_lost(root, lost)
        done.append(f"recorded the videos of {len(lost)} lost part(s) as failed: the next extraction redoes them")
    if problems.duplicates:
        _drop_second_copies(root, problems.duplicates)
        done.append(f"removed second copies of {len(problems.duplicates)} video(s)")
    return done


def _record_lost(root, lost: dict[str, str]) -> None:

    latest = latest_manifest(root)
    rows = _ok_rows(latest)
    rows = rows[rows["part"].isin(list(lost))].copy()
    if rows.empty:
        return
    rows["error"] = rows["part"].map(lost)
    rows["status"], rows["rows"], rows["part"], rows["finished_at"] = "error", 0, None, time.time()
    rows = rows[MANIFEST_SCHEMA.names].astype(object)
    records = rows.where(rows.notna(), None).to_dict("records")  # NaN -> null
    config = read_config(root)
    name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}000000-check-{os.getpid()}-00000.parquet"
    location.write_atomic(manifest_table(records, config.to_json() if config else "{}"), root / MANIFEST_DIR / name)


def _drop_second_copies(root, duplicates: dict[str, list[str]]) -> None:
    """Keep each video in the part its latest manifest row names (else the newest part); rewrite the others
    without it: the part first (one rename), then its manifest fragment, so a stop between them is repaired
    by running again."""

    latest = latest_manifest(root).set_index("video_id")["part"]
    drop: dict[str, set[str]] = {}
    for video, parts in duplicates.items():
        keep = latest.get(video) if latest.get(video) in parts else max(parts)
        for part in parts:
            if part != keep:
                drop.setdefault(part, set()).add(video)
    for part, videos in drop.items():
        _rewrite_part(root, part, videos)


def _rewrite_part(root, part: str, videos: set[str]) -> None:

    path = root / part
    table = location.read_table(path)
    keep = table.filter(pc.invert(pc.is_in(table["video_id"], pa.array(sorted(videos)))))
    meta = dict(table.schema.metadata or {})
    records = [r for r in json.loads(meta.get(PART_VIDEOS_KEY, b"[]")) if r["video_id"] not in videos]
    meta[PART_VIDEOS_KEY] = json.dumps(records).encode()
    fragment = root / MANIFEST_DIR / part.removeprefix("part-")
    if keep.num_rows == 0:
        path.unlink()
    else:  # encoded as StoreWriter writes parts: dictionary for video_id only (featx.store, bench/read.py)
        location.write_atomic(keep.replace_schema_metadata(meta), path, use_dictionary=["video_id"])
    if fragment.exists():
        rows = location.read_table(fragment)
        stale = pc.and_(pc.is_in(rows["video_id"], pa.array(sorted(videos))), pc.equal(rows["part"], part))
        rest = rows.filter(pc.invert(pc.fill_null(stale, False)))
        if rest.num_rows == 0:
            fragment.unlink()
        else:
            location.write_atomic(rest, fragment)


def check_store(root, repair: bool = False, progress: bool = False) -> tuple[StoreProblems, list[str]]:
    """`featx info --verify / --repair`: every check (verify_store); with repair, under the store's writer
    lease, what repair_store does. Returns (problems found, repairs done)."""
    from featx.store.lease import WriterLease
    from featx.store.location import is_remote, store_path

    root = store_path(root)
    require_store(root)
    if not repair:
        return verify_store(root, progress), []
    if is_remote(root):
        raise FeatxError("--repair works on local stores only (object stores cannot rename or lock)")
    lease = WriterLease(root, None).acquire()
    try:
        problems = verify_store(root, progress)
        return problems, repair_store(root, problems)
    finally:
        lease.release()


def refuse_problems(root, problems: StoreProblems) -> None:
    """The one error line readers give for a store that needs repair."""
    if problems:
        raise FeatxError(
            f"{root}: {problems.summary()}; `featx info --repair {root}` sets damaged parts aside, removes second "
            "copies and marks lost videos failed, then `featx extract` with the same inputs and --out redoes them"
        )

