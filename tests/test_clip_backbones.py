"""Clip (3D) backbones: inflation's defining property, and torchvision checkpoints loading into featx's models."""

import hashlib

import numpy as np
import pytest
import timm
import torch
import torchvision.models.video as tvv
from torch import nn

from featx.backbones.inflate import inflate
from featx.backbones.video3d import create, create_clip_model
from featx.config import ExtractConfig
from featx.errors import FeatxError


@pytest.fixture(scope="module")
def resnet2d():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    for m in model.modules():  # statistics and scales far from the identity, as pretrained ones are
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["mean", "center"])
@pytest.mark.parametrize("time_kernel", [3, 5])
def test_a_static_clip_gives_the_2d_feature_of_its_frame(resnet2d, mode, time_kernel):
    frame = torch.randn(2, 3, 64, 64)
    clip = frame.unsqueeze(2).repeat(1, 1, 6, 1, 1)  # (B, 3, T, H, W), one frame repeated
    with torch.no_grad():
        want, got = resnet2d(frame), inflate(resnet2d, time_kernel, mode)(clip)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inflated_networks_see_time(resnet2d):
    clip = torch.randn(1, 3, 6, 64, 64)  # frames differ
    with torch.no_grad():
        mean, center = inflate(resnet2d, 3, "mean")(clip), inflate(resnet2d, 3, "center")(clip)
        frames = torch.stack([resnet2d(clip[:, :, t]) for t in range(6)]).mean(0)
    assert not torch.allclose(mean, center, atol=1e-3)
    torch.testing.assert_close(center, frames, rtol=1e-4, atol=1e-5)  # centre slices only: per-frame, then pooled


