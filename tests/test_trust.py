"""Nothing outside the folder featx was told to write, no second copies, no run lost: the adversarial cases of
"Trust, second pass" (edited sidecars, ids that name one file twice, retraining into a run, a full disk)."""

import errno
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from featx.errors import FeatxError
from featx.export import SIDECAR, export_store
from featx.ids import check_video_id, file_inside, id_problem
from featx.store import StoreWriter
from tests.helpers import add_toy_video, one_error_line, toy_config

runner = CliRunner()


def _store(root, ids=("a", "b/c")):
    with StoreWriter(root, toy_config()) as writer:
        for k, vid in enumerate(ids):
            add_toy_video(writer, vid, 3 + k, seed=k)
    return root


# -- one id rule ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "a/./b", "a//b2", "c/", ".hidden", "a/.x", "a\\b", "a\x00b",
                                 "bad\udcff"])
def test_ids_that_could_name_another_file_or_a_hidden_one_are_refused(bad):
    assert id_problem(bad) is not None
    with pytest.raises(FeatxError, match="cannot be a video id"):
        check_video_id(bad)


@pytest.mark.parametrize("good", ["a", "a/b", "v_ApplyEyeMakeup_g08_c01", "x.y/z-1_2", "vidéo"])
def test_ordinary_ids_pass(good):
    assert check_video_id(good) == good


