"""--layer: features from a named module, pooled over space, time or tokens; wrong names give the nearest."""

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch import nn
from typer.testing import CliRunner

from cli import app
from featx.backbones.tap import LayerTap, pooled
from featx.errors import FeatxError
from featx.store import read_config
from tests.conftest import TINY_ARGS
from tests.helpers import one_error_line


def test_pooled_averages_every_axis_after_the_channels_by_hand():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(pooled(maps)[0], torch.tensor([1.5, 5.5, 9.5]))  # (0+1+2+3)/4, (4+...+7)/4, ...
    clips = torch.ones(1, 4, 3, 2, 2) * torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1, 1)
    assert torch.equal(pooled(clips), torch.tensor([[1.0, 2.0, 3.0, 4.0]]))
    tokens = torch.tensor([[[1.0, 10.0], [3.0, 30.0]]])  # (B=1, N=2, C=2)
    assert torch.equal(pooled((tokens, "attentions")), torch.tensor([[2.0, 20.0]]))  # a tuple: its first tensor


def test_the_last_feature_layer_tapped_is_the_models_own_pooled_feature():
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        want = model(x)  # timm: global average pool of forward_features (after bn2)
        got = LayerTap(model, "bn2")(x)
        early = LayerTap(model, "blocks.1")(x)
        maps = model.blocks[1](model.blocks[0](model.bn1(model.conv_stem(x))))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(early, maps.mean(dim=(2, 3)))


def test_a_wrong_layer_name_is_one_error_naming_the_nearest():
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    with pytest.raises(FeatxError, match=r"--layer 'block.1': no such module.*nearest: .*blocks\.1"):
        LayerTap(model, "block.1")


def test_extract_with_a_layer_records_it_and_it_is_the_stores_identity(tmp_path, tiny_videos):
    store = tmp_path / "s"
    runner = CliRunner()
    done = runner.invoke(app, ["extract", str(tiny_videos), "-o", str(store), *TINY_ARGS, "--layer", "blocks.1",
                               "--no-progress"])
    assert done.exit_code == 0, done.output
    config = read_config(store)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    assert config.layer == "blocks.1" and config.feature_dim == model.blocks[1][-1].conv_pwl.out_channels
    rows = pd.read_parquet(store, columns=["feature"])
    assert len(rows) > 0 and np.stack(rows.feature).shape[1] == config.feature_dim
    line = one_error_line(runner.invoke(app, ["extract", str(tiny_videos), "-o", str(store), *TINY_ARGS]))
    assert "layer" in line
    assert "nearest" in one_error_line(runner.invoke(app, ["extract", str(tiny_videos), "-o", str(tmp_path / "t"),
                                                           *TINY_ARGS, "--layer", "blocks.x"]))


def test_channels_last_outputs_of_linear_and_layernorm_pool_over_space():
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=0).eval()
    name = "stages.0.blocks.0.norm"  # a LayerNorm on (B, H, W, C)
    x = torch.randn(1, 3, 64, 64)
    kept = []
    model.get_submodule(name).register_forward_hook(lambda m, i, o: kept.append(o))
    with torch.inference_mode():
        got = LayerTap(model, name)(x)
    assert kept[-1].ndim == 4 and got.shape == (1, kept[-1].shape[-1])
    torch.testing.assert_close(got, kept[-1].mean(dim=(1, 2)))


def test_a_copied_tap_taps_its_own_copy():
    """The flow stream's twin is a deep copy of the RGB backbone: its tap must read the copy's module."""
    import copy

    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0).eval()
    tap = LayerTap(model, "blocks.1")
    twin = copy.deepcopy(tap)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(twin(x), tap(x))


def test_a_stage_of_channels_last_blocks_pools_over_space_and_time_and_a_convnext_block_does_not():
    """torchvision's Swin3D stages hold LayerNorm and Linear layers and return (B, T, H, W, C) maps; timm's ConvNeXt
    blocks hold them too but return (B, C, H, W)."""
    class ChannelsLastStage(nn.Module):  # a Swin3D stage's shape: (B, T, H, W, C) in, LayerNorm + MLP, same out
        def __init__(self, c):
            super().__init__()
            self.norm, self.mlp = nn.LayerNorm(c), nn.Linear(c, c)

        def forward(self, x):
            return x + self.mlp(self.norm(x))

    model = nn.Sequential(ChannelsLastStage(6), nn.Linear(6, 12))  # stage, then a patch-merging-like widening
    x = torch.randn(2, 3, 4, 5, 6)  # (B, T, H, W, C)
    with torch.inference_mode():
        stage = LayerTap(model, "0")(x)
        stage_out = model[0](x)
    torch.testing.assert_close(stage, stage_out.mean(dim=(1, 2, 3)))  # (B, C): over time and space
    convnext = timm.create_model("convnext_atto", pretrained=False, num_classes=0).eval()
    name = "stages.0.blocks.0"  # Linear layers inside, (B, C, H, W) out
    kept = []
    convnext.get_submodule(name).register_forward_hook(lambda m, i, o: kept.append(o))
    with torch.inference_mode():
        got = LayerTap(convnext, name)(torch.randn(1, 3, 64, 64))
    torch.testing.assert_close(got, kept[-1].mean(dim=(2, 3)))  # (B, C): over the map, channels second
