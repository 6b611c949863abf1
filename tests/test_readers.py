"""The readers people already use open a store as it is, with the same numbers featx reads."""

import numpy as np
import pytest

from featx.store import StoreWriter, load_sequences
from tests.helpers import add_toy_video, toy_config


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers") / "store"
    with StoreWriter(root, toy_config(), part_mb=0.0005) as writer:  # several parts
        for k in range(5):
            add_toy_video(writer, f"v{k}", 3 + k, k)
    load_sequences(root)  # the store as users have it after a first read: with its read cache (_cache/)
    assert (root / "_cache").is_dir()
    return root


def as_sequences(frame) -> dict[str, np.ndarray]:
    """{video_id: (T, D)} from a pandas frame of video_id, step, feature rows in any order."""
    frame = frame.sort_values(["video_id", "step"])
    return {vid: np.stack(g.feature.to_numpy()) for vid, g in frame.groupby("video_id")}


def assert_same(got: dict, store) -> None:
    want = load_sequences(store)
    assert sorted(got) == sorted(want)
    for vid in want:
        np.testing.assert_array_equal(got[vid].astype(np.float32), want[vid].astype(np.float32))


def test_pandas_reads_the_store_folder(store):
    import pandas as pd

    assert_same(as_sequences(pd.read_parquet(store)), store)


def test_duckdb_reads_the_parts(store):
    import duckdb

    frame = duckdb.sql(f"SELECT video_id, step, feature FROM read_parquet('{store}/part-*.parquet')").df()
    assert_same(as_sequences(frame), store)


def test_polars_scans_the_parts(store):
    import polars as pl

    frame = pl.scan_parquet(f"{store}/part-*.parquet").select("video_id", "step", "feature").collect()
    rows = frame.with_columns(pl.col("feature").cast(pl.Array(pl.Float32, frame["feature"].dtype.size)))
    assert_same(as_sequences(rows.to_pandas()), store)


def test_hugging_face_datasets_loads_the_parts(store, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from datasets import load_dataset

    data = load_dataset("parquet", data_files=f"{store}/part-*.parquet", split="train", cache_dir=str(tmp_path))
    frame = data.select_columns(["video_id", "step", "feature"]).to_pandas()
    frame["feature"] = frame["feature"].map(lambda v: np.asarray(v, np.float32))
    assert_same(as_sequences(frame), store)
