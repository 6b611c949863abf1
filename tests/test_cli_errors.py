"""Bad input and a hostile system through the CLI: one `error:` line on stderr, exit 1, nothing half-written."""

import errno
import json

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from featx.store import StoreWriter
from tests.conftest import TINY_ARGS
from tests.helpers import add_toy_video, one_error_line, toy_config

runner = CliRunner()


@pytest.fixture()
def toy_store(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, toy_config()) as writer:
        for k in range(4):
            add_toy_video(writer, f"v{k}", 6, k)
    return root


@pytest.mark.slow
def test_a_full_disk_during_extraction_is_one_line_and_leaves_no_half_written_part(tmp_path, tiny_videos, monkeypatch):
    from featx.store import location

    class FullDisk:
        def __init__(self, path, *args, **kwargs):
            self.path = path
            open(path, "wb").close()  # the temp file exists, as a real writer's would

        def write_table(self, table):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    monkeypatch.setattr(location, "parquet_writer", FullDisk)
    out = tmp_path / "s"
    result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(out), *TINY_ARGS, "--no-progress"])
    one_error_line(result, "No space left on device")
    assert not list(out.glob("*.parquet")) and not list(out.glob(".*.tmp"))
    assert not list((out / "_leases").glob("writer-*"))  # the lease is released: the next run may start


def test_fps_infinity_is_refused_before_any_work(tmp_path, tiny_videos):
    result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(tmp_path / "s"), "--fps", "inf", *TINY_ARGS])
    one_error_line(result, "--fps must be a positive number")
    assert not (tmp_path / "s").exists()


def test_synth_into_an_existing_file_is_one_line(tmp_path):
    (tmp_path / "taken").write_text("mine")
    one_error_line(runner.invoke(app, ["synth", str(tmp_path / "taken")]), "is a file; give a folder")
    assert (tmp_path / "taken").read_text() == "mine"


def test_predict_into_a_missing_folder_is_refused_before_computing(tmp_path, toy_store):
    result = runner.invoke(app, ["predict", str(tmp_path / "no-run"), str(toy_store), "--out", str(tmp_path / "missing" / "p.csv")])
    one_error_line(result, "the folder", "does not exist")


def test_an_output_under_a_file_is_refused(tmp_path, toy_store):
    (tmp_path / "file").write_text("x")
    result = runner.invoke(app, ["predict", str(tmp_path / "no-run"), str(toy_store), "--out", str(tmp_path / "file" / "p.csv")])
    one_error_line(result, "is a file, not a folder")


def test_a_system_error_reaching_the_cli_is_one_line(toy_store, monkeypatch):
    """An unreachable bucket (`featx info s3://...` offline) raises OSError inside pyarrow."""
    import featx.store

    def offline(root):
        raise OSError("When resolving region for bucket 'b': AWS Error NETWORK_CONNECTION\nmore detail")

    monkeypatch.setattr(featx.store, "store_info", offline)
    one_error_line(runner.invoke(app, ["info", "s3://b/store"]), "NETWORK_CONNECTION")


def test_a_non_numeric_csv_duration_is_one_line(tmp_path, toy_store):
    csv = tmp_path / "a.csv"
    csv.write_text("video_id,start,end,label,duration\nv0,0.5,1.5,jump,abc\n")
    result = runner.invoke(app, ["train-head", str(toy_store), "--annotations", str(csv), "--out", str(tmp_path / "r")])
    one_error_line(result, "line 2 (v0): duration must be a number of seconds, not 'abc'")


def test_null_annotations_mean_a_video_with_no_actions(tmp_path):
    from seqmodels.detection.annotations import load_annotations

    path = tmp_path / "a.json"
    path.write_text(json.dumps({"database": {
        "v0": {"subset": "training", "duration": 3.0, "annotations": None},
        "v1": {"subset": "training", "duration": 3.0, "annotations": [{"segment": [0.5, 1.5], "label": "jump"}]},
    }}))
    videos = load_annotations(path).videos
    assert videos["v0"].segments == [] and len(videos["v1"].segments) == 1
    path.write_text(json.dumps({"database": {"v0": {"annotations": "jump"}}}))
    with pytest.raises(Exception, match="annotations must be a list, not str"):
        load_annotations(path)


