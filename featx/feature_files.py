"""Reading one video's feature array made elsewhere, for `featx import`: .npy, .npz, .pt (a tensor, read with
`torch.load(weights_only=True)`), .h5 / .hdf5 and .csv (an optional header row, then one row per step), each
checked (2-d, rows, numbers, one feature size, finite values) with one error line naming the file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from featx.errors import FeatxError
from featx.export_formats import require_h5py


@dataclass(frozen=True)
class Source:
    """One video's array: a file, and the array inside it when the file holds several."""

    video_id: str
    path: Path
    member: str | None = None  # .h5 dataset, .npz / .pt key

    def __str__(self) -> str:
        return f"{self.path}[{self.member}]" if self.member else str(self.path)


def _pick(path: Path, names: list[str], key: str | None) -> str:
    if key is not None:
        if key not in names:
            raise FeatxError(f"{path}: no array {key!r} (it holds {', '.join(names) or 'none'})")
        return key
    if len(names) != 1:
        raise FeatxError(f"{path}: holds arrays {', '.join(names) or '(none)'}; say which with --key")
    return names[0]


def _read_npy(path: Path, member: str | None) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)  # mapped: checking a large file keeps no copy


def _read_npz(path: Path, member: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as arrays:
        return arrays[_pick(path, list(arrays.files), member)]


def _read_pt(path: Path, member: str | None) -> np.ndarray:
    import torch

    value = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(value, dict):
        value = value[_pick(path, [k for k, v in value.items() if isinstance(v, torch.Tensor)], member)]
    if not isinstance(value, torch.Tensor):
        raise FeatxError(f"{path}: holds a {type(value).__name__}, not a tensor of features")
    return (value.float() if value.dtype == torch.bfloat16 else value).numpy()  # numpy has no bfloat16


def _read_h5(path: Path, member: str | None) -> np.ndarray:
    with require_h5py().File(path, "r") as file:
        if member not in file:
            raise FeatxError(f"{path}: no dataset {member!r} (it holds {', '.join(h5_datasets(path))})")
        return file[member][()]


def _read_csv(path: Path, member: str | None) -> np.ndarray:
    with open(path) as text:
        first = text.readline()
    try:
        [float(v) for v in first.split(",")]
        header = 0
    except ValueError:
        header = 1  # a header row: BMN's `f0,f1,...` or any names
    return np.loadtxt(path, dtype=np.float32, delimiter=",", skiprows=header, ndmin=2)


READERS = {".npy": _read_npy, ".npz": _read_npz, ".pt": _read_pt, ".h5": _read_h5, ".hdf5": _read_h5, ".csv": _read_csv}


def h5_datasets(path: Path) -> list[str]:
    import h5py

    names = []
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def read_array(source: Source, layout: str = "TC") -> np.ndarray:
    """The (T, D) array of one video; a file that cannot be read, or is not a 2-d array of numbers with rows, is
    one FeatxError line naming it."""
    suffix = source.path.suffix.lower()
    try:
        array = READERS[suffix](source.path, source.member)
    except FeatxError:
        raise
    except Exception as exc:  # every reader's own failure (bad header, pickle refused, truncated...) is one line
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise FeatxError(f"{source}: cannot be read as {suffix} ({reason})") from None
    array = np.asarray(array)  # an HDF5 scalar reads as a bare value (bytes, str, a number)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        what = "text" if array.dtype.kind in "SUO" else f"values of type {array.dtype}"
        raise FeatxError(f"{source}: holds {what}, not numbers (features are a (T, D) array of numbers)")
    if array.ndim != 2:
        raise FeatxError(f"{source}: expected a 2-d (T, D) array of features, got shape {tuple(array.shape)}")
    array = array.T if layout == "CT" else array
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise FeatxError(f"{source}: an empty array (shape {tuple(array.shape)})")
    return array


def checked(source: Source, array: np.ndarray, dtype: str, dim: int | None, layout: str) -> np.ndarray:
    """`array` as `dtype`, refused when its feature size is not `dim` or a value is not finite."""
    if dim is not None and array.shape[1] != dim:
        hint = "; arrays stored (D, T)? --layout CT" if layout == "TC" else ""
        raise FeatxError(f"{source}: features of size {array.shape[1]}, but the others have {dim}{hint}")
    with np.errstate(over="ignore"):  # a value beyond float16's range becomes inf: refused just below
        values = np.asarray(array, dtype=dtype)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        why = f" as {dtype}" if np.isfinite(array[row]).all() else ""
        raise FeatxError(f"{source}: {int(bad.sum())} values are NaN or infinite{why} (the first in row {row})")
    return values
