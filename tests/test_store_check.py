"""Writers that would duplicate videos are refused; missing, damaged and duplicated parts are found, reported
in one line and repaired so that the next extraction redoes exactly the lost videos."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featx.errors import FeatxError
from featx.store.lease import LEASE_DIR, WriterLease, conflicts
from featx.store import StoreWriter, load_features, load_sequences, ok_video_ids, read_manifest, store_info
from featx.store.check import DAMAGED_DIR, repair_store, verify_store
from tests.helpers import add_toy_video, toy_config


@pytest.fixture()
def store(tmp_path):
    """Two parts: a and b in the first, c in the second."""
    root = tmp_path / "store"
    expected = {}
    with StoreWriter(root, toy_config()) as writer:
        expected["a"] = add_toy_video(writer, "a", 4, 1)
        expected["b"] = add_toy_video(writer, "b", 3, 2)
    with StoreWriter(root, toy_config()) as writer:
        expected["c"] = add_toy_video(writer, "c", 5, 3)
    return root, expected


def part_of(root, video_id):
    latest = read_manifest(root).drop_duplicates("video_id", keep="last").set_index("video_id")
    return root / latest.loc[video_id, "part"]


@pytest.mark.parametrize(
    "a, b, conflict",
    [(None, None, True), (None, (0, 2), True), ((0, 2), (0, 2), True), ((0, 2), (1, 2), False), ((0, 2), (0, 3), True),
     ((1, 2), (0, 3), True)],
)
def test_writers_conflict_exactly_when_they_could_write_the_same_video(a, b, conflict):
    assert conflicts(a, b) is conflict and conflicts(b, a) is conflict


def test_a_second_writer_of_the_same_videos_is_refused_while_the_first_runs(tmp_path):
    root = tmp_path / "s"
    first = StoreWriter(root, toy_config())
    with pytest.raises(FeatxError, match=r"another featx extract or import \(pid \d+ .*writing the whole store"):
        StoreWriter(root, toy_config())
    with pytest.raises(FeatxError, match="could write videos twice"):
        StoreWriter(root, toy_config(), shard="1/2")
    first.close()
    with StoreWriter(root, toy_config()) as again:  # released on close
        add_toy_video(again, "v", 2)
    assert not list((root / LEASE_DIR).glob("writer-*"))


def test_writers_of_different_shards_of_one_count_run_side_by_side(tmp_path):
    root = tmp_path / "s"
    with StoreWriter(root, toy_config(), shard="0/2") as zero, StoreWriter(root, toy_config(), shard="1/2") as one:
        add_toy_video(zero, "a", 2)
        add_toy_video(one, "b", 2)
        with pytest.raises(FeatxError, match=r"is writing shard [01]/2 .*writing shard 0/3 now"):
            StoreWriter(root, toy_config(), shard="0/3")
    assert sorted(load_sequences(root)) == ["a", "b"]


HOLD_LEASE = """
import sys, time
from featx.store.lease import WriterLease
lease = WriterLease(sys.argv[1], None).acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_writer_in_another_process_blocks_until_it_dies_and_a_killed_one_never_blocks(tmp_path):
    root = tmp_path / "s"
    root.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LEASE, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FeatxError, match=f"pid {holder.pid}"):
            WriterLease(root, (0, 4)).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert list((root / LEASE_DIR).glob("writer-*"))  # a kill -9 leaves its lease file behind ...
    lease = WriterLease(root, None).acquire()  # ... which does not block
    assert [p.name for p in (root / LEASE_DIR).glob("writer-*")] == [lease.path.name]
    lease.release()


def duplicate_a_part(root, video_id):
    """What two writers at once did before leases: the same video committed in a second part."""
    part = part_of(root, video_id)
    copy = part.with_name(part.name.replace("part-", "part-99999999T999999999999-copy0-"))
    shutil.copy(part, copy)
    return copy


