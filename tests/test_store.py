import json
import time

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.store import (
    MANIFEST_DIR,
    StoreWriter,
    latest_manifest,
    load_features,
    load_sequences,
    read_config,
    read_manifest,
    store_info,
)

from tests.helpers import STORE_DIM as DIM
from tests.helpers import add_toy_video as add
from tests.helpers import toy_config as config
from tests.helpers import toy_record as record


@pytest.fixture()
def store(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, config()) as writer:
        expected = {"a/clip": add(writer, "a/clip", 4, 1), "b/clip": add(writer, "b/clip", 3, 2)}
        writer.add_error({**record("broken"), "error": "no video stream (streams: audio)"})
    return root, expected


def test_pandas_reads_the_store_directory_with_documented_columns(store):
    root, expected = store
    df = pd.read_parquet(root)
    assert list(df.columns) == ["video_id", "step", "t_start", "t_end", "frame_start", "frame_end", "feature"]
    assert len(df) == 7
    first = df[df.video_id == "a/clip"].sort_values("step")
    assert first.step.tolist() == [0, 1, 2, 3]
    assert first.t_end.tolist() == [0.5, 1.0, 1.5, 2.0]
    np.testing.assert_allclose(np.stack(first.feature), expected["a/clip"], rtol=1e-3, atol=1e-3)


def test_pyarrow_dataset_and_duckdb_read_the_same_rows(store):
    root, _ = store
    table = ds.dataset(root, format="parquet").to_table()
    assert table.num_rows == 7
    assert table.schema.field("feature").type.list_size == DIM
    assert str(table.schema.field("feature").type.value_type) == "halffloat"
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"select video_id, count(*) from read_parquet('{root}/*.parquet') group by 1 order by 1")
    assert rows.fetchall() == [("a/clip", 4), ("b/clip", 3)]


def test_load_sequences_returns_step_ordered_arrays(store):
    root, expected = store
    seqs = load_sequences(root)
    assert set(seqs) == {"a/clip", "b/clip"}
    for vid, feats in expected.items():
        np.testing.assert_array_equal(seqs[vid], feats.astype(np.float16))
    assert set(load_sequences(root, video_ids=["b/clip"])) == {"b/clip"}


def test_load_sequences_orders_rows_that_are_not_grouped_by_video(store):
    root, expected = store
    part = next(root.glob("part-*.parquet"))
    table = pq.read_table(part)
    shuffled = table.take(np.random.default_rng(0).permutation(table.num_rows))  # steps and videos interleaved
    pq.write_table(shuffled.replace_schema_metadata(table.schema.metadata), part)
    seqs = load_sequences(root)
    assert list(seqs) == ["a/clip", "b/clip"]
    for vid, feats in expected.items():
        np.testing.assert_array_equal(seqs[vid], feats.astype(np.float16))


def test_features_are_not_dictionary_encoded(store):
    root, _ = store
    meta = pq.ParquetFile(next(root.glob("part-*.parquet"))).metadata
    columns = {meta.row_group(0).column(c).path_in_schema: meta.row_group(0).column(c) for c in range(meta.num_columns)}
    assert "RLE_DICTIONARY" not in columns["feature.list.element"].encodings  # 5.7x slower to read
    assert "RLE_DICTIONARY" in columns["video_id"].encodings


def test_load_features_with_column_projection(store):
    root, _ = store
    df = load_features(root, columns=["video_id", "t_start"], video_ids=["a/clip"])
    assert list(df.columns) == ["video_id", "t_start"] and len(df) == 4


def test_metadata_holds_the_versioned_config(store):
    root, _ = store
    part = next(root.glob("part-*.parquet"))
    meta = json.loads(pq.read_schema(part).metadata[b"featx"])
    assert meta["format_version"] == 1 and meta["feature_dim"] == DIM and meta["fps"] == 2.0
    assert read_config(root) == config()


def test_manifest_has_one_row_per_video_with_status(store):
    root, _ = store
    manifest = read_manifest(root).set_index("video_id")
    assert manifest.loc["a/clip", "status"] == "ok" and manifest.loc["a/clip", "rows"] == 4
    assert manifest.loc["broken", "status"] == "error" and "audio" in manifest.loc["broken", "error"]
    info = store_info(root)
    assert (info["videos_ok"], info["videos_failed"], info["rows"], info["feature_dim"]) == (2, 1, 7, DIM)
    assert info["failed"][0]["video_id"] == "broken"


