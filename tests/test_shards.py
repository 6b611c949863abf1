import subprocess

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from featx.errors import FeatxError
from featx.inputs import VideoInput
from featx.shards import parse_shard, select_shard, shard_of
from featx.store import latest_manifest
from featx.synth import make_trimmed
from tests.conftest import TINY_ARGS
from tests.helpers import featx_command

runner = CliRunner()


def test_shards_partition_the_videos_stably():
    videos = [VideoInput(None, f"folder/video_{k}") for k in range(200)]
    parts = [select_shard(videos, i, 3) for i in range(3)]
    assert sorted(v.video_id for p in parts for v in p) == sorted(v.video_id for v in videos)
    assert all(40 < len(p) < 95 for p in parts)  # roughly even
    # a stable hash: the same id always lands in the same shard (sha1 of "a", first 8 bytes, mod 7)
    assert shard_of("a", 7) == int("86f7e437faa5a7fc", 16) % 7


@pytest.mark.parametrize("text", ["3", "3/3", "-1/2", "a/b", "1/0"])
def test_bad_shard_specs_are_refused(text):
    with pytest.raises(FeatxError, match="--shard"):
        parse_shard(text)


@pytest.mark.slow
def test_two_shards_at_once_into_one_store_lose_nothing(tmp_path):
    make_trimmed(tmp_path / "v", videos=10, seconds=1, fps=4, size=32, seed=9)
    store = tmp_path / "s"
    base = [featx_command(), "extract", str(tmp_path / "v"), "--out", str(store), *TINY_ARGS, "--no-progress",
            "--part-mb", "0.00001"]
    procs = [subprocess.Popen([*base, "--shard", f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    rows = pd.read_parquet(store)
    assert rows.video_id.nunique() == 10 and len(rows) == 10 * 4
    assert not rows.duplicated(["video_id", "step"]).any()
    manifest = latest_manifest(store)
    assert sorted(manifest.shard.unique()) == ["0/2", "1/2"] and (manifest.status == "ok").all()
    info = runner.invoke(app, ["info", str(store), "--inputs", str(tmp_path / "v")])
    assert "shard 0/2:" in info.output and "complete: every input has an ok or error row" in info.output


def test_info_lists_inputs_not_extracted_yet(tmp_path):
    make_trimmed(tmp_path / "v", videos=6, seconds=1, fps=4, size=32, seed=9)
    store = tmp_path / "s"
    result = runner.invoke(app, ["extract", str(tmp_path / "v"), "--out", str(store), *TINY_ARGS, "--shard", "0/2", "--no-progress"])
    assert result.exit_code == 0, result.output
    info = runner.invoke(app, ["info", str(store), "--inputs", str(tmp_path / "v")])
    expected_missing = [v for v in sorted(p.stem for p in (tmp_path / "v").glob("*.mp4")) if shard_of(v, 2) == 1]
    assert f"{len(expected_missing)} not done yet" in info.output
    assert all(f"missing {v}" in info.output for v in expected_missing)


@pytest.mark.slow
def test_a_local_ray_run_writes_the_same_store_as_one_process(tmp_path):
    import numpy as np  # Ray itself is a test extra (featx[ray] for users); the engine imports it

    from featx.store import load_sequences

    make_trimmed(tmp_path / "v", videos=6, seconds=1, fps=4, size=32, seed=11)
    plain = runner.invoke(app, ["extract", str(tmp_path / "v"), "--out", str(tmp_path / "plain"), *TINY_ARGS, "--no-progress"])
    assert plain.exit_code == 0, plain.output
    on_ray = subprocess.run(
        [featx_command(), "extract", str(tmp_path / "v"), "--out", str(tmp_path / "ray"), *TINY_ARGS, "--no-progress",
         "--engine", "ray", "--shards", "2"], capture_output=True, text=True, timeout=600,
    )
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    assert "ok 6 | failed 0" in on_ray.stdout
    a, b = load_sequences(tmp_path / "plain"), load_sequences(tmp_path / "ray")
    assert sorted(a) == sorted(b)
    for vid in a:
        np.testing.assert_allclose(a[vid].astype(np.float32), b[vid].astype(np.float32), rtol=1e-3, atol=1e-3)
    cols = ["video_id", "step", "t_start", "t_end", "frame_start", "frame_end"]
    plain_rows = pd.read_parquet(tmp_path / "plain", columns=cols).sort_values(cols[:2], ignore_index=True)
    ray_rows = pd.read_parquet(tmp_path / "ray", columns=cols).sort_values(cols[:2], ignore_index=True)
    pd.testing.assert_frame_equal(plain_rows, ray_rows)
    assert sorted(latest_manifest(tmp_path / "ray").shard.unique()) == ["0/2", "1/2"]


@pytest.mark.slow
def test_a_killed_shard_run_again_completes_the_store(tmp_path):
    import os
    import signal

    from tests.test_cli import _slow_extraction

    make_trimmed(tmp_path / "v", videos=16, seconds=1.5, fps=8, size=32, seed=12)
    first = [featx_command(), "extract", str(tmp_path / "v"), "--out", str(tmp_path / "s"), "--backbone", "resnet18",
             "--random-init", "--workers", "0", "--device", "cpu", "--no-progress", "--shard", "0/2"]
    assert subprocess.run(first, capture_output=True, timeout=300).returncode == 0
    proc, store, cmd = _slow_extraction(tmp_path, 16, "0.000001", seed=12, capture=False, extra=("--shard", "1/2"))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    incomplete = runner.invoke(app, ["info", str(store), "--inputs", str(tmp_path / "v")])
    assert "not done yet" in incomplete.output
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0  # the same shard, again
    complete = runner.invoke(app, ["info", str(store), "--inputs", str(tmp_path / "v")])
    assert "complete: every input has an ok or error row" in complete.output
    rows = pd.read_parquet(store)
    assert rows.video_id.nunique() == 16 and not rows.duplicated(["video_id", "step"]).any()