def test_a_video_written_twice_is_refused_by_readers_reported_by_info_and_repaired_by_the_next_writer(store):
    root, expected = store
    duplicate_a_part(root, "c")
    with pytest.raises(FeatxError, match=r"1 video\(s\) written twice: c; `featx info --repair"):
        load_sequences(root)
    with pytest.raises(FeatxError, match="written twice"):
        load_features(root)
    assert any("'c' written twice" in line for line in store_info(root)["problems"])
    with StoreWriter(root, toy_config()) as writer:
        assert writer.repairs == ["removed second copies of 1 video(s)"]
        assert writer.ok_ids == {"a", "b", "c"}
    got = load_sequences(root)
    assert sorted(got) == ["a", "b", "c"] and all(np.allclose(got[v], expected[v], rtol=1e-3, atol=1e-3) for v in got)
    assert store_info(root)["problems"] == [] and not verify_store(root)


def test_a_part_holding_more_rows_than_its_manifest_says_is_reported_damaged(store):
    root, _ = store
    part = part_of(root, "c")
    table = pq.read_table(part)
    twice = pq.ParquetFile(part).schema_arrow.metadata
    pq.write_table(pa.concat_tables([table, table]).replace_schema_metadata(twice), part)
    problems = verify_store(root)
    assert problems.damaged == {part.name: "10 rows, the manifest says 5"}


def test_a_deleted_part_is_refused_by_readers_and_its_videos_are_redone_by_the_next_extraction(store):
    root, _ = store
    lost = part_of(root, "c")
    lost.unlink()
    with pytest.raises(FeatxError, match=f"1 missing part\\(s\\): {lost.name}"):
        load_sequences(root)
    assert store_info(root)["problems"] == [f"missing part {lost.name} (c)"]
    with StoreWriter(root, toy_config()) as writer:
        assert writer.ok_ids == {"a", "b"}  # c is extracted again
        add_toy_video(writer, "c", 5, 3)
    assert sorted(load_sequences(root)) == ["a", "b", "c"]
    history = read_manifest(root).query("video_id == 'c'").status.tolist()
    assert history == ["ok", "error", "ok"]


