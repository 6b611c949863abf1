"""Backbones: a frozen module plus the preprocessing it expects, behind one `load_backbone` call.

Any timm model name works (featx/backbones/timm2d.py), and the clip backbones of featx/backbones/video3d.py and
featx/backbones/hf_video.py (transformers' video models, by alias or hf:<repo>); every kind reads and loads
weights through featx/backbones/weights.py (or, for transformers, its own from_pretrained). Heavy imports happen
inside the functions.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

from featx.config import ExtractConfig
from featx.errors import FeatxError, exception_line
from featx.video import Preprocess


@dataclass
class Backbone:
    config: ExtractConfig  # resolved: weights digest, feature_dim, input size, mean/std filled in
    model: Any  # torch.nn.Module in eval mode, frozen
    device: Any  # torch.device

    @property
    def preprocess(self) -> Preprocess:
        c = self.config
        return Preprocess.from_config(c.input_size, c.crop_pct, c.interpolation, resize_size=c.resize_size)

    def embed(self, pixels):
        """(B, H, W, 3) uint8 RGB tensor -> (B, D) float32 features on the CPU."""
        return self.forward(pixels.to(self.device, non_blocking=True)).cpu()

    def forward(self, pixels):
        """(B, H, W, 3) frames or (B, L, H, W, 3) clips, uint8 RGB on the backbone's device -> (B, D) float32."""
        import torch

        if pixels.ndim == 5:  # clips -> (B, 3, L, H, W)
            x = pixels.permute(0, 4, 1, 2, 3).float().div_(255)
            x = (x - self._mean.unsqueeze(2)) / self._std.unsqueeze(2)
        else:
            x = pixels.permute(0, 3, 1, 2).float().div_(255)  # (B, 3, H, W), channels_last in memory already
            x = ((x - self._mean) / self._std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast():
            return self.model(x).float()  # (B, D)

    def compile(self, batch_size: int) -> None:
        """torch.compile the model and compile it now, for (batch_size, H, W, 3) inputs: feed it only that shape
        (any other shape compiles again, which costs seconds)."""
        import torch

        if self.config.runtime != "torch":
            raise FeatxError(f"--compile is torch.compile: the {self.config.runtime} runtime's model is compiled already")
        self.model = torch.compile(self.model)
        self.warm_up(batch_size)

    def warm_up(self, batch_size: int) -> None:
        """One untimed call of the batch shape: CUDA loads kernels and picks algorithms on the first call."""
        import torch

        _, h, w = self.config.input_size
        clip = (self.config.clip_len,) if self.config.clips else ()
        channels = len(self.config.mean)  # 3, or 2L for a flow backbone
        self.forward(torch.zeros((batch_size, *clip, h, w, channels), dtype=torch.uint8, device=self.device))

    def _autocast(self):
        import contextlib

        import torch

        if self.config.precision == "float32" or self.config.runtime != "torch":  # OpenVINO: in the compiled model
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, self.config.precision))

    def __post_init__(self) -> None:
        import torch

        shape = (1, len(self.config.mean), 1, 1)  # 3, or 2L channels for a flow backbone
        self._mean = torch.tensor(self.config.mean, device=self.device).view(shape)
        self._std = torch.tensor(self.config.std, device=self.device).view(shape)


def flow_backbone(rgb: Backbone, config: ExtractConfig) -> Backbone:
    """The flow stream's backbone: the RGB network's architecture with 2L input channels for 2L-channel flow
    stacks (a 2D network) or 2 for 2-channel flow clips (a clip network, fed (2, L, H, W); for i3d that is
    InceptionI3d(in_channels=2), flow_imagenet.pt's layout). Its weights: `config.flow_backbone_weights`
    (--weights-flow-backbone) loaded strictly, or else the RGB weights with the first convolution cross-modality
    initialised (featx.flow). Flow images are normalised with mean 0.5 and the mean of the RGB stds (for i3d,
    0.5: the uint8 flow images of featx.flow become clip(flow, -20, 20) / 20, the [-1, 1] flow its checkpoint
    saw). Its config is private but for flow_backbone_weights / flow_backbone_sha256 (resolved here), which the
    store records in the RGB one (with `stream`)."""
    import copy

    from featx.flow import cross_modality_init

    twin = cross_modality_init(copy.deepcopy(rgb.model), config.flow_len)  # no second build of the network
    source = sha = None
    if config.flow_backbone_weights is not None:
        source, sha = _load_flow_weights(twin, config)
    channels = 2 * config.flow_len  # flow clips: flow_len is 1, one field per time step
    std = sum(rgb.config.std) / len(rgb.config.std)
    flow_config = dataclasses.replace(rgb.config, mean=(0.5,) * channels, std=(std,) * channels,
                                      flow_backbone_weights=source, flow_backbone_sha256=sha)
    return Backbone(flow_config, twin.eval(), rgb.device)