def test_a_store_whose_ids_would_collide_as_files_is_not_exported(tmp_path):
    root = _store(tmp_path / "s", ids=("a/b", "a/./b"))
    with pytest.raises(FeatxError, match="cannot be a video id"):
        export_store(root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_list_file_id_that_is_not_canonical_is_one_error_line(tmp_path):
    listed = tmp_path / "list.csv"
    (tmp_path / "v.mp4").write_bytes(b"")
    listed.write_text(f"path,video_id\n{tmp_path / 'v.mp4'},a//b\n")
    result = runner.invoke(app, ["extract", str(listed), "--out", str(tmp_path / "s")])
    one_error_line(result, "cannot be a video id")


# -- names read back from featx's own files stay inside their folder ------------------------------------------
def test_file_inside_accepts_only_relative_names_below_the_folder(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "link").symlink_to(tmp_path)  # a link inside pointing out
    assert file_inside(tmp_path / "d", "x/y.npy") == tmp_path / "d" / "x" / "y.npy"
    for name in ["/etc/passwd", "../x", "link/secret", "", None, 3, "a\\..\\b"]:
        assert file_inside(tmp_path / "d", name) is None


def test_overwrite_never_deletes_a_file_an_edited_sidecar_points_outside_with(tmp_path):
    root = _store(tmp_path / "s")
    out = tmp_path / "out"
    export_store(root, out, progress=False)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    sidecar = json.loads((out / SIDECAR).read_text())
    sidecar["videos"]["x"] = {"file": str(victim)}  # absolute: outside the export folder
    sidecar["videos"]["y"] = {"file": "../precious.txt"}
    (out / SIDECAR).write_text(json.dumps(sidecar))
    export_store(root, out, overwrite=True, progress=False)
    assert victim.read_text() == "keep me"
    assert np.load(out / "a.npy").shape == (3, 6)

    sidecar = json.loads((out / SIDECAR).read_text())
    sidecar["videos"]["a"]["file"] = str(victim)  # a.npy no longer listed: featx will not replace it either
    (out / SIDECAR).write_text(json.dumps(sidecar))
    with pytest.raises(FeatxError, match="a.npy is not from an earlier featx export"):
        export_store(root, out, overwrite=True, progress=False)
    assert victim.read_text() == "keep me" and np.load(out / "a.npy").shape == (3, 6)


def test_import_refuses_a_sidecar_that_names_a_file_outside_its_folder(tmp_path):
    root = _store(tmp_path / "s")
    out = tmp_path / "out"
    export_store(root, out, progress=False)
    np.save(tmp_path / "outside.npy", np.zeros((3, 6), np.float32))
    sidecar = json.loads((out / SIDECAR).read_text())
    sidecar["videos"]["a"]["file"] = str(tmp_path / "outside.npy")
    (out / SIDECAR).write_text(json.dumps(sidecar))
    result = runner.invoke(app, ["import", str(out), "--out", str(tmp_path / "back")])
    one_error_line(result, "is not a file inside")


# -- a run is replaced only by a finished one, and only when asked --------------------------------------------
@pytest.mark.slow
def test_training_into_an_existing_run_needs_overwrite_and_a_failure_keeps_the_old_run(labelled_store, tmp_path, monkeypatch):
    store, labels = labelled_store
    run = tmp_path / "run"
    args = ["train-head", str(store), "--labels", str(labels), "--head", "avgpool", "--epochs", "1", "--out", str(run),
            "--no-progress"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, ["evaluate", str(run), str(store), "--labels", str(labels)]).exit_code == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert "evaluation.json" in before

    result = runner.invoke(app, args)
    one_error_line(result, "holds a run already", "--overwrite")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before

    import seqmodels.classify

    def full_disk(store, labels, config, out, *rest, **kw):
        (out / "checkpoint.pt").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(seqmodels.classify, "train_on_store", full_disk)
    result = runner.invoke(app, [*args, "--overwrite"])
    one_error_line(result, "No space left on device", "unchanged")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no stage left behind
    monkeypatch.undo()

    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "evaluation.json" not in {p.name for p in run.iterdir()}  # a new run, whole
    assert f"wrote {run}/" in result.output


def test_an_import_decides_what_is_done_again_under_the_writers_lease(tmp_path, monkeypatch):
    """Two imports of one folder started together: the second looked before the first finished. It must
    check again once it holds the lease, or it writes every video twice."""
    import featx.importer as importer
    from featx.store import load_features

    root = _store(tmp_path / "s")
    export_store(root, tmp_path / "out", progress=False)
    importer.import_folder(tmp_path / "out", tmp_path / "back", progress=False)
    real, calls = importer.ok_video_ids, []

    def stale_then_real(store):
        calls.append(store)
        return set() if len(calls) == 1 else real(store)  # the first look predates the other import's end

    monkeypatch.setattr(importer, "ok_video_ids", stale_then_real)
    summary = importer.import_folder(tmp_path / "out", tmp_path / "back", progress=False)
    assert len(calls) == 2 and summary.rows == 0
    rows = load_features(tmp_path / "back", columns=["video_id", "step"])
    assert not rows.duplicated().any() and len(rows) == 3 + 4


@pytest.mark.parametrize("fmt, name", [("npy", "b/c.npy"), ("csv", "a.csv"), ("hdf5", "features.h5")])
def test_an_exported_file_with_a_flipped_byte_does_not_import(tmp_path, fmt, name):
    pytest.importorskip("h5py")
    root = _store(tmp_path / "s")
    export_store(root, tmp_path / "out", fmt=fmt, progress=False)
    path = tmp_path / "out" / name
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # in the values, not the header: the file still parses
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["import", str(tmp_path / "out"), "--out", str(tmp_path / "back")])
    one_error_line(result, "sha256", name.split("/")[-1])
    assert not (tmp_path / "back").exists()