def test_a_truncated_part_is_one_error_line_and_is_set_aside_not_deleted(store):
    root, _ = store
    part = part_of(root, "a")
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatxError, match="cannot be read|damaged"):
        load_sequences(root)
    assert any(line.startswith(f"damaged part {part.name}") for line in store_info(root)["problems"])
    with StoreWriter(root, toy_config()) as writer:
        assert writer.ok_ids == {"c"}
    assert (root / DAMAGED_DIR / part.name).read_bytes() == data[: len(data) // 2]
    assert ok_video_ids(root) == {"c"} and sorted(load_sequences(root)) == ["c"]


def flip_a_feature_byte(part):
    """Flip one byte inside the feature column's first data page (found from the footer)."""
    meta = pq.ParquetFile(part).metadata
    column = next(meta.row_group(0).column(i) for i in range(meta.num_columns)
                  if meta.row_group(0).column(i).path_in_schema.startswith("feature"))
    offset = column.data_page_offset + column.total_compressed_size // 2
    data = bytearray(part.read_bytes())
    data[offset] ^= 0xFF
    part.write_bytes(bytes(data))


def test_a_flipped_byte_fails_its_page_checksum_instead_of_reading_as_other_numbers(store):
    root, _ = store
    part = part_of(root, "c")
    flip_a_feature_byte(part)
    with pytest.raises(FeatxError, match="cannot be read"):
        load_sequences(root)
    problems = verify_store(root)
    assert list(problems.damaged) == [part.name]
    assert repair_store(root, problems)[0] == f"moved damaged part {part.name} to {DAMAGED_DIR}/"
    assert sorted(load_sequences(root)) == ["a", "b"]
    assert ok_video_ids(root) == {"a", "b"}  # c is redone by the next extraction


def test_a_lost_manifest_fragment_that_is_unreadable_is_rebuilt_from_its_part(store):
    root, _ = store
    fragment = root / "_videos" / part_of(root, "c").name.removeprefix("part-")
    fragment.write_bytes(b"garbage")
    assert ok_video_ids(root) == {"a", "b", "c"}
    assert sorted(load_sequences(root)) == ["a", "b", "c"]


@pytest.mark.slow
def test_two_extractions_into_one_store_at_once_never_write_a_video_twice(tmp_path, tiny_videos):
    """Two real `featx extract` processes started together on the same inputs and --out."""
    from tests.conftest import TINY_ARGS

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    featx = str(Path(sys.executable).parent / "featx")
    command = [featx, "extract", str(tiny_videos), "--out", str(tmp_path / "s"), *TINY_ARGS,
               "--no-progress"]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    for code, err in results:
        assert code == 0 or (code == 1 and "another featx extract" in err and err.count("\n") == 1), err
    rows = load_features(tmp_path / "s", columns=["video_id", "step"])
    assert not rows.duplicated().any()
    assert rows.video_id.nunique() == 4 and not verify_store(tmp_path / "s")


def test_info_verify_names_a_damaged_part_in_one_error_line_and_repair_fixes_it(store):
    from typer.testing import CliRunner

    from cli import app

    root, _ = store
    part = part_of(root, "c")
    flip_a_feature_byte(part)
    runner = CliRunner()
    plain = runner.invoke(app, ["info", str(root)])
    assert plain.exit_code == 0 and f"problem    damaged part {part.name}" in plain.stdout  # a small store is read whole
    checked = runner.invoke(app, ["info", str(root), "--verify"])
    assert checked.exit_code == 1
    errors = [line for line in checked.stderr.splitlines() if line.strip() and not line.startswith("verify:")]  # the bar
    assert len(errors) == 1 and errors[0].startswith(f"error: 1 damaged part(s): {part.name} ({part.name}: ")
    assert "checksum" in errors[0].lower() and errors[0].endswith(f"; `featx info --repair {root}` repairs it")
    repaired = runner.invoke(app, ["info", str(root), "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert f"moved damaged part {part.name}" in repaired.stderr
    assert runner.invoke(app, ["info", str(root), "--verify"]).exit_code == 0
    assert "videos     2 ok, 1 failed" in runner.invoke(app, ["info", str(root)]).stdout


def test_info_inputs_counts_the_videos_of_a_deleted_part_as_not_done(store, tmp_path):
    from typer.testing import CliRunner

    from cli import app

    root, _ = store
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("a", "b", "c"):
        (inputs / f"{name}.mp4").write_bytes(b"x")
    part_of(root, "c").unlink()
    result = CliRunner().invoke(app, ["info", str(root), "--inputs", str(inputs)])
    assert result.exit_code == 0, result.output
    assert "inputs     3, 1 not done yet" in result.stdout and "  missing c" in result.stdout


def test_a_store_inside_another_store_is_refused(store):
    root, _ = store
    with pytest.raises(FeatxError, match="is inside the store"):
        StoreWriter(root / "nested", toy_config())


def test_opening_a_small_store_to_write_reads_every_page_and_redoes_a_damaged_parts_videos(store):
    root, _ = store
    part = part_of(root, "c")
    flip_a_feature_byte(part)  # the footer still reads: only the page's checksum tells
    with StoreWriter(root, toy_config()) as writer:
        assert writer.pages_read and writer.ok_ids == {"a", "b"}
        assert writer.repairs[0] == f"moved damaged part {part.name} to {DAMAGED_DIR}/"


def test_a_store_above_the_page_reading_size_is_trusted_by_footers_and_says_how_to_read_it(store, monkeypatch):
    from typer.testing import CliRunner

    import featx.store
    from cli import app
    from featx.pipeline import ExtractSummary

    root, _ = store
    monkeypatch.setattr(featx.store.reader, "READ_PAGES_BELOW", 0)
    flip_a_feature_byte(part_of(root, "c"))
    with StoreWriter(root, toy_config()) as writer:
        assert not writer.pages_read and writer.ok_ids == {"a", "b", "c"} and not writer.repairs
    plain = CliRunner().invoke(app, ["info", str(root)])
    assert f"pages      not read, footers only: `featx info --verify {root}` reads every page" in plain.stdout
    said = ExtractSummary(store=str(root), skipped=3, pages_read=False).lines()
    assert "checked by their footers" in said[1] and f"featx info --verify {root}" in said[1]
    assert len(ExtractSummary(store=str(root), skipped=3, pages_read=True).lines()) == 1
