"""Inflation of any network of convolutions, batch norms and pools (featx.backbones.inflate): the static-clip
property on more than ResNets, I3D's temporal plan for GoogLeNet, and one-line refusals of everything else."""

import pytest
import timm
import torch
import torchvision
from torch import nn

from featx.backbones.inflate import inflate
from featx.backbones.video3d import I3D_PLAN, googlenet_2d, i3d_googlenet
from featx.errors import FeatxError


def fit_batch_norms(model: nn.Module, batch: torch.Tensor) -> nn.Module:
    """Set every batch norm's statistics to those of `model`'s activations on `batch`, as training leaves them:
    with the default statistics (mean 0, variance 1) a GoogLeNet initialised with std 0.01 shrinks its input
    to features of about 1e-11, which would make any comparison pass."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # a cumulative average: one batch sets the statistics
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(batch)
    return model.eval()


@pytest.fixture(scope="module")
def googlenet64():
    """torchvision's GoogLeNet as the brief draws it (random, init_weights=True), its batch norms fitted, as
    featx's feature network in float64 (so that the comparison sees the inflation, not float32 rounding)."""
    torch.manual_seed(0)
    reference = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    fit_batch_norms(reference, torch.rand(4, 3, 32, 32) * 2 - 1)
    model = googlenet_2d()
    model.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")})
    return model.double()


@pytest.fixture(scope="module")
def i3d_mean(googlenet64):
    return i3d_googlenet(googlenet64, "mean")


@pytest.mark.parametrize("mode", ["mean", "center"])
def test_a_static_clip_through_i3d_gives_googlenets_feature(googlenet64, i3d_mean, mode):
    frame = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2 - 1
    clip = frame.unsqueeze(2).repeat(1, 1, 5, 1, 1)  # (B, 3, T, H, W), one frame repeated
    i3d = i3d_mean if mode == "mean" else i3d_googlenet(googlenet64, mode)
    with torch.no_grad():
        want, got = googlenet64(frame), i3d(clip)
    assert got.shape == want.shape == (2, 1024) and want.abs().max() > 1  # a feature far from zero
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_i3d_follows_the_papers_temporal_shapes(i3d_mean):
    i3d = i3d_mean
    conv1 = i3d.conv1.conv.conv  # the first layer: an nn.Conv3d inside an InflatedConv
    assert isinstance(conv1, nn.Conv3d) and conv1.kernel_size == (7, 7, 7) and conv1.stride == (2, 2, 2)
    pools = {name: (i3d.get_submodule(name).pool.kernel_size, i3d.get_submodule(name).pool.stride)
             for name in ("maxpool1", "maxpool2", "maxpool3", "maxpool4", "inception4c.branch4.0")}
    assert pools == {"maxpool1": ((1, 3, 3), (1, 2, 2)), "maxpool2": ((1, 3, 3), (1, 2, 2)),
                     "maxpool3": ((3, 3, 3), (2, 2, 2)), "maxpool4": ((2, 2, 2), (2, 2, 2)),
                     "inception4c.branch4.0": ((3, 3, 3), (1, 1, 1))}
    assert i3d.inception4c.branch2[1].conv.conv.kernel_size == (3, 3, 3)
    assert i3d.inception4c.branch1.conv.conv.kernel_size == (1, 1, 1)
    frames = {}
    def record(name):
        def hook(module, args, output):
            frames[name] = output.shape[2]
        return hook

    hooks = [i3d.get_submodule(n).register_forward_hook(record(n)) for n in ("conv1", "maxpool2", "maxpool3", "maxpool4")]
    with torch.no_grad():
        i3d(torch.zeros(1, 3, 16, 32, 32, dtype=torch.float64))
    for hook in hooks:
        hook.remove()
    assert frames == {"conv1": 8, "maxpool2": 8, "maxpool3": 4, "maxpool4": 2}  # 16 frames -> 2 before the pool


def test_the_plan_names_real_convolutions_and_pools(googlenet64):
    assert set(I3D_PLAN) <= dict(googlenet64.named_modules()).keys()
    with pytest.raises(ValueError, match="inception3a.branch9"):
        inflate(googlenet64, plan={"inception3a.branch9": (3, 1)})


class TinyVGG(nn.Sequential):
    """A VGG-like stack with every kind of layer inflation converts: max and average pools (ceil mode, padding,
    count_include_pad off), a bias, batch norm, an adaptive pool to 2 x 2 and a flatten after it."""

    def __init__(self):
        super().__init__(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            nn.Conv2d(8, 16, 5, padding=2, bias=False), nn.BatchNorm2d(16), nn.SiLU(),
            nn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(16, 16, 1), nn.Dropout(0.5),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        )