def test_a_truncated_matroska_video_is_a_failed_row_not_ok(tmp_path):
    """MKV declares no frame count, only a duration: a video cut to a quarter must not be `ok` with its first rows."""
    from featx.store import latest_manifest
    from tests.conftest import TINY_ARGS
    from tests.helpers import encode_h264

    rng = np.random.default_rng(0)
    (tmp_path / "v").mkdir()
    full = encode_h264(tmp_path / "v" / "full.mkv", (rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(80)), 8)
    data = full.read_bytes()
    (tmp_path / "v" / "cut.mkv").write_bytes(data[: len(data) // 4])
    result = runner.invoke(app, ["extract", str(tmp_path / "v"), "--out", str(tmp_path / "s"), "--fps", "2", *TINY_ARGS,
                                 "--no-progress"])
    manifest = latest_manifest(tmp_path / "s").set_index("video_id")
    assert manifest.loc["full", "status"] == "ok"
    assert manifest.loc["cut", "status"] == "error" and "truncated" in manifest.loc["cut", "error"], result.output


# -- a store is exactly what its parts and config say, for every reader ---------------------------------------
def test_a_part_copied_in_from_a_store_with_another_config_fails_verify_and_is_set_aside(tmp_path):
    import shutil

    from featx.store import PART_GLOB, load_features
    from featx.store.check import check_store

    ours = _store(tmp_path / "ours", ids=("a", "b", "c"))
    with StoreWriter(tmp_path / "other", toy_config(fps=5.0)) as writer:  # another sampling rate
        add_toy_video(writer, "z", 4)
    (foreign,) = (tmp_path / "other").glob(PART_GLOB)
    shutil.copy(foreign, ours / foreign.name)

    problems, _ = check_store(ours)
    assert foreign.name in problems.damaged and "fps" in problems.damaged[foreign.name]
    result = runner.invoke(app, ["info", str(ours), "--verify"])
    assert result.exit_code == 1 and "another extraction config" in result.output
    problems, done = check_store(ours, repair=True)
    assert (ours / "_damaged" / foreign.name).is_file() and not (ours / foreign.name).exists()
    assert set(load_features(ours, columns=["video_id"]).video_id) == {"a", "b", "c"}
    assert not check_store(ours)[0]


def test_a_stray_parquet_file_that_pandas_would_read_fails_verify_with_the_fix(tmp_path):
    import pandas as pd

    from featx.store.check import check_store

    root = _store(tmp_path / "s")
    part = next(root.glob("part-*.parquet"))
    (root / "copy.parquet").write_bytes(part.read_bytes())  # pandas would now read every row twice
    assert len(pd.read_parquet(root)) == 2 * (3 + 4)
    result = runner.invoke(app, ["info", str(root), "--verify"])
    assert result.exit_code == 1 and "copy.parquet" in result.output and "move" in result.output
    check_store(root, repair=True)
    assert len(pd.read_parquet(root)) == 3 + 4 and (root / "_damaged" / "copy.parquet").is_file()


@pytest.mark.parametrize("key, value", [("format_version", "1"), ("videos", []), ("column", 3), ("dtype", None)])
def test_a_sidecar_field_of_the_wrong_type_is_one_error_line(tmp_path, key, value):
    root = _store(tmp_path / "s")
    export_store(root, tmp_path / "out", progress=False)
    sidecar = json.loads((tmp_path / "out" / SIDECAR).read_text())
    sidecar[key] = value
    (tmp_path / "out" / SIDECAR).write_text(json.dumps(sidecar))
    result = runner.invoke(app, ["import", str(tmp_path / "out"), "--out", str(tmp_path / "back")])
    one_error_line(result, key)


def test_a_checkpoint_whose_fields_have_wrong_types_is_one_error_line(tmp_path):
    import torch

    from featx.digests import file_sha256
    from seqmodels.runs import load_run

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format_version": 2, "train": {}, "classes": "ab", "in_dim": 6, "store_config": None,
                "state_dict": {}}, run / "checkpoint.pt")
    (run / "config.json").write_text(json.dumps({"format_version": 2, "checkpoint_sha256": file_sha256(run / "checkpoint.pt")}))
    with pytest.raises(FeatxError, match="'classes' is missing or not a list"):
        load_run(run, lambda *a: None)


@pytest.mark.slow
def test_importing_more_files_than_the_open_file_limit_holds_them_open_one_at_a_time(tmp_path):
    """Mapped .npy rows queued for a part used to keep every file open until the part was flushed."""
    import resource
    import subprocess

    from tests.helpers import featx_command

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(300):
        np.save(folder / f"v{i:04d}.npy", np.full((3, 4), i, np.float32))

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))

    done = subprocess.run([featx_command(), "import", str(folder), "--out", str(tmp_path / "s"), "--source-fps", "2",
                           "--no-progress"], capture_output=True, text=True, timeout=300, preexec_fn=low_limit)
    assert done.returncode == 0, done.stderr
    assert "imported 300 videos" in done.stdout


