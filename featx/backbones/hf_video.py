"""Video encoders of Hugging Face transformers (the optional extra `featx[transformers]`): VideoMAE, V-JEPA 2,
TimeSformer, ViViT and X-CLIP's video encoder, by short alias (ALIASES) or as `hf:<org>/<name>` for any repo whose
config.json has a model_type of ADAPTERS.

Each model is fed as its own processor config says (the repo's video_preprocessor_config.json,
preprocessor_config.json or processor_config.json, over the transformers class's defaults): resize (the shorter
side, or to H x W), centre crop, filter, rescale (with ViViT's offset) and mean/std, folded into the mean and std
featx applies to [0, 1] RGB; its clip length is the config's frame count. The store records all of it, what the
feature is (`feature_description`), the weights' source `hf:<repo>@<revision>` and the sha256 of the weights file.

Files come through featx.backbones.hub (the Hugging Face cache, else huggingface_hub's download, else one error
line): config.json first, then the processor config, then the weights, so that a repo with no adapter fails before
its weights are fetched. Nothing here imports transformers until a model is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from featx.backbones import hub
from featx.errors import FeatxError, exception_line

PREFIX = "hf:"
PIL_FILTERS = {0: "point", 1: "lanczos", 2: "bilinear", 3: "bicubic"}  # PIL resample codes -> FFmpeg's scalers
INSTALL = "pip install 'featx[transformers]'"


@dataclass(frozen=True)
class Alias:
    """A short name of a published repo, with what its config says (shown by `featx weights list` until the
    repo is cached, then read from the cached config)."""

    repo: str
    model_type: str  # its config's, a key of ADAPTERS
    dim: int
    clip_len: int
    size: int  # H = W of the input


ALIASES = {
    "videomae-base": Alias("MCG-NJU/videomae-base", "videomae", 768, 16, 224),
    "videomae-large": Alias("MCG-NJU/videomae-large", "videomae", 1024, 16, 224),
    "videomae-base-k400": Alias("MCG-NJU/videomae-base-finetuned-kinetics", "videomae", 768, 16, 224),
    "videomae-large-k400": Alias("MCG-NJU/videomae-large-finetuned-kinetics", "videomae", 1024, 16, 224),
    "vjepa2-vitl": Alias("facebook/vjepa2-vitl-fpc64-256", "vjepa2", 1024, 64, 256),
    "vjepa2-vith": Alias("facebook/vjepa2-vith-fpc64-256", "vjepa2", 1280, 64, 256),
    "vjepa2-vitg": Alias("facebook/vjepa2-vitg-fpc64-256", "vjepa2", 1408, 64, 256),
    "timesformer-base": Alias("facebook/timesformer-base-finetuned-k400", "timesformer", 768, 8, 224),
    "vivit-b": Alias("google/vivit-b-16x2-kinetics400", "vivit", 768, 32, 224),
    "xclip-b32": Alias("microsoft/xclip-base-patch32", "xclip", 512, 8, 224),
    "xclip-b16": Alias("microsoft/xclip-base-patch16", "xclip", 512, 8, 224),
}

IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
HALF = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # transformers' IMAGENET_STANDARD
CLIP = {"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
# What every transformers image / video processor of these models does unless its config says otherwise
PROCESSOR = {"do_resize": True, "do_center_crop": True, "do_rescale": True, "rescale_factor": 1 / 255,
             "do_normalize": True, "resample": 2}


@dataclass(frozen=True)
class Adapter:
    """How featx builds and reads one transformers architecture."""

    family: str
    model_class: str  # the transformers class built from the repo
    frames_key: tuple[str, ...]  # where config.json keeps the frames per clip
    dim_key: tuple[str, ...]  # where config.json keeps D
    pool: str  # "mean": mean of last_hidden_state's tokens; "cls": its first token; "video": get_video_features
    feature: str  # what the feature is, recorded in the store's config
    fixed_frames: bool  # whether the model takes only its own frame count (fixed position embeddings)
    processor: dict = field(default_factory=dict)  # the processor class's defaults over PROCESSOR
    may_lack: tuple[str, ...] = ()  # weights a checkpoint may lack that the feature does not use
    init: dict = field(default_factory=dict)  # keyword arguments of from_pretrained / the model class
    size_from_crop: float | None = None  # V-JEPA 2: the shorter side is crop * this, whatever the config says
    call: dict = field(default_factory=dict)  # keyword arguments of the model's forward


ADAPTERS = {
    "videomae": Adapter("VideoMAE", "VideoMAEModel", ("num_frames",), ("hidden_size",), "mean",
                        "mean of VideoMAEModel's last_hidden_state over its tubelet tokens (after the final "
                        "LayerNorm when use_mean_pooling is false; fine-tuned checkpoints' fc_norm not applied)",
                        True, {**HALF, "size": {"shortest_edge": 224}, "crop_size": 224}),
    "vjepa2": Adapter("V-JEPA 2", "VJEPA2Model", ("frames_per_clip",), ("hidden_size",), "mean",
                      "mean of VJEPA2Model's encoder last_hidden_state over its tokens (predictor skipped)",
                      False, {**IMAGENET, "crop_size": 256}, may_lack=("predictor.",), size_from_crop=256 / 224,
                      call={"skip_predictor": True}),
    "timesformer": Adapter("TimeSformer", "TimesformerModel", ("num_frames",), ("hidden_size",), "cls",
                           "CLS token of TimesformerModel's last_hidden_state (after the final LayerNorm), what "
                           "its video classifier reads", False,
                           {**IMAGENET, "size": {"shortest_edge": 224}, "crop_size": 224}),
    "vivit": Adapter("ViViT", "VivitModel", ("num_frames",), ("hidden_size",), "cls",
                     "CLS token of VivitModel's last_hidden_state (after the final LayerNorm), what its video "
                     "classifier reads", True,
                     {**HALF, "size": {"shortest_edge": 256}, "crop_size": 224, "rescale_factor": 1 / 127.5,
                      "offset": True}, init={"add_pooling_layer": False}),
    "xclip": Adapter("X-CLIP", "XCLIPModel", ("vision_config", "num_frames"), ("projection_dim",), "video",
                     "XCLIPModel.get_video_features: per-frame CLS (with cross-frame messages), visual projection, "
                     "multi-frame integration transformer, mean over frames (the video embedding X-CLIP matches to "
                     "text)", True, {**CLIP, "size": {"shortest_edge": 224}, "crop_size": 224, "resample": 3}),
}


@dataclass(frozen=True)
class RepoFiles:
    """The files of one model: from the Hugging Face cache (or a download), or a local folder."""

    config: Path  # config.json
    processor: Path  # its processor config
    weights: Path | None  # model.safetensors / pytorch_model.bin; None when not asked for
    source: str  # "hf:<repo>@<revision>" or the folder


def handles(name: str) -> bool:
    return name in ALIASES or name.startswith(PREFIX)


def repo_of(name: str) -> str:
    """The Hugging Face repo that backbone `name` (an alias or hf:<org>/<name>) names."""
    if name in ALIASES:
        return ALIASES[name].repo
    repo = name[len(PREFIX):]
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise FeatxError(f"--backbone {name}: give hf:<org>/<name>, a Hugging Face model repo (or an alias: "
                         f"{', '.join(ALIASES)})")
    return hub.check_repo_id(name, repo)


def adapter_for(config: dict, where: str) -> Adapter:
    """The adapter of a config.json's model_type; one error line naming the supported ones when there is none."""
    kind = config.get("model_type")
    if kind not in ADAPTERS:
        arch = ", ".join(config.get("architectures") or []) or "no architectures"
        supported = ", ".join(f"{k} ({a.family})" for k, a in ADAPTERS.items())
        raise FeatxError(f"{where}: model_type {kind!r} ({arch}) has no featx adapter; supported: {supported}")
    return ADAPTERS[kind]


