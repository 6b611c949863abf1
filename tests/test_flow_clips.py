"""Flow clips for clip backbones: L flow fields as a (2, L, H, W) clip into the flow twin of the 3D network (its
first convolution cross-modality initialised), on the RGB clips' time grid."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from cli import app
from featx.backbones.video3d import KINETICS_STD
from featx.flow import encode_flow, optical_flow
from featx.store import read_config
from featx.video import FrameChunk, Preprocess, stream_frames

runner = CliRunner()


def _reference_r3d_18_flow_twin() -> nn.Module:
    """featx's seeded random r3d_18 (torch seed 0, classifier dropped), its stem convolution rebuilt by hand for
    2 flow channels: TSN's cross-modality rule, the mean of the RGB filters in each of the 2 channels."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18(weights=None)
    model.fc = nn.Identity()
    rgb = model.stem[0]
    flow = nn.Conv3d(2, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
    with torch.no_grad():
        flow.weight.copy_(rgb.weight.mean(dim=1, keepdim=True).expand(-1, 2, -1, -1, -1))
    model.stem[0] = flow
    return model.eval()


@pytest.mark.slow
def test_flow_clips_through_r3d_18_follow_the_rgb_clips(tiny_videos, tmp_path):
    video = sorted(tiny_videos.glob("*.mp4"))[0]  # 12 frames at 8 fps: 6 sampled at 4 fps, frames 0, 2, ... 10
    store = tmp_path / "s"
    result = runner.invoke(app, ["extract", str(video), "--out", str(store), "--backbone", "r3d_18", "--random-init",
                                 "--fps", "4", "--clip-len", "4", "--stream", "both", "--dtype", "float32",
                                 "--workers", "0", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(store).sort_values("step")
    # clips of sampled frames 0-3 and 4-5, the second padded with its last frame; their spans in video frames
    assert rows.frame_start.tolist() == [0, 8] and rows.frame_end.tolist() == [8, 12]
    config = read_config(store)
    assert (config.stream, config.flow_len) == ("both", 1)

    # the reference, computed apart: the video's frames as the backbone sees them, the flow t -> t+1 at each frame
    # t (the last frame repeats the last field), clip k = the fields at its frames, normalised as 2D flow is
    pre = Preprocess.from_config(config.input_size, config.crop_pct, config.interpolation,
                                 resize_size=config.resize_size)  # r3d_18: torchvision's 128 x 171
    frames = np.concatenate([c.pixels for c in stream_frames(video, 4.0, pre) if isinstance(c, FrameChunk)])
    fields = [encode_flow(optical_flow(frames[t], frames[t + 1])) for t in range(len(frames) - 1)]
    fields.append(fields[-1])
    assert len(fields) == 6
    clips = np.stack([np.stack([fields[t] for t in (0, 1, 2, 3)]), np.stack([fields[t] for t in (4, 5, 5, 5)])])
    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 255  # (2, 2, L, H, W)
    x = (x - 0.5) / (sum(KINETICS_STD) / 3)
    with torch.no_grad():
        expected = _reference_r3d_18_flow_twin()(x).numpy()
    got = np.stack(rows.flow_feature)
    assert got.shape == (2, 512)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert not np.allclose(got, np.stack(rows.feature))  # the RGB column holds other features


def test_flow_clips_take_one_field_per_frame(tiny_videos, tmp_path):
    result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(tmp_path / "s"), "--backbone", "r3d_18",
                                 "--random-init", "--clip-len", "4", "--stream", "both", "--flow-len", "3"])
    assert result.exit_code == 1 and "one flow field per frame" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_flow_clips_through_the_inflated_googlenet_write_a_store(tiny_videos, tmp_path):
    video = sorted(tiny_videos.glob("*.mp4"))[0]  # 12 frames at 8 fps: 3 sampled at 2 fps, one padded clip
    store = tmp_path / "s"
    result = runner.invoke(app, ["extract", str(video), "--out", str(store), "--backbone", "i3d-googlenet",
                                 "--random-init", "--fps", "2", "--clip-len", "4", "--stream", "flow", "--workers", "0",
                                 "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(store)
    assert rows.frame_start.tolist() == [0] and rows.frame_end.tolist() == [12]
    assert np.stack(rows.feature).shape == (1, 1024) and np.isfinite(np.stack(rows.feature)).all()
    config = read_config(store)
    assert (config.backbone, config.stream, config.flow_len) == ("i3d-googlenet", "flow", 1)