# Principle 5: every bad input is one `error:` line.

@pytest.mark.parametrize("suffix, body", [(".txt", b"a.mp4\ncaf\xe9.mp4\n"), (".csv", b"path,video_id\na.mp4,caf\xe9\n")])
def test_a_list_file_that_is_not_utf8_is_one_error_line_naming_it(tmp_path, suffix, body):
    listed = tmp_path / f"list{suffix}"
    listed.write_bytes(body)
    result = runner.invoke(app, ["extract", str(listed), "--out", str(tmp_path / "s")])
    one_error_line(result, f"list{suffix}: not UTF-8 text (byte 0xe9")


def test_a_csv_list_saved_with_a_byte_order_mark_reads_its_path_column(tmp_path):
    from featx.inputs import collect_inputs

    listed = tmp_path / "list.csv"
    listed.write_bytes("path,video_id\nv/a.mp4,first\n".encode("utf-8-sig"))  # as Excel saves "CSV UTF-8"
    assert [v.video_id for v in collect_inputs([listed])] == ["first"]


@pytest.mark.parametrize("uri, needle", [("ftp://host/v.mp4", "not ftp:// URIs"), ("https://host/v.mp4", "not https://"),
                                         ("file://v.mp4", "takes an absolute path")])
def test_a_video_uri_featx_cannot_read_is_one_error_line(tmp_path, uri, needle):
    one_error_line(runner.invoke(app, ["extract", uri, "--out", str(tmp_path / "s")]), uri, needle)


def test_a_file_uri_with_an_absolute_path_is_that_file(tmp_path):
    from featx.inputs import collect_inputs

    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    assert [v.path for v in collect_inputs([f"file://{video}"])] == [video]


@pytest.mark.parametrize("command", [["info"], ["info", "--verify"], ["export", "--out", "e"]])
@pytest.mark.parametrize("uri, needle", [("nosuch://host/store", "not a store location featx can open"),
                                         ("file://relative/store", "takes an absolute path")])
def test_a_store_uri_featx_cannot_open_is_one_error_line(tmp_path, command, uri, needle):
    args = [command[0], uri, *command[1:]]
    one_error_line(runner.invoke(app, args), uri, needle)


def test_library_warnings_before_an_error_are_not_printed_and_after_success_are(capsys):
    import warnings

    import typer

    from cli import user_errors

    with warnings.catch_warnings(record=True) as shown, pytest.raises(typer.Exit):
        with user_errors():
            warnings.warn("a library's remark", UserWarning)
            raise FeatxError("the store is broken")
    assert capsys.readouterr().err == "error: the store is broken\n" and not shown
    with pytest.warns(UserWarning, match="a library's remark"):
        with user_errors():
            warnings.warn("a library's remark", UserWarning)


def _numeric_options():
    """(command, option) for every int or float option of every command."""
    import typing

    from typer.main import get_command

    for name, command in get_command(app).commands.items():
        for param in command.params:
            kind = param.type_descriptor.annotation
            if kind in (int, float) or set(typing.get_args(kind)) & {int, float}:
                yield name, param.opts[0]