def _load_flow_weights(twin, config: ExtractConfig) -> tuple[str, str]:
    """Load --weights-flow-backbone into `twin` strictly (its classifier dropped): (resolved path, sha256)."""
    from pathlib import Path

    from featx.backbones import video3d
    from featx.backbones.weights import file_sha256, load_into, read_state_dict

    path = Path(config.flow_backbone_weights).expanduser()
    label = f"--weights-flow-backbone {path}"
    state = read_state_dict(path, label)  # one line for a missing or unreadable file
    head = video3d.classifier_names(config.backbone) if config.backbone in video3d.CLIP_MODELS else None
    arch = f"{config.backbone}'s flow network ({2 * config.flow_len} input channels)"
    load_into(twin, state, label, arch, head)
    for p in twin.parameters():
        p.requires_grad_(False)
    return str(path.resolve()), file_sha256(path)


def resolve_precision(precision: str, device) -> str:
    """"auto" is float16 autocast on CUDA and float32 on the CPU (where reduced precision is slower on most
    processors). On an H100, tf_efficientnet_lite0's features were within 6.4e-3 (relative L2) of the CPU's
    float32 with float16 autocast, 8.9e-2 with bfloat16 (bench/cuda_check.py): bfloat16's 8-bit mantissa costs
    more than float16's range saves for a frozen ImageNet CNN."""
    if precision != "auto":
        return precision
    return "float16" if device.type == "cuda" else "float32"


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FeatxError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise FeatxError(f"--device must be auto, cpu or cuda[:N], not {device!r}")
    return torch.device(device)


def _versions(backbone: str, runtime: str = "torch") -> dict[str, str]:
    import av
    import timm
    import torch

    from featx.backbones import hf_video, image_text
    from featx.version import __version__

    found = {"featx": __version__, "torch": torch.__version__, "timm": timm.__version__, "av": av.__version__}
    if hf_video.handles(backbone) or image_text.handles(backbone):
        found["transformers"] = hf_video.transformers_version()
    if runtime == "openvino":
        from featx.backbones.runtime import require_openvino

        found["openvino"] = require_openvino().__version__
    return found


def _output_dim(model, input_size, device, config: ExtractConfig) -> int:
    """D of the pooled features, measured (num_features is not the output size for every timm model); one error
    line where the backbone cannot take the input at all (S3D's pooling needs clips of 9 frames or more)."""
    import torch

    c, h, w = input_size
    shape = (1, c, config.clip_len, h, w) if config.clips else (1, c, h, w)
    try:
        with torch.inference_mode():
            return int(model(torch.zeros(shape, device=device)).shape[-1])
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        size = f"clips of {config.clip_len} frames of {h}x{w}" if config.clips else f"{h}x{w} frames"
        hint = "; try a longer --clip-len" if config.clips else ""
        raise FeatxError(f"--backbone {config.backbone} cannot embed {size} ({exception_line(exc)}){hint}") from None