@pytest.mark.slow
def test_a_video_too_narrow_to_resize_is_a_failed_row_saying_so(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    with av.open(str(folder / "line.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=8)
        stream.width, stream.height, stream.pix_fmt = 4096, 1, "gray"
        for _ in range(4):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((1, 4096), np.uint8), format="gray")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    result = runner.invoke(app, ["extract", str(folder), "--out", str(tmp_path / "s"), *TINY_ARGS, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "failed line: frames of 4096x1 pixels are too narrow to resize" in result.stdout


def test_a_store_with_nan_features_is_refused_for_training_instead_of_training_to_nan(tmp_path):
    """What an old store (no page checksums) with a flipped byte reads as."""
    root = tmp_path / "store"
    with StoreWriter(root, toy_config()) as writer:
        for k in range(4):
            feats = np.random.default_rng(k).normal(size=(6, 6)).astype(np.float32)
            if k == 2:
                feats[3, 1] = np.nan
            t = np.arange(6) * 0.5
            writer.add_video({"path": f"/v{k}.mp4", "video_id": f"v{k}"}, writer.table(f"v{k}", t, t + 0.5, t * 0, t * 0 + 1, feats))
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,label\nv0,a\nv1,b\nv2,a\nv3,b\n")
    result = runner.invoke(app, ["train-head", str(root), "--labels", str(labels), "--head", "avgpool", "--out", str(tmp_path / "r")])
    one_error_line(result, "features of 1 video(s) are not finite (NaN or inf): 'v2'")
    assert not (tmp_path / "r").exists()


def test_a_read_only_output_is_one_line(tmp_path, tiny_videos, monkeypatch):
    import pathlib

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(tmp_path / "s"), *TINY_ARGS, "--no-progress"])
    one_error_line(result, "cannot create the store (Read-only file system)")


def test_a_truncated_part_is_one_line_for_training_and_a_problem_line_in_info(tmp_path, toy_store):
    part = sorted(toy_store.glob("part-*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:200])
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,label\nv0,a\nv1,b\nv2,a\nv3,b\n")
    result = runner.invoke(app, ["train-head", str(toy_store), "--labels", str(labels), "--out", str(tmp_path / "r")])
    one_error_line(result, "damaged part", part.name, "featx info --repair")  # its footer is found unreadable
    info = runner.invoke(app, ["info", str(toy_store)])
    assert info.exit_code == 0 and f"problem    damaged part {part.name}" in info.stdout


@pytest.mark.parametrize("args, message", [
    (["--seconds", "nan"], "a finite --seconds > 0"),
    (["--seconds", "inf"], "a finite --seconds > 0"),
    (["--size", "100000"], "from 16 to 4096"),
])
def test_synth_refuses_numbers_it_cannot_honour_before_making_anything(tmp_path, args, message):
    one_error_line(runner.invoke(app, ["synth", str(tmp_path / "out"), "--videos", "1", *args]), message)
    assert not (tmp_path / "out").exists()


def test_synth_leaves_only_whole_videos(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "out"), "--videos", "2", "--seconds", "1", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "out").glob(".*partial*"))


def test_synth_resumes_its_own_folder_and_refuses_to_overwrite_another(tmp_path):
    args = ["synth", str(tmp_path / "out"), "--videos", "2", "--seconds", "1", "--size", "32"]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0  # the same command again: resumes
    labels = (tmp_path / "out" / "labels.csv").read_text()
    one_error_line(runner.invoke(app, [*args, "--seed", "5"]), "made by featx synth with other settings (seed)")
    assert (tmp_path / "out" / "labels.csv").read_text() == labels
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    one_error_line(runner.invoke(app, ["synth", str(tmp_path / "mine")]), "not made by featx synth")
