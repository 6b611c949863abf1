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
    from featx.store_check import check_store

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

    from featx.store_check import check_store

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

    done = subprocess.run([featx_command(), "import", str(folder), "--out", str(tmp_path / "s"), "--fps", "2",
                           "--no-progress"], capture_output=True, text=True, timeout=300, preexec_fn=low_limit)
    assert done.returncode == 0, done.stderr
    assert "imported 300 videos" in done.stdout