@pytest.mark.parametrize("mode", ["mean", "center"])
def test_a_static_clip_through_an_inflated_vgg_gives_its_2d_output(mode):
    torch.manual_seed(0)
    vgg = fit_batch_norms(TinyVGG().double(), torch.randn(4, 3, 24, 24, dtype=torch.float64))
    plan = {"0": (5, 1), "3": (3, 2), "7": (2, 2)}  # temporal pools, one even, both strided
    frame = torch.randn(2, 3, 24, 24, dtype=torch.float64)
    with torch.no_grad():
        want = vgg(frame)
        got = inflate(vgg, 3, mode, time_stride=2, plan=plan)(frame.unsqueeze(2).repeat(1, 1, 7, 1, 1))
    assert got.shape == want.shape == (2, 64)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_moving_clip_is_not_a_static_one():
    torch.manual_seed(0)
    vgg = fit_batch_norms(TinyVGG(), torch.randn(4, 3, 24, 24))
    clip = torch.randn(1, 3, 4, 24, 24)
    with torch.no_grad():
        mean, center = inflate(vgg, 3, "mean")(clip), inflate(vgg, 3, "center")(clip)
        frames = torch.stack([vgg(clip[:, :, t]) for t in range(4)])
    assert not torch.allclose(mean, center, atol=1e-3)
    # centre slices and no temporal pooling: each frame alone up to the adaptive pool, which averages over time
    torch.testing.assert_close(center, frames.mean(0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("model", "message"), [
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm([4, 6, 6])), r"cannot inflate layer '1' \(LayerNorm\)"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 2)), r"cannot inflate layer '2' \(Linear\)"),
    (nn.Sequential(nn.Conv2d(3, 4, 3, padding="same")), r"layer '0' \(Conv2d\): padding 'same'"),
    (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.MultiheadAttention(4, 1))),
     r"cannot inflate layer '1.1' \(MultiheadAttention\)"),
])
def test_other_layers_are_refused_in_one_line_naming_the_first(model, message):
    with pytest.raises(FeatxError, match=message) as caught:
        inflate(model)
    assert "\n" not in str(caught.value)


def test_a_vision_transformer_is_refused_at_its_own_tensors():
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    with pytest.raises(FeatxError, match=r"cannot inflate the model itself \(VisionTransformer\): it holds tensors "
                                         r"of its own \(cls_token, pos_embed\)"):
        inflate(vit)


def test_timm_layers_that_change_their_base_forward_are_refused():
    from timm.layers import BatchNormAct2d

    model = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNormAct2d(4))  # a BatchNorm2d subclass with an activation
    with pytest.raises(FeatxError, match=r"layer '1' \(BatchNormAct2d\)"):
        inflate(model)


class SqueezeExcite(nn.Module):
    """Allowed layers, but a forward that averages dims (2, 3) by hand: over (T, H) once inflated, not (H, W)."""

    def __init__(self):
        super().__init__()
        self.conv, self.gate = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 1)

    def forward(self, x):
        x = self.conv(x)
        return x * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True)))


def test_a_forward_that_breaks_the_static_clip_is_refused():
    torch.manual_seed(0)
    with pytest.raises(FeatxError, match="SqueezeExcite: a static clip does not give the 2D feature"):
        inflate(SqueezeExcite())


IMAGENET_MEAN, IMAGENET_STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


@pytest.mark.slow
def test_i3d_googlenet_loads_torchvisions_googlenet_file_and_feeds_it_as_torchvision_does(tmp_path):
    from safetensors.torch import save_file

    from featx.backbones.video3d import create
    from featx.backbones.weights import file_sha256

    torch.manual_seed(1)
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)  # aux, as published
    fit_batch_norms(reference, torch.rand(4, 3, 32, 32) * 2 - 1)
    save_file(reference.state_dict(), tmp_path / "googlenet.safetensors")
    i3d, source, sha = create("i3d-googlenet", str(tmp_path / "googlenet.safetensors"))
    reference.transform_input, reference.fc = True, nn.Identity()  # as googlenet(weights=...) builds it
    frame = torch.rand(2, 3, 32, 32)  # [0, 1] RGB
    with torch.no_grad():
        want = reference((frame - IMAGENET_MEAN.view(3, 1, 1)) / IMAGENET_STD.view(3, 1, 1))  # torchvision's recipe
        got = i3d(((frame - 0.5) / 0.5).unsqueeze(2).repeat(1, 1, 4, 1, 1))  # featx's: MINUS1_1, a static clip
    assert got.shape == (2, 1024) and sha == file_sha256(tmp_path / "googlenet.safetensors")
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())  # float32 rounding


def test_i3d_googlenet_with_another_networks_weights_says_what_to_do(tmp_path):
    from featx.backbones.video3d import create

    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r.pth")
    with pytest.raises(FeatxError, match="does not fit torchvision's googlenet: .*missing.*unexpected"):
        create("i3d-googlenet", str(tmp_path / "r.pth"))


def test_i3d_googlenet_takes_torchvisions_imagenet_googlenet_from_the_hub_cache(caches, tmp_path, monkeypatch):
    """--backbone i3d-googlenet with no --weights: torchvision's googlenet-1378be20.pth from torch.hub's cache,
    inflated exactly as the same file given by path; offline with an empty cache, one line saying how to get it."""
    from featx.backbones import hub
    from featx.backbones.video3d import create
    from featx.backbones.weights import file_sha256

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FeatxError, match=r"googlenet-1378be20\.pth and HF_HUB_OFFLINE is set.*featx weights pull i3d-googlenet"):
        create("i3d-googlenet", "auto")
    torch.manual_seed(2)
    cached = hub.torch_checkpoints_dir() / "googlenet-1378be20.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True).state_dict(), cached)
    model, source, sha = create("i3d-googlenet", "auto")
    assert (source, sha) == ("torchvision:googlenet-1378be20.pth", file_sha256(cached))
    by_path, _, _ = create("i3d-googlenet", str(cached))
    for (name, a), (_, b) in zip(model.state_dict().items(), by_path.state_dict().items()):
        assert torch.equal(a, b), name
