"""Extracting clips: rows cover the video as documented, clip backbones and inflated ResNets end to end."""

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision.models.video as tvv
from typer.testing import CliRunner

from cli import app
from featx.clips import ClipWindow
from featx.store import load_sequences, read_manifest

runner = CliRunner()


def _clips(length, stride, tail, n, chunks=(5, 4)):
    window, out = ClipWindow(length, stride, tail), []
    frames = np.arange(n, dtype=np.uint8)[:, None, None, None].repeat(3, axis=3)
    at = 0
    for size in list(chunks) + [n]:
        if at >= n:
            break
        got = window.push(frames[at : at + size])
        at += size
        out += [] if got is None else [c[:, 0, 0, 0].tolist() for c in got]
    tail_clip = window.finish()
    out += [] if tail_clip is None else [c[:, 0, 0, 0].tolist() for c in tail_clip]
    return out, window


def test_sliding_window_with_overlap_and_a_padded_tail():
    clips, window = _clips(4, 3, "pad", 11)
    assert clips == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9], [9, 10, 10, 10]]
    assert window.held == 0


def test_drop_tail_and_gaps_between_clips():
    clips, _ = _clips(3, 5, "drop", 12)  # starts 0, 5; 10..12 is incomplete
    assert clips == [[0, 1, 2], [5, 6, 7]]
    assert _clips(4, 4, "drop", 3)[0] == []  # shorter than a clip
    assert _clips(4, 4, "pad", 3)[0] == [[0, 1, 2, 2]]


def test_the_window_holds_at_most_about_one_clip():
    window = ClipWindow(8, 8)
    for _ in range(100):
        window.push(np.zeros((3, 2, 2, 3), np.uint8))
        assert window.held < 8 + 3


@pytest.fixture(scope="module")
def r3d_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "r3d.pth"
    torch.manual_seed(0)
    torch.save(tvv.r3d_18(weights=None).state_dict(), path)
    return path


def _extract_r3d(videos, out, weights, *clip_options):
    return runner.invoke(app, ["extract", str(videos), "--out", str(out), "--backbone", "r3d_18", "--weights", str(weights),
                               *clip_options, "--workers", "0", "--device", "cpu", "--no-progress"])


@pytest.mark.slow
def test_r3d_clip_rows_cover_each_video(tiny_videos, tmp_path, r3d_weights):
    out = tmp_path / "s"
    result = _extract_r3d(tiny_videos, out, r3d_weights, "--clip-len", "4", "--clip-stride", "3")
    assert result.exit_code == 0, result.output
    assert "clips" in result.output
    df = pd.read_parquet(out)
    manifest = read_manifest(out).set_index("video_id")
    for vid, rows in df.groupby("video_id"):
        rows = rows.sort_values("step")
        n = int(manifest.loc[vid, "frames"])  # every frame sampled (no --fps)
        full = [s for s in range(0, n, 3) if s + 4 <= n]
        tail = [full[-1] + 3] if full[-1] + 4 < n else []  # the padded clip after the last full one
        assert rows.frame_start.tolist() == full + tail
        assert rows.frame_end.tolist() == [min(s + 4, n) for s in full + tail]  # frames [start, end)
        np.testing.assert_allclose(rows.t_center, (rows.t_start + rows.t_end) / 2)
        assert (rows.frame_end - rows.frame_start <= 4).all()
    assert len(next(iter(load_sequences(out).values()))[0]) == 512


@pytest.mark.slow
def test_videos_shorter_than_one_dropped_clip_fail_with_the_reason(tiny_videos, tmp_path, r3d_weights):
    out = tmp_path / "s"
    result = _extract_r3d(tiny_videos, out, r3d_weights, "--clip-len", "16", "--clip-tail", "drop")
    assert result.exit_code == 0, result.output
    assert "ok 0 | failed 4" in result.output
    manifest = read_manifest(out)
    assert (manifest.status == "error").all() and len(manifest) == 4
    assert manifest.error.str.startswith("shorter than one clip (12 frames < --clip-len 16)").all()
    assert (manifest.frames == 12).all()  # what the decoder learnt, though no row was written