def _nested(config: dict, keys: tuple[str, ...]):
    for key in keys:
        config = config.get(key) or {}
    return config or None


def _local_files(folder: Path, need_weights: bool) -> RepoFiles:
    """A save_pretrained folder given as --weights."""
    if not folder.is_dir() or not (folder / hub.HF_CONFIG[0]).is_file():
        raise FeatxError(f"--weights {folder}: give a folder holding config.json, its processor config and the "
                         "weights (what save_pretrained writes), or leave --weights out")
    def first(names: tuple[str, ...], what: str) -> Path:
        found = next((folder / n for n in names if (folder / n).is_file()), None)
        if found is None:
            raise FeatxError(f"--weights {folder}: no {what} there ({', '.join(names)})")
        return found

    processor = first(hub.HF_PROCESSOR_FILES, "processor config")
    weights = first(hub.HF_FILES, "weights") if need_weights else None
    return RepoFiles(folder / hub.HF_CONFIG[0], processor, weights, str(folder.resolve()))


def repo_files(name: str, weights: str = "auto", need_weights: bool = True, download: bool = True) -> RepoFiles:
    """The config, processor config and (when `need_weights`) weights of backbone `name`: from the local folder
    `weights`, else the cache or a download (featx.backbones.hub), the config checked for an adapter first."""
    from featx.backbones.weights import AUTO, RANDOM_INIT

    if weights not in (AUTO, RANDOM_INIT):
        return _local_files(Path(weights).expanduser(), need_weights)
    repo = repo_of(name)
    config = hub.hf_checkpoint(name, repo, hub.HF_CONFIG, download, announce=False)
    adapter_for(hub.read_json_object(config.path), f"--backbone {name}")
    processor = hub.hf_checkpoint(name, repo, hub.HF_PROCESSOR_FILES, download, announce=False)
    found = hub.hf_checkpoint(name, repo, hub.HF_FILES, download) if need_weights and weights == AUTO else None
    return RepoFiles(config.path, processor.path, found.path if found else None, found.source if found else "")