# Arguments that are otherwise fine to parse (the paths need not exist: a bad number is refused before any is read).
_BASE = {"extract": ["extract", "v", "--out", "s"], "synth": ["synth", "v"], "info": ["info", "s"],
         "train-head": ["train-head", "s", "--labels", "l.csv", "--out", "r"], "evaluate": ["evaluate", "r", "s"],
         "predict": ["predict", "r", "s", "--out", "p.csv"], "import": ["import", "f", "--out", "s"],
         "demo": ["demo", "--out", "d"], "export": ["export", "s", "--out", "e"]}


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_every_numeric_option_refuses_a_value_that_makes_no_sense_in_one_line_naming_it(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    options = list(_numeric_options())
    assert len(options) >= 30 and ("extract", "--part-mb") in options
    for command, option in options:
        one_error_line(runner.invoke(app, [*_BASE[command], option, value]), option)
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize("text", [np.array([b"v1", b"v2"]), "a scalar string"])
def test_an_hdf5_text_dataset_is_one_error_line(tmp_path, text):
    import h5py

    (tmp_path / "f").mkdir()
    with h5py.File(tmp_path / "f" / "feats.h5", "w") as file:
        file["v1"] = np.ones((5, 8), np.float32)
        file.create_dataset("names", data=text, dtype=h5py.string_dtype() if isinstance(text, str) else None)
    result = runner.invoke(app, ["import", str(tmp_path / "f"), "--out", str(tmp_path / "s"), "--source-fps", "2", "--no-progress"])
    one_error_line(result, "feats.h5[names]: holds text, not numbers")


# The adversarial pass of this round (helper): symbolic links, interrupts mid-swap, outputs over inputs.

def _toy_store(root, ids=("a", "b")):
    with StoreWriter(root, toy_config()) as writer:
        for n, vid in enumerate(ids):
            add_toy_video(writer, vid, 3 + n, seed=n)
    return root


def test_an_out_through_a_symbolic_link_into_a_store_is_refused(tmp_path):
    store = _toy_store(tmp_path / "s")
    (tmp_path / "into_manifest").symlink_to(store / "_videos")
    (tmp_path / "into_store").symlink_to(store)
    for out in ("into_manifest", "into_store/sub", "into_manifest/p.parquet"):
        args = ["export", str(store), "--out", str(tmp_path / out)] if "." not in out else \
            ["predict", str(tmp_path / "run"), str(store), "--out", str(tmp_path / out)]
        one_error_line(runner.invoke(app, args), "is inside the store")
    assert sorted(p.name for p in (store / "_videos").iterdir()) == sorted(
        p.name.removeprefix("part-") for p in store.glob("part-*.parquet"))


def test_a_table_put_in_the_manifest_folder_is_no_manifest_row_and_fails_verify(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featx.store import ok_video_ids, open_store
    from featx.store.check import check_store

    store = _toy_store(tmp_path / "s")
    pq.write_table(pa.table({"video_id": ["a"], "t_start": [0.0]}), store / "_videos" / "featx_times.parquet")
    assert ok_video_ids(store) == {"a", "b"}  # the stray table is not read as manifest rows
    assert open_store(store).verify().stray == ["_videos/featx_times.parquet"]
    problems, repairs = check_store(store, repair=True)
    assert (store / "_damaged" / "featx_times.parquet").is_file() and not open_store(store).verify()


def _interrupt_on_call(monkeypatch, module, nth: int):
    """Make the `nth` os.replace made through `module` send this process SIGINT first (Ctrl-C mid-swap)."""
    import os
    import signal

    real, calls = os.replace, []

    def replace(a, b):
        calls.append(1)
        if len(calls) == nth:
            os.kill(os.getpid(), signal.SIGINT)
        real(a, b)

    monkeypatch.setattr(module.os, "replace", replace)
    return calls


def test_ctrl_c_while_export_overwrite_swaps_files_is_held_until_the_new_export_is_whole(tmp_path, monkeypatch):
    import featx.export

    store = _toy_store(tmp_path / "s", ids=("a", "b", "c"))
    out = tmp_path / "e"
    export_store(store, out, progress=False)
    (out / "notes.txt").write_text("mine")  # a file of the user's stays: the new export moves in file by file
    calls = _interrupt_on_call(monkeypatch, featx.export, 2)
    with pytest.raises(KeyboardInterrupt):
        export_store(store, out, overwrite=True, progress=False)
    assert len(calls) >= 3  # the moves went on after the interrupt arrived
    sidecar = json.loads((out / SIDECAR).read_text())
    assert sorted(sidecar["videos"]) == ["a", "b", "c"]
    assert all((out / entry["file"]).is_file() for entry in sidecar["videos"].values())
    assert (out / "notes.txt").read_text() == "mine"


def test_ctrl_c_while_a_retrained_run_replaces_the_old_one_keeps_exactly_one(tmp_path, monkeypatch):
    import seqmodels.runs
    from seqmodels.runs import staged_run_folder

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    _interrupt_on_call(monkeypatch, seqmodels.runs, 1)
    with pytest.raises(KeyboardInterrupt):
        with staged_run_folder(run, overwrite=True) as stage:
            (stage / "metrics.json").write_text("{}")
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_stages_left_by_a_dead_training_process_are_removed(tmp_path):
    from seqmodels.runs import staged_run_folder

    dead = tmp_path / ".run.featx-run-4194303.tmp"  # beyond the default pid_max: no such process
    dead.mkdir()
    with staged_run_folder(tmp_path / "run") as stage:
        (stage / "config.json").write_text("{}")
    assert not dead.exists() and (tmp_path / "run" / "config.json").is_file()


def test_export_never_writes_through_a_symbolic_link_out_of_its_folder(tmp_path):
    store = _toy_store(tmp_path / "s", ids=("sub/a", "b"))
    out, outside = tmp_path / "e", tmp_path / "outside"
    export_store(store, out, progress=False)
    outside.mkdir()
    import shutil

    shutil.rmtree(out / "sub")
    (out / "sub").symlink_to(outside)
    with pytest.raises(FeatxError, match="sub/a.npy would be written outside"):
        export_store(store, out, overwrite=True, progress=False)
    assert not any(outside.iterdir()) and (out / "b.npy").is_file()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_an_out_that_is_an_input_file_is_refused(tmp_path, command):
    annotations = tmp_path / "a.json"
    annotations.write_text('{"database": {}}')
    before = annotations.read_text()
    args = [command, str(tmp_path / "run"), str(tmp_path / "s"), "--annotations", str(annotations), "--out", str(annotations)]
    one_error_line(runner.invoke(app, args), "is also an input of this command")
    assert annotations.read_text() == before


def test_evaluate_writes_its_metrics_only_as_json(tmp_path):
    one_error_line(runner.invoke(app, ["evaluate", str(tmp_path / "r"), str(tmp_path / "s"), "--out", str(tmp_path / "m.csv")]),
                   "give a .json file")


def test_import_of_a_folder_holding_a_store_leaves_the_stores_own_files_alone(tmp_path):
    from featx.importer import find_sources

    (tmp_path / "f" / "store" / "_cache").mkdir(parents=True)
    np.save(tmp_path / "f" / "a.npy", np.ones((3, 4), np.float32))
    np.save(tmp_path / "f" / "store" / "_cache" / "feature-1.npy", np.ones((9, 4), np.float32))
    assert [s.video_id for s in find_sources(tmp_path / "f")] == ["a"]


def test_a_skipped_video_stored_from_another_file_is_said_so(tmp_path):
    from pathlib import Path

    from featx.inputs import VideoInput
    from featx.pipeline import ExtractSummary, _stored_from_elsewhere

    store = _toy_store(tmp_path / "s")  # toy records say /data/<id>.mp4
    given = [VideoInput(Path("/data/a.mp4"), "a"), VideoInput(Path("/elsewhere/b.mp4"), "b")]
    elsewhere = _stored_from_elsewhere(store, given)
    assert elsewhere == [("b", "/data/b.mp4", "/elsewhere/b.mp4")]
    lines = ExtractSummary(store=str(store), skipped=2, elsewhere=elsewhere).lines()
    assert "1 skipped video(s) were extracted from another file under the same id ('b': /data/b.mp4" in lines[1]


def test_an_annotation_json_saved_with_a_byte_order_mark_reads(tmp_path):
    from seqmodels.detection.annotations import load_annotations

    path = tmp_path / "a.json"
    text = '{"database": {"v": {"subset": "validation", "duration": 9, "annotations": [{"segment": [1, 2], "label": "x"}]}}}'
    path.write_bytes(text.encode("utf-8-sig"))
    assert list(load_annotations(path).videos) == ["v"]


# Round 3 of the adversarial pass (helper, on the Python API and the store package).

def test_every_reader_refuses_a_part_copied_in_from_a_store_with_another_config(tmp_path):
    from featx.store import load_features, load_sequences

    store = _toy_store(tmp_path / "s")
    with StoreWriter(tmp_path / "other", toy_config(backbone="toy2")) as writer:
        add_toy_video(writer, "z", 4, seed=9)
    for part in (tmp_path / "other").glob("part-*.parquet"):
        part.rename(store / part.name)  # copied in beside the store's own parts
    for read in (lambda: load_sequences(store, cache=False), lambda: load_features(store), lambda: load_sequences(store)):
        with pytest.raises(FeatxError, match="another extraction config"):
            read()
    one_error_line(runner.invoke(app, ["export", str(store), "--out", str(tmp_path / "e")]), "another extraction config")


@pytest.mark.parametrize("command, out", [("evaluate", "config.json"), ("predict", "config.json"), ("predict", "p.csv"),
                                          ("evaluate", "metrics.json")])
def test_evaluate_and_predict_never_write_into_the_run_they_read(tmp_path, command, out):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    one_error_line(runner.invoke(app, [command, str(run), str(tmp_path / "s"), "--out", str(run / out)]),
                   "is inside the run")
    assert (run / "config.json").read_text() == "{}"


@pytest.mark.parametrize("call, needle", [
    (lambda t: __import__("featx").extract(t / "v.mp4", None), "out must be a path"),
    (lambda t: __import__("featx").extract(t / "v.mp4", 5), "out must be a path"),
    (lambda t: __import__("featx").extract(b"v", t / "s"), "sources must be a path"),
    (lambda t: __import__("featx").extract({"a": 1}, t / "s"), "sources must be a path"),
    (lambda t: __import__("featx").extract([], t / "s"), "sources must be a path or a non-empty list"),
    (lambda t: __import__("featx").extract(t / "v.mp4", t / "s", fps="4"), "fps must be a number"),
    (lambda t: __import__("featx").extract(t / "v.mp4", t / "s", progress="no"), "progress must be True or False"),
    (lambda t: __import__("featx").extract(t / "v.mp4", t / "s", shard=(0, 2)), "shard must be a string"),
    (lambda t: __import__("featx").embed(None), "video must be a path"),
    (lambda t: __import__("featx").embed(t / "v.mp4", shard="0/2"), "shard is for stores"),
    (lambda t: __import__("featx").open_store(None), "path must be a path"),
    (lambda t: __import__("seqmodels").load_run(3), "path must be a path"),
    (lambda t: __import__("seqmodels").train(t / "s", None, labels=t / "l.csv"), "out must be a path"),
    (lambda t: __import__("seqmodels").train(t / "s", t / "r", labels=5), "labels must be a path"),
    (lambda t: __import__("seqmodels").train(t / "s", t / "r", labels=t / "l.csv", epochs="2"), "epochs must be a whole number"),
    (lambda t: __import__("seqmodels").train(t / "s", t / "r", labels=t / "l.csv", head=3), "head is a name"),
])
def test_the_python_api_refuses_arguments_of_the_wrong_type_in_one_line(tmp_path, call, needle):
    with pytest.raises(FeatxError, match=needle):
        call(tmp_path)
    assert not [p for p in tmp_path.iterdir()]  # nothing was written (no ./None, no ./5)


def test_a_store_handle_refuses_unknown_ids_and_columns_and_takes_one_id_as_a_string(tmp_path):
    from featx.store import open_store

    store = open_store(_toy_store(tmp_path / "s"))
    assert list(store.sequences(ids="a")) == ["a"] and set(store.rows(ids="b").video_id) == {"b"}
    with pytest.raises(FeatxError, match="no rows of video 'nope'"):
        store.sequences(ids=["nope"])
    with pytest.raises(FeatxError, match="no column 'zzz'"):
        store.rows(["zzz"])
    with pytest.raises(FeatxError, match="no column 'flow_feature'"):
        store.sequences(column="flow_feature")
    with pytest.raises(FeatxError, match="a video id is a string"):
        store.grid(3)
