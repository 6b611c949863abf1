"""bench/_common.py: the benchmark scripts' shared tables, timing, results JSON and synthetic clips."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).parents[1] / "bench" / "_common.py"


def _load():
    # bench/ is a folder of scripts, not a package: load the module from its file (registered, as dataclasses need)
    spec = importlib.util.spec_from_file_location("bench_common", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


common = _load()
Column = common.Column


def fake_clock(*readings: float):
    """A clock that returns `readings` in order (and fails the test if read once more)."""
    it = iter(readings)
    return lambda: next(it)


def test_padded_table_matches_a_hand_written_one():
    columns = [Column("head", "<", 6), Column("epoch s", ">", 7), Column("ok", "^", 3)]
    table = common.markdown_table(columns, [["gru", "1.5", "yes"], ["lstm", 12.25, "NO"]])
    assert table == (
        "| head   | epoch s | ok  |\n"
        "|--------|--------:|:---:|\n"
        "| gru    |     1.5 | yes |\n"
        "| lstm   |   12.25 | NO  |"
    )


def test_unpadded_table_has_short_rules():
    columns = [Column("set", "<"), Column("fps"), Column("identical", "^")]
    assert common.markdown_table(columns, [["easy", 2, "yes"]]) == (
        "| set | fps | identical |\n"
        "|---|---:|:---:|\n"
        "| easy | 2 | yes |"
    )


def test_header_and_rows_printed_apart_make_the_same_table():
    columns = [Column("a", "<", 3), Column("b", ">", 4)]
    rows = [["x", 1], ["yy", 22]]
    apart = "\n".join([common.table_header(columns), *(common.table_row(columns, r) for r in rows)])
    assert apart == common.markdown_table(columns, rows)


def test_table_refuses_a_bad_alignment_and_a_wrong_number_of_cells():
    with pytest.raises(ValueError, match="align"):
        Column("x", "left")
    with pytest.raises(ValueError):
        common.table_row([Column("a"), Column("b")], ["only one"])


def test_timed_reports_each_run_and_their_median_on_a_fake_clock():
    calls = []
    # three timed runs: 0 -> 2, 5 -> 6, 10 -> 14 (2, 1 and 4 s); the warm-up call reads no clock
    timing = common.timed(lambda: calls.append(1) or len(calls), repeats=3, warmup=1,
                          clock=fake_clock(0, 2, 5, 6, 10, 14))
    assert timing.runs == (2, 1, 4)
    assert (timing.median, timing.best, timing.mean) == (2, 1, pytest.approx(7 / 3))
    assert len(calls) == 4 and timing.result == 4  # warm-up + 3 runs; the last run's result is kept


def test_timed_syncs_around_each_run_before_the_clock_is_read():
    events = []
    clock = fake_clock(0, 1)

    def read() -> float:
        events.append("clock")
        return clock()

    common.timed(lambda: events.append("run"), sync=lambda: events.append("sync"), clock=read)
    assert events == ["sync", "clock", "run", "sync", "clock"]
    with pytest.raises(ValueError, match="repeats"):
        common.timed(lambda: None, repeats=0)


def test_stopwatch_times_a_block_and_runs_on_outside_one():
    with common.Stopwatch(clock=fake_clock(0, 3, 7)) as watch:  # created at 0, entered at 3, left at 7
        pass
    assert watch.seconds == 4 and watch.seconds == 4  # frozen once the block ended
    running = common.Stopwatch(clock=fake_clock(1, 2.5))
    assert running.seconds == 1.5


def test_results_json_holds_the_result_and_the_machine_facts(tmp_path):
    out = common.write_results(tmp_path / "new" / "r.json", {"args": {"out": tmp_path / "r.json"}, "rows": [{"a": 1}]})
    data = json.loads(out.read_text())
    assert data["rows"] == [{"a": 1}] and data["args"]["out"] == str(tmp_path / "r.json")  # paths as strings
    assert {"date", "cpu", "arch", "cores", "python", "torch", "device"} <= set(data["host"])
    assert data["host"]["device"] == "cpu" and data["host"]["cores"] >= 1
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temporary file left behind
    with pytest.raises(ValueError, match="host"):
        common.write_results(out, {"host": "mine"})


def test_results_json_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    out = common.write_results(tmp_path / "r.json", {"rows": [1]})

    def crash(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(common.os, "fsync", crash)  # the run dies while writing the new file
    with pytest.raises(OSError, match="disk gone"):
        common.write_results(out, {"rows": [2]})
    assert json.loads(out.read_text())["rows"] == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_out_defaults_to_the_results_folder():
    parser = common.make_parser("doc")
    common.add_out(parser, "x.json")
    assert Path(parser.parse_args([]).out) == common.RESULTS / "x.json"
    assert parser.parse_args(["--out", "/tmp/y.json"]).out == "/tmp/y.json"
    per_device = common.make_parser("doc")
    common.add_out(per_device, "t_<device>.json")
    assert common.results_path(per_device.parse_args([]).out, "t_<device>.json", "cuda") == common.RESULTS / "t_cuda.json"
    assert common.results_path("/tmp/z.json", "t_<device>.json", "cuda") == Path("/tmp/z.json")


def test_synthetic_clip_pans_a_colour_field():
    field = common.colour_field(np.random.default_rng(0), 24, 32, 8)
    assert field.shape == (24 + 64, 32 + 64, 3) and field.dtype == np.uint8
    np.testing.assert_array_equal(common.panned(field, 3, 24, 32), field[3:27, 6:38])
    frames = list(common.synthetic_clip(np.random.default_rng(0), seconds=0.5, fps=8, size=(32, 24)))
    assert len(frames) == 4 and frames[0].shape == (24, 32, 3) and frames[0].dtype == np.uint8
