"""The store's read cache (featx.feature_cache): same numbers as the parts, never stale, never damaged."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featx import feature_cache
from featx.store import reader
from featx.errors import FeatxError
from featx.store import StoreWriter, load_sequences

from tests.helpers import STORE_DIM as DIM
from tests.helpers import add_toy_video as add
from tests.helpers import toy_config as config


@pytest.fixture()
def written(tmp_path):
    """A store as every featx before the cache wrote it (parts and manifest, no _cache/), and what went in."""
    root = tmp_path / "store"
    with StoreWriter(root, config(), part_mb=0.0005) as writer:  # several parts
        expected = {vid: add(writer, vid, steps, seed) for vid, steps, seed in [("b", 3, 1), ("a", 5, 2), ("c", 4, 3)]}
    assert not (root / feature_cache.CACHE_DIR).exists()
    return root, {vid: feats.astype(np.float16) for vid, feats in expected.items()}  # stored as float16


def no_parts(monkeypatch):
    """Make reading the Parquet parts fail, so a result can only have come from the cache."""
    def refuse(*args, **kwargs):
        raise AssertionError("read the parts")

    monkeypatch.setattr(reader, "_read", refuse)


def assert_sequences(got: dict, expected: dict) -> None:
    assert list(got) == sorted(expected)
    for vid, feats in expected.items():
        np.testing.assert_array_equal(got[vid], feats)


def test_a_store_without_a_cache_reads_the_same_and_gains_one(written, monkeypatch):
    root, expected = written
    assert_sequences(load_sequences(root), expected)
    index = json.loads((root / "_cache" / "feature.json").read_text())
    assert index["ids"] == ["a", "b", "c"] and index["rows"] == [5, 3, 4]
    no_parts(monkeypatch)
    assert_sequences(load_sequences(root), expected)
    assert_sequences(load_sequences(root, video_ids=["c", "nope"]), {"c": expected["c"]})


def test_readers_of_the_store_folder_never_see_the_cache(written):
    root, expected = written
    load_sequences(root)
    frame = pd.read_parquet(root)
    assert len(frame) == sum(len(v) for v in expected.values())
    assert list(frame.columns) == ["video_id", "step", "t_start", "t_end", "frame_start", "frame_end", "feature"]


def test_an_appended_video_is_read_after_the_cache_was_built(written):
    root, expected = written
    load_sequences(root)
    with StoreWriter(root, config()) as writer:
        expected["d"] = add(writer, "d", 2, 9).astype(np.float16)
    assert_sequences(load_sequences(root), expected)


def test_a_part_changed_behind_featx_s_back_is_read_from_the_parts(written):
    root, expected = written
    load_sequences(root)
    part = next(p for p in sorted(root.glob("part-*.parquet")) if "a" in pq.read_table(p)["video_id"].to_pylist())
    table = pq.read_table(part)
    values = table["feature"].combine_chunks().values.to_numpy(zero_copy_only=False)
    doubled = pa.FixedSizeListArray.from_arrays(pa.array(values * np.float16(2)), DIM)
    pq.write_table(table.set_column(table.schema.get_field_index("feature"), "feature", doubled), part)
    in_part = set(table["video_id"].to_pylist())
    assert_sequences(load_sequences(root), {v: f * np.float16(2) if v in in_part else f for v, f in expected.items()})
    part.unlink()  # deleted by hand: the manifest check refuses, whatever the cache holds
    with pytest.raises(FeatxError, match="missing part"):
        load_sequences(root)


def test_a_flipped_byte_in_the_cache_is_never_returned(written):
    root, expected = written
    load_sequences(root)
    npy = next((root / "_cache").glob("feature-*.npy"))
    data = bytearray(npy.read_bytes())
    data[-3] ^= 0x40  # inside the last video's rows
    npy.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="fail their"):
        assert_sequences(load_sequences(root), expected)
    assert_sequences(load_sequences(root), expected)  # rebuilt: no warning now


def test_a_store_that_cannot_hold_a_cache_still_reads(written, monkeypatch):
    root, expected = written

    def read_only(*args):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(feature_cache, "write", read_only)
    with pytest.warns(UserWarning, match="no read cache"):
        assert_sequences(load_sequences(root), expected)


def test_cache_false_and_subset_reads_write_no_cache(written):
    root, expected = written
    assert_sequences(load_sequences(root, cache=False), expected)
    assert_sequences(load_sequences(root, video_ids=["a"]), {"a": expected["a"]})
    assert not (root / "_cache").exists()


def test_a_writer_removes_the_cache_its_commit_makes_stale(written):
    root, _ = written
    load_sequences(root)
    with StoreWriter(root, config()) as writer:
        add(writer, "d", 2)
    assert not (root / "_cache").exists()