def extraction_config(**options) -> ExtractConfig:
    """An ExtractConfig from a user's options, with what the library decides filled in: a clip backbone given
    no clip length takes its usual one (torchvision's models the clip length their accuracy is measured with, 16
    frames for r3d_18, mc3_18, r2plus1d_18 and MViT, 32 for Swin3D, 128 for S3D; 16 for C3D and I3D; a transformers
    video model the frame count of its config.json, read from the cache or downloaded); flow_len None (not given)
    is 1 for clips (a flow clip holds one field per frame) and 5 for frames; resize_on None (not given) is "device"
    for --decoder nvdec (its frames are on the GPU) and "cpu" otherwise."""
    from featx.backbones import hf_video, video3d

    backbone = options.get("backbone", ExtractConfig.backbone)
    spec = video3d.CLIP_MODELS.get(backbone)
    if spec is not None and options.get("clip_len") is None:
        options = {**options, "clip_len": spec.clip_len}
    elif hf_video.handles(backbone) and options.get("clip_len") is None:
        options = {**options, "clip_len": hf_video.default_clip_len(backbone, options.get("weights", "auto"))}
    if options.get("flow_len", 0) is None:
        options = {**options, "flow_len": 1 if options.get("clip_len") is not None else ExtractConfig.flow_len}
    if options.get("resize_on", "cpu") is None:
        options = {**options, "resize_on": "device" if options.get("decoder") == "nvdec" else "cpu"}
    return ExtractConfig(**options)


def _clip_model(config: ExtractConfig):
    """A clip backbone (featx.backbones.video3d): (model, weights source, sha256, timm-style data config)."""
    from featx.backbones import video3d

    spec = video3d.CLIP_MODELS[config.backbone]
    if not config.clips:
        raise FeatxError(f"{config.backbone} embeds clips: give clip_len (featx.backbones.extraction_config defaults it to {spec.clip_len})")
    model, source, sha = video3d.create(config.backbone, config.weights)
    inp = spec.input  # torchvision's transforms for its weights: resize (S,) or (H, W), crop, mean, std, filter
    data = {"input_size": (3, inp.crop, inp.crop), "mean": inp.mean, "std": inp.std,
            "interpolation": inp.interpolation, "crop_pct": inp.crop / min(inp.resize),
            "resize_size": inp.resize if len(inp.resize) == 2 else None}
    return model, source, sha, data


def _image_model(config: ExtractConfig):
    """A timm image model, inflated into a clip model when asked: (model, weights source, sha256, data config)."""
    import timm

    from featx.backbones import hf_video, timm2d, video3d

    if config.clips and not config.inflate:
        raise FeatxError(
            f"--clip-len needs a clip backbone ({', '.join(video3d.CLIP_MODELS)}; a transformers video model: "
            f"{', '.join(hf_video.ALIASES)} or hf:<repo>) or --inflate mean|center to turn {config.backbone!r} into one"
        )
    model, source, sha = timm2d.create(config.backbone, config.weights)
    data = timm.data.resolve_data_config({}, model=model)
    if config.inflate:
        from featx.backbones.inflate import inflate

        if not config.clips:
            raise FeatxError("--inflate makes a clip backbone: give --clip-len too")
        try:
            model = inflate(model, config.inflate_time, config.inflate)
        except (ValueError, FeatxError) as exc:  # a layer that does not inflate: say which, for this backbone
            raise FeatxError(f"--inflate {config.backbone}: {exc}") from None
    return model, source, sha, data



def _check_input(backbone: str, data: dict) -> None:
    """One error line unless the backbone's input is one a frame can become: a positive size, a mean and a
    positive std per channel, a positive crop (a checkpoint's processor config can say anything)."""
    import math

    c, h, w = (int(v) for v in data["input_size"])
    mean, std = [float(v) for v in data["mean"]], [float(v) for v in data["std"]]
    resize = data.get("resize_size") or (1, 1)
    problems = [why for bad, why in (
        (min(c, h, w) < 1, f"input size {c} x {h} x {w}"),
        (len(mean) != c or len(std) != c, f"{len(mean)} means and {len(std)} stds for {c} channels"),
        (not all(math.isfinite(v) for v in mean + std) or min(std) <= 0, f"mean {mean}, std {std}"),
        (not 0 < float(data["crop_pct"]) < math.inf, f"crop fraction {data['crop_pct']}"),
        (min(resize) < 1, f"resize to {resize}"))
        if bad]
    if problems:
        raise FeatxError(f"--backbone {backbone}: its preprocessing is not usable ({problems[0]}); check the "
                         "checkpoint's processor config")