@pytest.mark.slow
def test_time_stride_halves_the_clip_in_the_stem(resnet2d):
    inflated = inflate(resnet2d, 3, "mean", time_stride=2)
    with torch.no_grad():
        stem = inflated.conv1(torch.randn(1, 3, 8, 32, 32))
    assert stem.shape[2] == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_a_torchvision_checkpoint_round_trips(tmp_path, name):
    torch.manual_seed(1)
    reference = getattr(tvv, name)(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "w.pth")
    ours = create(name, str(tmp_path / "w.pth"))[0]
    reference.fc = nn.Identity()
    clip = torch.randn(2, 3, 8, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(ours(clip), reference(clip))
    assert ours(clip).shape == (2, 512)


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    torch.save(tvv.r3d_18(weights=None).state_dict(), tmp_path / "w.pth")
    with pytest.raises(FeatxError, match="does not fit torchvision's r2plus1d_18: .* missing .* unexpected"):
        create("r2plus1d_18", str(tmp_path / "w.pth"))


@pytest.mark.slow
@pytest.mark.parametrize(("name", "layer"), [("c3d", "fc6"), ("c3d_fc7", "fc7")])
def test_c3d_gives_its_fc_layer_after_relu_and_loads_port_names(tmp_path, name, layer):
    from featx.backbones.video3d import C3D

    torch.manual_seed(0)
    full = C3D(num_classes=487).eval()
    torch.save(full.state_dict(), tmp_path / "c3d.pth")  # conv1 ... fc8, the port's names
    ours = create(name, str(tmp_path / "c3d.pth"))[0]
    clip = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        got = ours(clip)
        r = torch.relu
        x = full.pool1(r(full.conv1(clip)))  # the paper's order: conv, ReLU, pool per group
        x = full.pool2(r(full.conv2(x)))
        for a_, b_, pool in [(full.conv3a, full.conv3b, full.pool3), (full.conv4a, full.conv4b, full.pool4),
                             (full.conv5a, full.conv5b, full.pool5)]:
            x = pool(r(b_(r(a_(x)))))
        fc6 = torch.relu(full.fc6(x.flatten(1)))
        want = fc6 if layer == "fc6" else torch.relu(full.fc7(fc6))
    assert got.shape == (1, 4096) and x.shape[1:] == (512, 1, 4, 4)  # 8192 inputs to fc6
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(("name", "width"), [
    ("s3d", lambda m: m.classifier[1].in_channels), ("mvit_v2_s", lambda m: m.head[1].in_features),
    ("swin3d_t", lambda m: m.head.in_features),
])
@pytest.mark.slow
def test_other_torchvision_models_give_their_pooled_width(name, width):
    ours = create_clip_model(name)
    with torch.no_grad():
        out = ours(torch.randn(1, 3, 16, 224, 224))
    assert out.shape == (1, width(getattr(tvv, name)(weights=None)))


def _known_cube(path, shape=(3, 16, 128, 171), dtype=np.float32):
    """A cube whose every value says where it is: 100 c + 2 t + y / 4 + x / 2 (a leading 1 kept, as a
    binaryproto's blob has it)."""
    c, t, y, x = np.meshgrid(*(np.arange(n) for n in shape[-4:]), indexing="ij")
    np.save(path, (100 * c + 2 * t + y / 4 + x / 2).astype(dtype).reshape(shape))
    return path


class _Recorder(nn.Module):
    """Stands in for C3D: keeps what it is fed."""

    def forward(self, x):
        self.seen = x.clone()
        return x.flatten(1)[:, :4]


@pytest.mark.parametrize("shape", [(3, 16, 128, 171), (1, 3, 16, 128, 171), (3, 16, 112, 112)])
def test_a_constant_clip_minus_the_mean_cube_is_computed_by_hand(tmp_path, shape):
    from featx.backbones import Backbone
    from featx.backbones.video3d import RAW_0_255, MeanCubeSubtracted, read_mean_cube

    cube, path, sha = read_mean_cube("c3d", str(_known_cube(tmp_path / "m.npy", shape)), 16, "rgb")
    config = ExtractConfig(backbone="c3d", clip_len=16, mean=RAW_0_255[0], std=RAW_0_255[1], feature_dim=4,
                           precision="float32")
    recorder = _Recorder()
    backbone = Backbone(config, MeanCubeSubtracted(recorder, cube), torch.device("cpu"))
    colour = (10, 200, 255)
    backbone.forward(torch.tensor(colour, dtype=torch.uint8).expand(1, 16, 112, 112, 3))  # (B, L, H, W, 3)
    c, t, y, x = np.meshgrid(np.arange(3), np.arange(16), np.arange(112), np.arange(112), indexing="ij")
    if shape[-1] == 171:  # Caffe's test crop of 128 x 171: rows 8 ... 119, columns 29 ... 140
        y, x = y + 8, x + 29
    want = np.array(colour)[c] - (100 * c + 2 * t + y / 4 + x / 2)
    np.testing.assert_allclose(recorder.seen[0].numpy(), want, rtol=0, atol=1e-4)
    assert path == str((tmp_path / "m.npy").resolve())
    assert sha == hashlib.sha256((tmp_path / "m.npy").read_bytes()).hexdigest()


@pytest.mark.parametrize(("args", "message"), [
    (("r3d_18", 16, "rgb"), "only c3d, c3d_fc7 take one, not r3d_18"),
    (("resnet18", 16, "rgb"), "only c3d, c3d_fc7 take one, not resnet18"),
    (("c3d", 8, "rgb"), "use --clip-len 16, not 8"),
    (("c3d", 16, "both"), "for RGB clips; leave it out with --stream both"),
])
def test_a_mean_cube_is_refused_where_it_does_not_belong(tmp_path, args, message):
    from featx.backbones.video3d import read_mean_cube

    backbone, clip_len, stream = args
    with pytest.raises(FeatxError, match=message):
        read_mean_cube(backbone, str(_known_cube(tmp_path / "m.npy")), clip_len, stream)


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: _known_cube(p, (3, 16, 128, 170)), r"shape \(3, 16, 128, 170\); expected one of 3x16x128x171 or 3x16x112x112"),
    (lambda p: _known_cube(p, (3, 8, 112, 112)), r"shape \(3, 8, 112, 112\)"),
    (lambda p: _known_cube(p, dtype=np.uint8), "holds uint8; expected floats"),
    (lambda p: p.write_text("not numpy") and p, "not a readable .npy file"),
    (lambda p: p, "not a readable .npy file \\(FileNotFoundError"),
])
def test_a_bad_mean_cube_file_is_one_line(tmp_path, make, message):
    from featx.backbones.video3d import read_mean_cube

    path = make(tmp_path / "m.npy")
    with pytest.raises(FeatxError, match=message) as caught:
        read_mean_cube("c3d", str(path), 16, "rgb")
    assert "\n" not in str(caught.value)


def test_load_backbone_refuses_a_mean_cube_before_building_the_model(tmp_path):
    from featx.backbones import extraction_config, load_backbone

    config = extraction_config(backbone="r3d_18", weights="auto", mean_cube=str(tmp_path / "missing.npy"))
    with pytest.raises(FeatxError, match="--mean-cube .*only c3d, c3d_fc7 take one"):  # not "pass --weights"
        load_backbone(config, "cpu")


def test_clips_too_short_for_the_backbone_are_one_error_line_naming_clip_len():
    """S3D's last pooling spans 2 of its time steps: 8-frame clips leave it 1 and torch raises; featx says so."""
    from featx.backbones import load_backbone

    with pytest.raises(FeatxError, match=r"s3d cannot embed clips of 8 frames of 224x224 \(.*\); try a longer --clip-len"):
        load_backbone(ExtractConfig(backbone="s3d", weights="random-init", clip_len=8), "cpu")