def test_appending_with_another_config_is_refused_naming_the_difference(store):
    root, _ = store
    with pytest.raises(FeatxError, match=r"fps: 2\.0 != 4\.0"):
        StoreWriter(root, config(fps=4.0))


def test_appending_with_the_same_config_resumes_and_knows_what_is_done(store):
    root, _ = store
    writer = StoreWriter(root, config(weights="/elsewhere/same-file.pth", versions={"featx": "newer"}))
    assert writer.ok_ids == {"a/clip", "b/clip"}


def test_a_retried_video_takes_its_latest_status(tmp_path):
    root = tmp_path / "s"
    with StoreWriter(root, config()) as w:
        w.add_error({**record("v"), "error": "decoder crashed", "finished_at": 1.0})
    with StoreWriter(root, config()) as w:
        assert w.ok_ids == set()
        add(w, "v", 2)
    latest = latest_manifest(root)
    assert latest.status.tolist() == ["ok"] and len(read_manifest(root)) == 2


def test_parts_roll_over_by_size_and_each_video_lies_in_one_part(tmp_path):
    root = tmp_path / "s"
    with StoreWriter(root, config(), part_mb=0.0005) as w:  # about 500 bytes: a part per video or two
        for k in range(6):
            add(w, f"v{k}", 20, k)
    parts = sorted(root.glob("part-*.parquet"))
    assert len(parts) >= 3
    owners = {}
    for part in parts:
        for vid in set(pq.read_table(part, columns=["video_id"]).column("video_id").to_pylist()):
            assert vid not in owners, f"{vid} split over {owners[vid]} and {part.name}"
            owners[vid] = part.name
    manifest = read_manifest(root).set_index("video_id")
    assert all(manifest.loc[vid, "part"] == part for vid, part in owners.items())


def test_nothing_is_visible_before_a_flush_commits(tmp_path):
    root = tmp_path / "s"
    w = StoreWriter(root, config(), row_group_mb=0)  # rows reach the temp file at once
    add(w, "v", 3)
    assert list(root.glob(".*.tmp")) and not list(root.glob("*.parquet"))
    w.close()
    assert len(pd.read_parquet(root)) == 3


def test_a_fragment_lost_in_a_crash_is_rebuilt_from_its_part(store):
    root, _ = store
    for fragment in (root / MANIFEST_DIR).glob("*.parquet"):
        fragment.unlink()
    # readers already see the part's videos as ok, before anything is repaired
    assert set(read_manifest(root).video_id) == {"a/clip", "b/clip"}
    assert not list((root / MANIFEST_DIR).glob("*.parquet"))
    writer = StoreWriter(root, config())
    assert list((root / MANIFEST_DIR).glob("*.parquet"))
    assert writer.ok_ids == {"a/clip", "b/clip"}
    assert set(read_manifest(root).video_id) == {"a/clip", "b/clip"}  # the error row had no part to come from


def test_temp_files_of_dead_writers_are_removed_and_never_read(store):
    root, _ = store
    stale = root / ".part-x.parquet.999999999.tmp"
    stale.write_bytes(b"half a file")
    assert len(pd.read_parquet(root)) == 7
    StoreWriter(root, config())
    assert not stale.exists()


def test_reading_something_that_is_not_a_store_is_a_clear_error(tmp_path):
    with pytest.raises(FeatxError, match="not a featx store"):
        store_info(tmp_path)


def test_config_from_dict_rejects_unknown_keys():
    data = config().to_dict() | {"clip_shuffle": 16}
    with pytest.raises(FeatxError, match="unknown extraction config keys"):
        ExtractConfig.from_dict(data)


def test_a_non_empty_folder_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "holiday.mp4").write_bytes(b"x")
    with pytest.raises(FeatxError, match="not a featx store"):
        StoreWriter(tmp_path, config())


def test_a_store_killed_before_its_first_commit_can_be_resumed(tmp_path):
    root = tmp_path / "s"
    (root / MANIFEST_DIR).mkdir(parents=True)
    (root / ".part-x.parquet.999999999.tmp").write_bytes(b"half")
    with StoreWriter(root, config()) as w:
        add(w, "v", 2)
    assert len(pd.read_parquet(root)) == 2
