"""What `featx weights list` and `featx weights pull` report and do: every backbone name featx knows (the clip
registry, the transformers video aliases, the bundled default, timm models already in the Hugging Face cache, and
any timm name or hf:<repo> asked for), where
its pretrained weights come from and whether they are cached. Lookups go through featx.backbones.hub; nothing
here downloads except `pull`."""

from __future__ import annotations

from dataclasses import dataclass

from featx.errors import FeatxError


@dataclass(frozen=True)
class WeightsInfo:
    """One row of `featx weights list`."""

    name: str  # what --backbone takes
    family: str  # "torchvision video (Kinetics-400)", "featx clip", "timm image", ...
    feature_dim: int | None  # D of the features; None when it could not be measured without the weights
    clip_len: int | None  # default frames per clip; None for per-frame models
    input_size: str  # "112x112 (frames to 128x171 first)" and the like
    source: str  # where `--weights auto` gets the file: a URL file name, "hf:<repo>", "bundled", "--weights PATH"
    location: str | None  # the cache path of the file (None: no file to fetch)
    cached: bool
    size_mb: float | None  # the file's size: measured when cached, else what the hub publishes (None: unknown)

    def cells(self) -> list[str]:
        size = f"{self.size_mb:.1f} MB" if self.size_mb is not None else "?"
        return [self.name, self.family, str(self.feature_dim or "?"), str(self.clip_len or "-"), self.input_size,
                self.source, "-" if self.location is None else "cached" if self.cached else "not cached", size]


HEADER = ["name", "family", "dim", "clip", "input", "weights from", "cache", "size"]


def _size_mb(path) -> float:
    return path.stat().st_size / 2**20  # torchvision's meta counts its file sizes in these units


def _clip_info(name: str) -> WeightsInfo:
    from featx.backbones import hub, video3d

    spec = video3d.CLIP_MODELS[name]
    inp = spec.input
    resize = "x".join(map(str, inp.resize)) if len(inp.resize) == 2 else f"shorter side {inp.resize[0]}"
    size = f"{inp.crop}x{inp.crop} ({resize} first)"
    dim = video3d.feature_dim(name)
    if spec.url_weights is None:
        return WeightsInfo(name, "featx clip", dim, inp.clip_len, size, "--weights PATH only", None, False, None)
    member = hub.torchvision_weights(spec.url_weights)
    path = hub.url_file_path(member.url)
    cached = path.is_file()
    size_mb = _size_mb(path) if cached else member.meta.get("_file_size")
    family = "torchvision video (Kinetics-400)" if spec.weights else "featx clip (ImageNet 2D, inflated)"
    return WeightsInfo(name, family, dim, inp.clip_len, size, f"torchvision:{path.name}",
                       str(path), cached, size_mb)



def _raft_info(name: str) -> WeightsInfo:
    """RAFT (--flow raft-small|raft-large): the optical flow network, torchvision's FlyingChairs + Things weights."""
    from featx.backbones import hub
    from featx.flow import RAFT_WEIGHTS

    member = hub.torchvision_weights(RAFT_WEIGHTS[name])
    path = hub.url_file_path(member.url)
    cached = path.is_file()
    return WeightsInfo(name, "torchvision optical flow (--flow)", None, None, "any (multiple of 8)",
                       f"torchvision:{path.name}", str(path), cached, _size_mb(path) if cached else member.meta.get("_file_size"))

def _timm_dim(name: str) -> int | None:
    """D of timm model `name`, measured on the meta device; None when the model does not build there."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False, num_classes=0)
            size = timm.data.resolve_data_config({}, model=model)["input_size"]
            return int(model(torch.zeros(1, *size)).shape[-1])
    except Exception:  # noqa: BLE001 - an op the meta device lacks: the dimension is only reported as unknown
        return None


def _timm_info(name: str) -> WeightsInfo:
    import timm

    from featx.backbones import bundled, hub

    cfg = timm.models.get_pretrained_cfg(name)
    _, h, w = cfg.input_size if cfg is not None else (3, 0, 0)
    size = f"{h}x{w} (shorter side {int(min(h, w) / cfg.crop_pct)} first)" if cfg is not None else "?"
    dim = _timm_dim(name)
    if name == bundled.TIMM_NAME:
        path = bundled.weights_path()
        return WeightsInfo(name, "timm image (bundled)", dim, None, size, f"bundled:{bundled.PACKAGE}", str(path),
                           True, _size_mb(path))
    kind, where = hub.timm_weights_location(name)
    found = hub.timm_cached(name)
    if kind == "hf":
        repo, files = where
        source, location = f"hf:{repo}", str(found.path) if found else hub.hf_layout(repo, files[0])
    else:
        source, location = f"url:{hub.url_file_path(where).name}", str(hub.url_file_path(where))
    return WeightsInfo(name, "timm image", dim, None, size, source, location, found is not None,
                       _size_mb(found.path) if found else None)


def _hf_video_info(name: str) -> WeightsInfo:
    """A transformers video model: read from its cached config and processor files, else what its alias says."""
    from featx.backbones import hf_video, hub

    repo = hf_video.repo_of(name)
    config, processor = hub.hf_cached(repo, hub.HF_CONFIG), hub.hf_cached(repo, hub.HF_PROCESSOR_FILES)
    alias = hf_video.ALIASES.get(name)
    if config is not None and processor is not None:
        family, dim, clip_len, size = hf_video.describe(config.path, processor.path)
    elif alias is not None:
        family, dim, clip_len = hf_video.ADAPTERS[alias.model_type].family, alias.dim, alias.clip_len
        size = f"{alias.size}x{alias.size}"
    else:
        family, dim, clip_len, size = "video", None, None, "?"
    found = hub.hf_cached(repo)
    location = str(found.path) if found else hub.hf_layout(repo, hub.HF_FILES[0])
    return WeightsInfo(name, f"transformers {family}", dim, clip_len, size, f"hf:{repo}", location, found is not None,
                       _size_mb(found.path) if found else None)


def _image_text_info(name: str) -> WeightsInfo:
    """An image-text backbone's row: its sizes are read from its files once they are cached."""
    from featx.backbones import hub, image_text

    repo = image_text.repo_of(name)
    try:
        folder = image_text.pull(name, download=False)
    except FeatxError:  # not (wholly) cached: nothing more is known without a download
        return WeightsInfo(name, "image-text (transformers)", None, None, "?", f"hf:{repo}", hub.hf_layout(repo),
                           False, None)
    data = image_text.preprocessing(folder, name)
    _, h, w = data["input_size"]
    path = image_text.weights_file(folder, name)
    kind, dim = image_text.model_type(folder, name), image_text.feature_dim(folder)
    return WeightsInfo(name, f"image-text ({kind})", dim, None, f"{h}x{w}",
                       f"hf:{repo}", str(path), True, _size_mb(path))


