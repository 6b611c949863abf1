import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from featx.store import read_manifest
from featx.synth import make_trimmed
from tests.conftest import TINY_ARGS
from tests.helpers import featx_command

runner = CliRunner()


def test_help_lists_the_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("extract", "info", "synth", "demo"):
        assert command in result.output


@pytest.mark.slow
def test_synth_extract_info_round_trip(tmp_path):
    assert runner.invoke(app, ["synth", str(tmp_path / "v"), "--videos", "2", "--seconds", "1", "--size", "32"]).exit_code == 0
    result = runner.invoke(app, ["extract", str(tmp_path / "v"), "--out", str(tmp_path / "s"), "--fps", "4", *TINY_ARGS])
    assert result.exit_code == 0, result.output
    assert "ok 2 | failed 0" in result.output
    info = runner.invoke(app, ["info", str(tmp_path / "s")])
    assert info.exit_code == 0
    assert "test_efficientnet" in info.output and "2 ok, 0 failed" in info.output
    assert len(pd.read_parquet(tmp_path / "s")) == 8  # 2 videos x 1 s at 4 fps


@pytest.mark.parametrize(
    "args, message",
    [
        (["extract", "/no/such/folder", "--out", "S"], "no such file or folder"),
        (["extract", "{videos}", "--out", "S", "--backbone", "resnet_18", "--random-init"], "did you mean"),
        (["extract", "{videos}", "--out", "S", "--dtype", "int8", "--random-init"], "--dtype must be one of"),
        (["extract", "{videos}", "--out", "S", "--weights", "/no/w.pth"], "--weights /no/w.pth: no such file"),
        (["info", "{videos}"], "not a featx store"),
        (["synth", "S", "--kind", "sideways"], "--kind must be trimmed, untrimmed or motion"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_1(tiny_videos, tmp_path, args, message):
    args = [a.replace("{videos}", str(tiny_videos)).replace("S", str(tmp_path / "s")) if a in ("{videos}", "S") else a for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.slow
def test_strict_turns_failed_videos_into_exit_code_1(tiny_videos, tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    shutil.copy(tiny_videos / "green_then_yellow_000.mp4", folder)
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    out = ["--out", str(tmp_path / "s"), *TINY_ARGS]
    relaxed = runner.invoke(app, ["extract", str(folder), *out])
    assert relaxed.exit_code == 0 and "failed broken" in relaxed.output
    strict = runner.invoke(app, ["extract", str(folder), *out, "--strict"])
    assert strict.exit_code == 1


@pytest.mark.slow
def test_demo_runs_on_the_bundled_backbone_and_trains_two_heads(tmp_path):
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--videos", "8", "--untrimmed", "4"])
    assert result.exit_code == 0, result.output
    assert "ok 8 | failed 0" in result.output and "pd.read_parquet" in result.output
    assert "avgpool  accuracy" in result.output and "lstm     accuracy" in result.output
    df = pd.read_parquet(tmp_path / "demo" / "store")
    assert df.groupby("video_id").size().tolist() == [12] * 8  # 3 s at 4 fps, every frame
    assert len(df.feature.iloc[0]) == 1280
    assert (tmp_path / "demo" / "runs" / "lstm" / "checkpoint.pt").is_file()
    assert "mAP" in result.output and (tmp_path / "demo" / "runs" / "actionformer" / "timeline.png").is_file()


@pytest.mark.slow
def test_installed_command_runs_in_a_real_subprocess(tiny_videos, tmp_path):
    cmd = [featx_command(), "extract", str(tiny_videos), "--out", str(tmp_path / "s"), *TINY_ARGS, "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ok 4 | failed 0" in done.stdout
    info = subprocess.run([featx_command(), "info", str(tmp_path / "s")], capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and "4 ok, 0 failed" in info.stdout


def _slow_extraction(tmp_path, videos: int, part_mb: str, seed: int, capture: bool, extra: tuple = ()):
    """Start `featx extract` in its own process group on `videos` small videos, and wait until its first part
    is committed. resnet18 at 224 px runs about 45 frames/s here: 12 frames a video leave time to act."""
    folder = tmp_path / "v"
    if not folder.exists():
        make_trimmed(folder, videos=videos, seconds=1.5, fps=8, size=32, seed=seed)
    store = tmp_path / "s"
    cmd = [featx_command(), "extract", str(folder), "--out", str(store), "--backbone", "resnet18", "--random-init",
           "--batch-size", "4", "--workers", "1", "--device", "cpu", "--part-mb", part_mb, "--no-progress", *extra]
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=out, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(store.glob("part-*.parquet")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run must still be going for this test to mean anything"
    return proc, store, cmd


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path):
    proc, store, cmd = _slow_extraction(tmp_path, 20, "0.000001", seed=3, capture=False)  # a part per video
    os.killpg(proc.pid, signal.SIGKILL)  # the run and its decoding worker, at once
    proc.wait()
    manifest = read_manifest(store)
    killed_with = set(manifest.video_id[manifest.status == "ok"])
    assert 0 < len(killed_with) < 20
    rows = pd.read_parquet(store)
    assert set(rows.video_id) == killed_with  # committed videos only, each whole
    assert (rows.groupby("video_id").size() == 12).all()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {len(killed_with)}" in rerun.stdout
    rows = pd.read_parquet(store)
    assert rows.video_id.nunique() == 20 and len(rows) == 20 * 12
    assert not rows.duplicated(["video_id", "step"]).any()


@pytest.mark.slow
def test_ctrl_c_commits_finished_videos_and_says_how_to_resume(tmp_path):
    # a part holds about 3 videos (12 rows x 512 float16 each): some commit during the run, the rest on Ctrl-C
    proc, store, _ = _slow_extraction(tmp_path, 12, "0.03", seed=4, capture=True)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    committed = set(read_manifest(store).video_id)
    assert 0 < len(committed) < 12
    rows = pd.read_parquet(store)
    assert set(rows.video_id) == committed and (rows.groupby("video_id").size() == 12).all()


def test_info_shows_only_the_settings_that_apply_and_lists_videos_on_request(tmp_path):
    from featx.store import StoreWriter
    from tests.helpers import add_toy_video, toy_config, toy_record

    with StoreWriter(tmp_path / "s", toy_config(fps=None)) as writer:
        add_toy_video(writer, "a", 3)
        writer.add_error({**toy_record("b"), "error": "bad file"})
    plain = CliRunner().invoke(app, ["info", str(tmp_path / "s")]).stdout
    keys = {line.split()[0] for line in plain.splitlines()}
    assert {"backbone", "fps", "stream"} <= keys and not keys & {"clip_tail", "inflate_time", "flow_len", "flow_method"}
    assert "fps            every frame" in plain
    listed = CliRunner().invoke(app, ["info", str(tmp_path / "s"), "--videos"]).stdout.splitlines()
    assert "  a  ok  3 rows  2.00 s  25.000 fps" in listed and "  b  error  0 rows  2.00 s  25.000 fps" in listed
    clip = toy_config(clip_len=4, stream="both", flow_len=1)
    with StoreWriter(tmp_path / "c", clip) as writer:
        writer.add_video(toy_record("c"), writer.table("c", [0.0], [2.0], [0], [4], np.ones((1, 6), np.float32),
                                                      np.ones((1, 6), np.float32)))
    assert {"clip_tail", "flow_len", "flow_method"} <= {line.split()[0] for line in
                                                         CliRunner().invoke(app, ["info", str(tmp_path / "c")]).stdout.splitlines()}