def _on_runtime(model, config: ExtractConfig, input_size, dev, sha: str, cube_sha: str | None):
    """(the model as it runs, the precision it runs at, the runtime that runs it): torch's module as it is, or
    OpenVINO's compiled model (featx.backbones.runtime) on the CPU. --runtime auto takes OpenVINO where
    `runtime.automatic` allows it and the compiled model gives torch float32's features, else torch."""
    from featx.backbones import openvino_model, runtime

    name = config.runtime
    if name == "auto":
        name = "openvino" if runtime.automatic(config, dev) else "torch"
    if name == "torch":
        return model, resolve_precision(config.precision, dev), "torch"
    import torch

    if dev.type != "cpu":
        raise FeatxError(f"OpenVINO (--runtime {name}, or a store it started) runs on the CPU: use --device cpu")
    precision = runtime.resolve(config.precision)
    clip = (config.clip_len,) if config.clips else ()
    identity = {"backbone": config.backbone, "weights_sha256": sha, "layer": config.layer, "inflate": config.inflate,
                "inflate_time": config.inflate_time, "mean_cube_sha256": cube_sha}
    shape = (1, input_size[0], *clip, *input_size[1:])
    compiled = openvino_model.compile_model(model, shape, precision, identity, torch.get_num_threads(),
                                            required=config.runtime != "auto")
    if compiled is None:  # auto: OpenVINO cannot run this backbone as torch does
        print(f"note: OpenVINO does not run {config.backbone} as torch float32 does (the reason is kept in "
              f"{openvino_model.cache_dir()}); running torch", file=sys.stderr, flush=True)
        return model, resolve_precision(config.precision, dev), "torch"
    return compiled, precision, name


def load_backbone(config: ExtractConfig, device: str = "auto") -> Backbone:
    """Build the frozen backbone that `config` names and return it with `config` resolved."""
    import torch

    dev = resolve_device(device)
    if dev.type == "cuda" and resolve_precision(config.precision, dev) == "float32":
        torch.backends.cudnn.allow_tf32 = False  # float32 means float32: cuDNN would round inputs to TF32
    from featx.backbones import hf_video, image_text, video3d

    cube = cube_path = cube_sha = None
    if config.mean_cube is not None:  # checked before the model is built: a bad file fails fast
        cube, cube_path, cube_sha = video3d.read_mean_cube(config.backbone, config.mean_cube, config.clip_len,
                                                           config.stream)
    if config.backbone in video3d.CLIP_MODELS:
        model, source, sha, data = _clip_model(config)
    elif hf_video.handles(config.backbone):
        model, source, sha, data = hf_video.create(config.backbone, config.weights, config.clip_len)
    elif image_text.handles(config.backbone):  # CLIP, SigLIP: transformers' image towers
        model, source, sha, data = image_text.create(config)
    else:
        model, source, sha, data = _image_model(config)
    _check_input(config.backbone, data)
    if config.layer is not None:
        from featx.backbones.tap import LayerTap

        model = LayerTap(model, config.layer)
    if cube is not None:
        model = video3d.MeanCubeSubtracted(model, cube)
    for p in model.parameters():
        p.requires_grad_(False)
    model = model.to(dev)
    if not config.clips:
        model = model.to(memory_format=torch.channels_last)
    feature_dim = _output_dim(model, data["input_size"], dev, config)  # torch's module: its own error, if any
    model, precision, ran = _on_runtime(model, config, data["input_size"], dev, sha, cube_sha)
    resolved = dataclasses.replace(
        config,
        weights=source,
        weights_sha256=sha,
        mean_cube=cube_path,
        mean_cube_sha256=cube_sha,
        feature_dim=feature_dim,
        input_size=tuple(int(v) for v in data["input_size"]),
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        interpolation=str(data["interpolation"]),
        crop_pct=float(data["crop_pct"]),
        resize_size=data.get("resize_size"),
        feature_description=data.get("feature_description"),
        text_tower=None if config.layer else data.get("text_tower"),  # a tapped layer is not the joint space
        precision=precision,
        runtime=ran,
        versions=_versions(config.backbone, ran),
    )
    return Backbone(resolved, model, dev)