def cached_timm_names() -> list[str]:
    """timm models whose weights are in the Hugging Face cache (models--timm--<name>), by huggingface_hub's scan."""
    from huggingface_hub import scan_cache_dir

    from featx.backbones import hub

    folder = hub.hf_cache_dir()
    if not folder.is_dir():
        return []
    import timm.models

    repos = scan_cache_dir(folder).repos
    names = sorted(r.repo_id.split("/", 1)[1] for r in repos if r.repo_type == "model" and r.repo_id.startswith("timm/"))
    return [n for n in names if _timm_knows(timm.models, n)]  # the timm org also holds open_clip's models


def _timm_knows(models, name: str) -> bool:
    try:
        return models.get_pretrained_cfg(name) is not None
    except RuntimeError:  # a tag this timm version does not know
        return False


def weights_info(name: str) -> WeightsInfo:
    """The `featx weights list` row of backbone `name` (a clip backbone, a transformers video model, an
    image-text model or any timm name)."""
    from featx.backbones import hf_video, image_text, timm2d, video3d
    from featx.flow import RAFT_WEIGHTS

    if name in video3d.CLIP_MODELS:
        return _clip_info(name)
    if name in RAFT_WEIGHTS:
        return _raft_info(name)
    if hf_video.handles(name):
        return _hf_video_info(name)
    if image_text.handles(name):
        return _image_text_info(name)
    timm2d.check_model_name(name)
    return _timm_info(name)


def list_weights(names: list[str] | None = None) -> list[WeightsInfo]:
    """Rows for `names`, or for every name featx knows: the clip registry, the transformers video aliases, the bundled
    default, cached timm models."""
    from featx.backbones import bundled, hf_video, video3d

    from featx.flow import RAFT_WEIGHTS

    if not names:
        names = [*video3d.CLIP_MODELS, *hf_video.ALIASES, *RAFT_WEIGHTS, bundled.TIMM_NAME]
        names += [n for n in cached_timm_names() if n not in names]
    return [weights_info(n) for n in names]


def pull(name: str):
    """Download backbone `name`'s pretrained weights into its hub's cache (a cached file is kept as it is).
    Returns the hub.Checkpoint."""
    from featx.backbones import bundled, hf_video, hub, image_text, timm2d, video3d

    if image_text.handles(name):  # both towers' files: the weights, configs and tokenizer
        folder = image_text.pull(name)
        return hub.Checkpoint(image_text.weights_file(folder, name), f"hf:{image_text.repo_of(name)}@{folder.name}")
    from featx.flow import RAFT_WEIGHTS

    if name in RAFT_WEIGHTS:
        from featx.flow import raft_checkpoint

        return raft_checkpoint(name, verify=True)
    if name in video3d.CLIP_MODELS:
        spec = video3d.CLIP_MODELS[name]
        if spec.url_weights is None:
            raise FeatxError(f"{name}: featx knows no download of its weights; pass --weights PATH to extract "
                             f"({spec.files or 'a local checkpoint'})")
        return hub.url_checkpoint(name, hub.torchvision_weights(spec.url_weights).url, verify=True)
    if hf_video.handles(name):  # config.json (checked for an adapter), the processor config, then the weights
        files = hf_video.repo_files(name)
        return hub.Checkpoint(files.weights, files.source)
    timm2d.check_model_name(name)
    if name == bundled.TIMM_NAME:
        path = bundled.weights_path()
        return hub.Checkpoint(path, f"bundled:{bundled.PACKAGE}/{bundled.FILE_NAME}")
    return hub.timm_checkpoint(name)
