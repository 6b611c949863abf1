"""The file formats `featx export` writes, one writer class each (see featx.export's docstring for the layout):
npy (one array per video), csv (one file per video, with a header), hdf5 (one file, a dataset per video)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from featx.errors import FeatxError

HDF5_FILE = "features.h5"


class NpyWriter:
    ext = ".npy"

    def __init__(self, folder: Path, dim: int, config_json: str):
        self.folder = folder

    def write(self, video_id: str, array: np.ndarray, entry: dict, times: dict) -> str:
        name = video_id + self.ext
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        self.save(target, array)
        return name

    def save(self, target: Path, array: np.ndarray) -> None:
        np.save(target, array)

    def close(self) -> None:
        pass


class CsvWriter(NpyWriter):
    ext = ".csv"

    def __init__(self, folder: Path, dim: int, config_json: str):
        super().__init__(folder, dim, config_json)
        self.header = ",".join(f"f{i}" for i in range(dim))

    def save(self, target: Path, array: np.ndarray) -> None:
        # %.9g prints every float32 so that it parses back to the same bits (float16 values are float32 values)
        np.savetxt(target, array.astype(np.float32), fmt="%.9g", delimiter=",", header=self.header, comments="")


class Hdf5Writer:
    ext = ".h5"

    def __init__(self, folder: Path, dim: int, config_json: str):
        h5py = require_h5py()
        # HDF5 1.8 format or later: dense attribute storage, so a long video's times fit in its attributes
        self.file = h5py.File(folder / HDF5_FILE, "w", libver=("v108", "v108"))
        self.file.attrs["featx_config"] = config_json

    def write(self, video_id: str, array: np.ndarray, entry: dict, times: dict) -> str:
        try:
            dataset = self.file.create_dataset(video_id, data=array)
        except (ValueError, TypeError) as exc:  # an id that is a group of another id's path ('a' and 'a/b')
            raise FeatxError(f"video {video_id!r} cannot be an HDF5 dataset here ({exc}); use --format npy") from None
        for key, values in times.items():
            dataset.attrs[key] = values
        for key, value in entry.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                dataset.attrs[key] = value
        return video_id

    def close(self) -> None:
        self.file.close()


WRITERS = {"npy": NpyWriter, "hdf5": Hdf5Writer, "csv": CsvWriter}


def require_h5py():
    """h5py, or one error line saying how to install it (an optional extra)."""
    try:
        import h5py
    except ImportError:
        raise FeatxError("the hdf5 format needs h5py: pip install 'featx[hdf5]'") from None
    return h5py
