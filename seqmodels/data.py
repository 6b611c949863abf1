"""Labelled sequences for classification: a featx store plus a labels CSV (`video_id,label[,split]`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from featx.errors import FeatxError
from featx.store import Store

TRAIN_SPLITS = frozenset({"train", "training"})
MISSING = frozenset({"", "nan", "na", "n/a", "null", "none"})  # labels that mean "no label" (spreadsheet exports)
VAL_SPLITS = frozenset({"val", "valid", "validation", "test", "testing"})


@dataclass
class SequenceSet:
    """Videos as variable-length feature sequences with integer labels (-1: unlabelled)."""

    ids: list[str]
    sequences: list[np.ndarray]  # each (T_i, D)
    labels: np.ndarray  # (N,) int64 index into `classes`

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index) -> "SequenceSet":
        return SequenceSet([self.ids[i] for i in index], [self.sequences[i] for i in index], self.labels[index])

    def columns(self, cols: slice) -> "SequenceSet":
        """The same videos with only these feature columns (one stream of several; views, no copies)."""
        return SequenceSet(self.ids, [s[:, cols] for s in self.sequences], self.labels)


def read_label_csv(path: str | Path) -> pd.DataFrame:
    """A labels CSV as strings (empty cells stay ""); one-line errors for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FeatxError(f"--labels {path}: no such file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise FeatxError(f"--labels {path}: not a readable CSV ({exc})") from None
    return table


LABEL_FORMATS = ("a CSV video_id,label[,split], a Kinetics CSV label,youtube_id,time_start,time_end,split, "
                 "a UCF101 ucfTrainTestlist folder (or its trainlistNN.txt) or an HMDB51 split folder (or one of its "
                 "<class>_test_splitN.txt)")
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
UCF_LIST = re.compile(r"^(train|test)list(\d+)\.txt$", re.IGNORECASE)
HMDB_LIST = re.compile(r"^(?P<label>.+)_test_split(?P<split>\d+)\.txt$", re.IGNORECASE)


def read_labels(path: str | Path) -> pd.DataFrame:
    """Classification labels as a table `video_id`, `label`, optional `split` (train / val), from any of
    LABEL_FORMATS, told apart by the path and the CSV header (docs/formats.md); one-line errors when malformed.
    Ids are those of videos laid out as each dataset ships them; `match_store_ids` maps them onto a store's."""
    path = Path(path)
    if path.is_dir():
        if (path / "classInd.txt").is_file():
            table = read_ucf101(path)
        elif any(HMDB_LIST.match(p.name) for p in path.iterdir()):
            table = read_hmdb51(path)
        else:
            raise FeatxError(f"--labels {path}: a folder must be UCF101's ucfTrainTestlist (classInd.txt, "
                             "trainlist01.txt, testlist01.txt) or HMDB51's splits (<class>_test_split1.txt)")
    elif path.suffix.lower() == ".txt" and UCF_LIST.match(path.name):
        table = read_ucf101(path.parent, int(UCF_LIST.match(path.name)[2]))
    elif path.suffix.lower() == ".txt" and HMDB_LIST.match(path.name):
        table = read_hmdb51(path.parent, int(HMDB_LIST.match(path.name)["split"]))
    else:
        table = read_label_csv(path)
        table = read_kinetics(path, table) if {"youtube_id", "time_start"} <= set(table.columns) else table
    return _checked(path, table)


def _checked(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    missing = {"video_id", "label"} - set(table.columns)
    if missing:
        raise FeatxError(f"--labels {path}: needs columns video_id,label[,split]; missing {sorted(missing)} "
                         f"(labels must be {LABEL_FORMATS})")
    table["video_id"], table["label"] = table.video_id.str.strip(), table.label.str.strip()
    empty = table.index[(table.video_id == "") | table.label.str.lower().isin(MISSING)]
    if len(empty):
        row = table.loc[empty[0]]
        raise FeatxError(f"--labels {path}: line {empty[0] + 2} has no video_id or label ({row.video_id!r}, {row.label!r})")
    dup = table.video_id[table.video_id.duplicated()]
    if len(dup):
        raise FeatxError(f"--labels {path}: video_id {dup.iloc[0]!r} appears more than once")
    if "split" in table.columns:
        bad = sorted(set(table.split.str.lower()) - TRAIN_SPLITS - VAL_SPLITS)
        if bad:
            raise FeatxError(f"--labels {path}: unknown split values {bad[:3]} (use train / val)")
    return table


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of the non-blank lines (the published lists end in CRLF)."""
    if not path.is_file():
        raise FeatxError(f"--labels {path}: no such file")
    return [(n, line.split()) for n, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]


def read_ucf101(folder: str | Path, split: int = 1) -> pd.DataFrame:
    """UCF101's ucfTrainTestlist: classInd.txt (`1 ApplyEyeMakeup`), trainlistNN.txt (`Class/v_..._g08_c01.avi 1`)
    and testlistNN.txt (`Class/v_..._g01_c01.avi`). Ids are the listed paths without suffix, as featx names the
    videos of the extracted UCF-101/ folder; the label is the class folder, spelled as in classInd.txt."""
    folder = Path(folder)
    names = {}
    for n, fields in _lines(folder / "classInd.txt"):
        if len(fields) != 2:
            raise FeatxError(f"--labels {folder / 'classInd.txt'}: line {n} must be `index ClassName`, not {' '.join(fields)!r}")
        names[fields[1].lower()] = (fields[0], fields[1])
    rows = []
    for kind, split_name in (("train", "train"), ("test", "val")):
        listed = folder / f"{kind}list{split:02d}.txt"
        for n, fields in _lines(listed):
            where = f"--labels {listed}: line {n}"
            video = fields[0].replace("\\", "/")
            known = names.get(video.split("/")[0].lower()) if "/" in video else None
            if known is None or len(fields) > 2 or (len(fields) == 2 and fields[1] != known[0]):
                raise FeatxError(f"{where}: expected `ClassName/v_ClassName_gNN_cNN.avi [index]` with the class and "
                                 f"index of classInd.txt (UCF101), not {' '.join(fields)!r}")
            rows.append((str(PurePosixPath(video).with_suffix("")), known[1], split_name))
    return pd.DataFrame(rows, columns=["video_id", "label", "split"])


def read_hmdb51(folder: str | Path, split: int = 1) -> pd.DataFrame:
    """HMDB51's test/train splits: <class>_test_splitN.txt, lines `video.avi 1` (1 train, 2 test, 0 unused: left
    out). Ids are `<class>/<video>` without suffix, as featx names the videos of the extracted class folders."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if (m := HMDB_LIST.match(p.name)) and int(m["split"]) == split)
    if not files:
        raise FeatxError(f"--labels {folder}: no HMDB51 split files <class>_test_split{split}.txt in this folder")
    rows = []
    for listed in files:
        label = HMDB_LIST.match(listed.name)["label"]
        for n, fields in _lines(listed):
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise FeatxError(f"--labels {listed}: line {n} must be `video.avi 0|1|2` (HMDB51), not {' '.join(fields)!r}")
            if fields[1] != "0":
                rows.append((f"{label}/{Path(fields[0]).stem}", label, "train" if fields[1] == "1" else "val"))
    return pd.DataFrame(rows, columns=["video_id", "label", "split"])


def kinetics_id(youtube_id: str, time_start: int, time_end: int) -> str:
    """A Kinetics clip's file name without suffix, as the ActivityNet crawler (Crawler/Kinetics/download.py) and
    the CVDF archives name it: `<youtube_id>_<start:06d>_<end:06d>`."""
    return f"{youtube_id}_{time_start:06d}_{time_end:06d}"


def read_kinetics(path: str | Path, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """A Kinetics CSV (label,youtube_id,time_start,time_end,split): ids by `kinetics_id`, splits as published
    (train, val, test: featx trains on train and validates on the others)."""
    table = read_label_csv(path) if table is None else table
    missing = [c for c in KINETICS_COLUMNS if c not in table.columns]
    if missing:
        raise FeatxError(f"--labels {path}: a Kinetics CSV needs columns label,youtube_id,time_start,time_end[,split]; "
                         f"missing {missing}")
    ids = []
    for row, rec in enumerate(table.to_dict("records"), start=2):
        try:
            ids.append(kinetics_id(rec["youtube_id"].strip(), int(float(rec["time_start"])), int(float(rec["time_end"]))))
        except ValueError:
            raise FeatxError(f"--labels {path}: line {row}: time_start and time_end must be whole seconds, "
                             f"not {rec['time_start']!r}, {rec['time_end']!r}") from None
    out = pd.DataFrame({"video_id": ids, "label": table.label})
    if "split" in table.columns:
        out["split"] = table.split.str.strip().str.lower()
    return out


KINETICS_NAME = re.compile(r"^(?P<youtube_id>.+)_\d{6}_\d{6}$")


def match_store_ids(labels: pd.DataFrame, store_ids) -> pd.DataFrame:
    """`labels` with each video_id replaced by the store's id of the same video, for stores whose folder layout
    differs from the dataset's: an id matches itself, else a store id with the same last path component
    (`v_ApplyEyeMakeup_g08_c01` for `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01`, `train/abseiling/x_000010_000020`
    for `x_000010_000020`), else, for a Kinetics id, a store id named by its YouTube id alone. Ids that match
    nothing are kept as they are (load_labelled reports them); a name two store videos share is an error."""
    store_ids = list(store_ids)
    exact = set(store_ids)
    by_name: dict[str, list[str]] = {}
    for sid in store_ids:
        by_name.setdefault(sid.rsplit("/", 1)[-1], []).append(sid)
    mapped = []
    for vid in labels.video_id:
        name = vid.rsplit("/", 1)[-1]
        kinetics = KINETICS_NAME.match(name)
        found = [vid] if vid in exact else by_name.get(name) or (by_name.get(kinetics["youtube_id"]) if kinetics else None)
        if found and len(found) > 1:
            raise FeatxError(f"labels' video {vid!r} matches several store videos ({', '.join(sorted(found)[:3])}); "
                             "give the store's ids in a video_id,label CSV")
        mapped.append(found[0] if found else vid)
    return labels.assign(video_id=mapped)


def _first(ids, n: int = 5) -> str:
    ids = sorted(ids)
    return ", ".join(map(repr, ids[:n])) + (f" and {len(ids) - n} more" if len(ids) > n else "")


def uniform_steps(length: int, max_steps: int | None) -> np.ndarray:
    """Indices of at most `max_steps` steps spread uniformly over a sequence of `length` (centre of each bin)."""
    if max_steps is None or length <= max_steps:
        return np.arange(length)
    return np.floor((np.arange(max_steps) + 0.5) * length / max_steps).astype(np.int64)


def finite_sequences(store: Store, video_ids=None, columns=("feature",)) -> dict[str, np.ndarray]:
    """load_sequences for training and prediction, of one column or several concatenated per step (RGB and
    flow: (T, 2D), seqmodels.streams). Features that are not finite (NaN or inf: a part damaged before stores
    had checksums, or a backbone that overflowed in float16) are one error line, never a head that trains to a
    loss of nan."""
    parts = [store.sequences(video_ids, column=c) for c in columns]
    seqs = parts[0] if len(parts) == 1 else {v: np.concatenate([p[v] for p in parts], axis=1) for v in parts[0]}
    bad = [vid for vid, x in seqs.items() if not np.isfinite(x).all()]
    if bad:
        raise FeatxError(
            f"{store}: features of {len(bad)} video(s) are not finite (NaN or inf): {_first(bad, 3)}; "
            f"`featx info --verify {store}` checks the parts"
        )
    return seqs


def load_labelled(
    store: Store, labels: pd.DataFrame, classes: list[str] | None = None, ignore_missing: bool = False,
    max_steps: int | None = None, columns=("feature",),
) -> tuple[SequenceSet, list[str], pd.Series | None]:
    """Sequences of the labelled videos in `store` (its `columns`, concatenated per step). Returns (set,
    classes, split column or None).

    Labels naming videos absent from the store, and store videos without a label, are errors unless
    `ignore_missing` (then both are left out). `classes` fixes the label order (from a checkpoint)."""
    seqs = finite_sequences(store, columns=columns)
    in_store, labelled = set(seqs), set(labels.video_id)
    if not ignore_missing:
        if labelled - in_store:
            raise FeatxError(f"labels name videos that are not in the store: {_first(labelled - in_store)} (or --ignore-missing)")
        if in_store - labelled:
            raise FeatxError(f"store videos without a label: {_first(in_store - labelled)} (or --ignore-missing)")
    labels = labels[labels.video_id.isin(in_store)].reset_index(drop=True)
    if labels.empty:
        raise FeatxError("no labelled video is in the store: do the labels' video_id values match the store's?")
    classes = classes or sorted(labels.label.unique())
    index = {c: i for i, c in enumerate(classes)}
    unknown = set(labels.label) - set(index)
    if unknown:
        raise FeatxError(f"labels {_first(unknown)} are not among the model's classes {classes}")
    ids = labels.video_id.tolist()
    sequences = [seqs[v][uniform_steps(len(seqs[v]), max_steps)] for v in ids]
    y = np.array([index[c] for c in labels.label], dtype=np.int64)
    split = labels.split.str.lower() if "split" in labels.columns else None
    return SequenceSet(ids, sequences, y), classes, split


def train_val_split(
    data: SequenceSet, split: pd.Series | None, val_fraction: float = 0.2, seed: int = 0
) -> tuple[SequenceSet, SequenceSet]:
    """By the labels' split column when present, else a stratified random split with `seed`."""
    if split is not None:
        train = np.flatnonzero(split.isin(TRAIN_SPLITS).to_numpy())
        val = np.flatnonzero(split.isin(VAL_SPLITS).to_numpy())
    else:
        from sklearn.model_selection import train_test_split

        if not 0 < val_fraction < 1:
            raise FeatxError(f"--val-fraction must be between 0 and 1, not {val_fraction}")
        n = len(data)
        if n < 2:
            raise FeatxError(f"need at least 2 videos to split into training and validation, not {n}")
        n_val = min(max(1, round(val_fraction * n)), n - 1)  # at least one video on each side
        counts = np.bincount(data.labels)
        classes = int((counts > 0).sum())
        # stratified when every class can appear on both sides; else a plain random split of the same sizes
        can_stratify = counts[counts > 0].min() >= 2 and min(n_val, n - n_val) >= classes
        train, val = train_test_split(
            np.arange(n), test_size=n_val, random_state=seed, stratify=data.labels if can_stratify else None
        )
    if len(train) == 0 or len(val) == 0:
        raise FeatxError(f"need both training and validation videos; got {len(train)} and {len(val)}")
    return data.subset(np.sort(train)), data.subset(np.sort(val))


def pad(sequences: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: x (B, T, D) float32 and mask (B, T) bool, True on real steps."""
    longest = max(len(s) for s in sequences)
    dim = sequences[0].shape[1]
    x = torch.zeros(len(sequences), longest, dim)
    mask = torch.zeros(len(sequences), longest, dtype=torch.bool)
    for i, s in enumerate(sequences):
        x[i, : len(s)] = torch.as_tensor(np.asarray(s, dtype=np.float32))  # copies; read-only arrays welcome
        mask[i, : len(s)] = True
    return x, mask


def batches(
    data: SequenceSet, batch_size: int, shuffle: bool = False, generator: np.random.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]]:
    """(x (B, T, D), mask (B, T), labels (B,), positions in `data`) batches."""
    order = generator.permutation(len(data)) if shuffle else np.arange(len(data))
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size].tolist()
        x, mask = pad([data.sequences[i] for i in idx])
        yield x, mask, torch.from_numpy(data.labels[idx]), idx
