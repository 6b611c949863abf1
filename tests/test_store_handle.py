"""featx.open_store: one handle on a store, read once, checked against the store's own files."""

import numpy as np
import pandas as pd
import pytest

import featx
from featx.errors import FeatxError
from featx.store import StoreWriter
from tests.helpers import add_toy_video, toy_config


@pytest.fixture
def toy_store(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, toy_config()) as writer:
        feats = {vid: add_toy_video(writer, vid, steps, seed) for vid, steps, seed in [("b", 3, 1), ("a/x", 5, 2)]}
    return root, feats


def test_open_store_gives_the_config_the_manifest_and_the_features(toy_store):
    root, feats = toy_store
    store = featx.open_store(root)
    assert not store.config.differences(toy_config())  # the config it was written with
    assert store.config.backbone == "toy" and store.config.fps == 2.0
    videos = store.videos()
    assert sorted(videos.video_id) == ["a/x", "b"] and set(videos.status) == {"ok"}
    assert dict(zip(videos.video_id, videos.rows)) == {"a/x": 5, "b": 3}
    assert store.ok_ids() == ["a/x", "b"]
    sequences = store.sequences()
    assert list(sequences) == ["a/x", "b"]
    for vid, expected in feats.items():
        np.testing.assert_array_equal(sequences[vid], expected.astype(np.float16))
    rows = store.rows(["video_id", "step"], ids=["b"])
    assert list(rows.columns) == ["video_id", "step"] and rows.step.tolist() == [0, 1, 2]
    assert "toy" in repr(store) and "2 videos ok" in repr(store)


def test_a_videos_grid_puts_each_row_at_its_centre(toy_store):
    root, _ = toy_store
    grid = featx.open_store(root).grid("a/x")  # toy rows: [0.5 i, 0.5 i + 0.5)
    np.testing.assert_allclose(grid.to_seconds([0, 1, 4]), [0.25, 0.75, 2.25])
    np.testing.assert_allclose(grid.to_grid(1.0), 1.5)
    assert grid.steps == 5 and grid.start == 0.0 and grid.end == 2.5
    with pytest.raises(FeatxError, match="no rows of video 'c'"):
        featx.open_store(root).grid("c")


def test_verify_is_falsy_for_a_sound_store_and_names_a_stray_file(toy_store):
    root, _ = toy_store
    assert not featx.open_store(root).verify()
    (root / "copy.parquet").write_bytes(b"x")
    assert featx.open_store(root).verify().stray == ["copy.parquet"]


def test_a_store_goes_where_its_path_did(toy_store):
    root, _ = toy_store
    store = featx.open_store(root)
    assert len(pd.read_parquet(store)) == 8  # os.fspath: pandas and pyarrow take the handle
    assert featx.open_store(store) is store
    assert sorted(featx.load_sequences(store)) == ["a/x", "b"]  # and so does every featx function taking a store
    assert featx.store_info(store)["videos_ok"] == 2


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p])
def test_opening_what_is_not_a_store_is_one_error(tmp_path, make):
    with pytest.raises(FeatxError, match="is not a featx store"):
        featx.open_store(make(tmp_path))