def read_processor(path: Path) -> dict:
    """The processor settings a processor file holds (processor_config.json nests them by kind)."""
    data = hub.read_json_object(path)
    if path.name == "processor_config.json":
        data = data.get("video_processor") or data.get("image_processor") or {}
    return data


def _pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, dict) and "height" in value and "width" in value:
        return int(value["height"]), int(value["width"])
    raise FeatxError(f"processor config: {what} {value!r} is neither a number nor {{height, width}}")


def preprocessing(processor: dict, adapter: Adapter) -> dict:
    """A timm-style data config (input_size, mean, std, interpolation, crop_pct, resize_size) equal to what the
    processor does: resize, centre crop, then (v * rescale - offset - mean) / std of 0-255 values v, which is
    (x - M) / S of x = v / 255 with M = (offset + mean) / (255 rescale) and S = std / (255 rescale)."""
    try:
        return _preprocessing({**PROCESSOR, **adapter.processor, **processor}, adapter)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:  # absurd values: which
        raise FeatxError(f"processor config: its preprocessing is not usable ({exception_line(exc)})") from None


def _preprocessing(p: dict, adapter: Adapter) -> dict:
    crop = _pair(p.get("crop_size"), "crop_size")
    size = p.get("size")
    if adapter.size_from_crop is not None:
        size = {"shortest_edge": int(crop[0] * adapter.size_from_crop)}
    size = {"shortest_edge": size} if isinstance(size, int) else size or {}
    resize_size = (int(size["height"]), int(size["width"])) if "height" in size and "width" in size else None
    shorter = int(size["shortest_edge"]) if "shortest_edge" in size else None
    if not p["do_resize"] or (resize_size is None and shorter is None):
        raise FeatxError(f"processor config: featx resizes every frame; size {p.get('size')!r} with do_resize "
                         f"{p['do_resize']} is not a shortest_edge or height/width resize")
    if not p["do_center_crop"]:
        if resize_size is None:
            raise FeatxError("processor config: do_center_crop false with a shortest_edge resize gives inputs of "
                             "every video's own shape; featx needs one input size")
        crop = resize_size
    scale = 255 * float(p["rescale_factor"]) if p["do_rescale"] else 1.0
    offset = 1.0 if p["do_rescale"] and p.get("offset") else 0.0
    mean, std = (p["image_mean"], p["image_std"]) if p["do_normalize"] else ([0.0] * 3, [1.0] * 3)
    mean = [float(m) for m in mean] * (3 if len(mean) == 1 else 1)
    std = [float(s) for s in std] * (3 if len(std) == 1 else 1)
    filt = PIL_FILTERS.get(int(p["resample"]))
    if filt is None:
        raise FeatxError(f"processor config: resample {p['resample']} has no FFmpeg equivalent in featx "
                         f"(supported: {', '.join(f'{k} {v}' for k, v in PIL_FILTERS.items())})")
    return {"input_size": (3, *crop), "mean": tuple((offset + m) / scale for m in mean),
            "std": tuple(s / scale for s in std), "interpolation": filt,
            "crop_pct": min(crop) / (shorter if shorter else min(resize_size)), "resize_size": resize_size}


def frames_of(config: dict, adapter: Adapter) -> int:
    frames = _nested(config, adapter.frames_key)
    if not isinstance(frames, int) or frames < 1:
        raise FeatxError(f"config.json: no frame count at {'.'.join(adapter.frames_key)}")
    return frames