@pytest.mark.slow
def test_inflated_resnet_extracts_clips(tiny_videos, tmp_path):
    out = tmp_path / "s"
    result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(out), "--backbone", "resnet18", "--random-init",
                                 "--inflate", "center", "--clip-len", "4", "--clip-tail", "drop", "--workers", "0",
                                 "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    seqs = load_sequences(out)
    assert len(seqs) == 4 and all(s.shape[1] == 512 for s in seqs.values())


@pytest.mark.slow
def test_c3d_defaults_to_16_frame_clips_and_gives_fc6(tiny_videos, tmp_path):
    out = tmp_path / "s"
    result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(out), "--backbone", "c3d", "--random-init",
                                 "--workers", "0", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    assert len(df) == 4 and (df.frame_start == 0).all() and (df.frame_end == 12).all()  # one padded clip per 12-frame video
    assert len(df.feature.iloc[0]) == 4096


def test_clip_options_are_checked(tiny_videos, tmp_path):
    result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(tmp_path / "s"), "--backbone", "resnet18",
                                 "--random-init", "--clip-len", "4", "--device", "cpu"])
    assert result.exit_code == 1 and "--inflate" in result.output


@pytest.mark.slow
def test_i3d_googlenet_extracts_clips_from_a_googlenet_file(tiny_videos, tmp_path):
    import torchvision

    from featx.store import read_config

    torch.manual_seed(0)
    weights = tmp_path / "googlenet.pth"
    torch.save(torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True).state_dict(), weights)
    out = tmp_path / "s"
    result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(out), "--backbone", "i3d-googlenet",
                                 "--weights", str(weights), "--fps", "2", "--clip-len", "2", "--clip-tail", "drop",
                                 "--workers", "0", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    df = pd.read_parquet(out)
    assert len(df) == 4 and (df.frame_start == 0).all()  # 1.5 s at 2 fps: frames 0, 4, 8; one 2-frame clip each
    assert len(df.feature.iloc[0]) == 1024
    config = read_config(out)
    assert (config.input_size, config.mean, config.clip_len) == ((3, 224, 224), (0.5, 0.5, 0.5), 2)


@pytest.mark.slow
def test_c3d_with_a_mean_cube_records_it_and_refuses_another_cube_into_the_same_store(tiny_videos, tmp_path):
    import hashlib

    from featx.store import read_config

    cubes = []
    for value in (100.0, 90.0):
        cubes.append(tmp_path / f"mean{int(value)}.npy")
        np.save(cubes[-1], np.full((3, 16, 128, 171), value, np.float32))
    out = tmp_path / "s"
    common = ["extract", str(tiny_videos), "--out", str(out), "--backbone", "c3d", "--random-init", "--workers", "0",
              "--device", "cpu", "--no-progress"]
    result = runner.invoke(app, [*common, "--mean-cube", str(cubes[0])])
    assert result.exit_code == 0, result.output
    config = read_config(out)
    assert config.mean_cube == str(cubes[0].resolve())
    assert config.mean_cube_sha256 == hashlib.sha256(cubes[0].read_bytes()).hexdigest()
    assert len(pd.read_parquet(out)) == 4
    result = runner.invoke(app, [*common, "--mean-cube", str(cubes[1])])  # another cube: another store
    assert result.exit_code == 1 and "mean_cube_sha256" in result.output


def test_mean_cube_and_inflate_refusals_are_one_line_at_the_cli(tiny_videos, tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((3, 16, 112, 112), np.float32))
    common = ["extract", str(tiny_videos), "--out", str(tmp_path / "s"), "--random-init", "--device", "cpu"]
    result = runner.invoke(app, [*common, "--backbone", "r3d_18", "--mean-cube", str(tmp_path / "m.npy")])
    assert result.exit_code == 1 and "only c3d, c3d_fc7 take one, not r3d_18" in result.output
    result = runner.invoke(app, [*common, "--backbone", "vit_tiny_patch16_224", "--inflate", "mean", "--clip-len", "4"])
    assert result.exit_code == 1
    assert "--inflate vit_tiny_patch16_224: cannot inflate the model itself (VisionTransformer)" in result.output
    assert len(result.output.strip().splitlines()) == 1