def describe(config_path: Path, processor_path: Path) -> tuple[str, int | None, int, str]:
    """(family, D, frames per clip, input size) of a model, from its config and processor files."""
    config = hub.read_json_object(config_path)
    adapter = adapter_for(config, str(config_path))
    data = preprocessing(read_processor(processor_path), adapter)
    _, h, w = data["input_size"]
    resize = data["resize_size"]
    first = "x".join(map(str, resize)) if resize else f"shorter side {round(min(h, w) / data['crop_pct'])}"
    dim = _nested(config, adapter.dim_key)
    return adapter.family, dim if isinstance(dim, int) else None, frames_of(config, adapter), f"{h}x{w} ({first} first)"


def default_clip_len(name: str, weights: str = "auto") -> int:
    """The model's own frames per clip (its config.json), the default --clip-len."""
    files = repo_files(name, str(weights), need_weights=False)
    config = hub.read_json_object(files.config)
    return frames_of(config, adapter_for(config, f"--backbone {name}"))


class VideoFeatures(nn.Module):
    """A transformers video model as a featx clip backbone: (B, 3, T, H, W) normalised clips -> (B, D)."""

    def __init__(self, model: nn.Module, pool: str, call: dict | None = None):
        super().__init__()
        self.model, self.pool, self.call = model, pool, call or {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, T, 3, H, W), what transformers' video models take
        if self.pool == "video":
            out = self.model.get_video_features(x)
            return getattr(out, "pooler_output", out)  # (B, D): an output object from transformers 5, else a tensor
        hidden = self.model(x, **self.call).last_hidden_state  # (B, N, D)
        return hidden[:, 0] if self.pool == "cls" else hidden.mean(1)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise FeatxError(f"hf: and transformers video backbones need the transformers extra: {INSTALL}") from None
    return transformers


def _build(adapter: Adapter, files: RepoFiles, weights: str) -> tuple[nn.Module, str, str]:
    """(model, weights source, sha256): from_pretrained of the files' folder, or the config with seeded random
    weights. Every weight the feature uses must come from the checkpoint."""
    from featx.backbones.weights import RANDOM_INIT, RANDOM_SEED, tensors_sha256
    from featx.digests import file_sha256

    transformers = _transformers()
    cls = getattr(transformers, adapter.model_class, None)
    if cls is None:
        raise FeatxError(f"{adapter.family}: transformers {transformers.__version__} has no {adapter.model_class}; "
                         "upgrade transformers")
    logs, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # unused classifier / decoder weights are expected, not news
    transformers.logging.disable_progress_bar()  # a bar per load; featx reports the run
    try:
        if weights == RANDOM_INIT:
            torch.manual_seed(RANDOM_SEED)
            model = cls(cls.config_class.from_pretrained(str(files.config.parent)), **adapter.init)
            return model.float().eval(), RANDOM_INIT, tensors_sha256(model.state_dict())
        model, info = cls.from_pretrained(str(files.weights.parent), output_loading_info=True, local_files_only=True,
                                          **adapter.init)
    except Exception as exc:  # a damaged or foreign file, whatever transformers raised: which, on one line
        raise FeatxError(f"{adapter.model_class} could not load {files.config.parent} "
                         f"({exception_line(exc)})") from None
    finally:
        transformers.logging.set_verbosity(logs)
        if bars:
            transformers.logging.enable_progress_bar()
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith(adapter.may_lack)]
    if missing:
        raise FeatxError(f"{files.source}: the checkpoint lacks {len(missing)} weights of {adapter.model_class} "
                         f"(e.g. {', '.join(sorted(missing)[:3])})")
    return model.float().eval(), files.source, file_sha256(files.weights)


def create(backbone: str, weights: str, clip_len: int | None) -> tuple[nn.Module, str, str, dict]:
    """(VideoFeatures model, weights source, sha256, data config with `feature_description`) of backbone `backbone`."""
    files = repo_files(backbone, weights)
    config = hub.read_json_object(files.config)
    adapter = adapter_for(config, f"--backbone {backbone}")
    frames = frames_of(config, adapter)
    if clip_len is None:
        raise FeatxError(f"{backbone} embeds clips: give clip_len (featx.backbones.extraction_config defaults it "
                         f"to {frames})")
    if adapter.fixed_frames and clip_len != frames:
        raise FeatxError(f"{backbone}: {adapter.family} takes exactly its {frames} frames per clip; leave out "
                         f"--clip-len (or give {frames})")
    data = preprocessing(read_processor(files.processor), adapter)
    model, source, sha = _build(adapter, files, weights)
    data["feature_description"] = adapter.feature
    return VideoFeatures(model, adapter.pool, adapter.call), source, sha, data


def transformers_version() -> str:
    return _transformers().__version__
