"""Image-text models (CLIP, SigLIP) as per-frame backbones whose features live in a joint space with text, and
their text towers for `featx zero-shot` (seqmodels/zero_shot.py).

`--backbone clip:<org>/<name>` names a Hugging Face repo in transformers' format whose model pairs an image
tower with a text tower: openai/clip-vit-base-patch32, openai/clip-vit-large-patch14,
laion/CLIP-ViT-B-32-laion2B-s34B-b79K, google/siglip-base-patch16-224, ... (config.json's model_type: FAMILIES).
transformers builds the model (`AutoModel`); its files come through featx.backbones.hub (the Hugging Face cache,
else a download, else one error line naming the cache path).

The feature of a frame is the image tower's embedding in the joint space, `get_image_features` (CLIP: the pooled
token after the visual projection; SigLIP: its attention-pooling head), L2-normalised: a row's dot product with a
normalised text embedding is their cosine, the quantity CLIP and SigLIP were trained to rank by, and the mean of a
video's rows is the mean of its per-frame cosines with any text. Preprocessing is the checkpoint's own
preprocessor config (resize, centre crop or not, mean, std, filter), recorded in the store's ExtractConfig; the
store also records the text tower (the same repo, revision and weights sha256: one file holds both towers).
"""

from __future__ import annotations

from pathlib import Path

from featx.backbones.weights import AUTO, RANDOM_INIT
from featx.errors import FeatxError, exception_line

PREFIX = "clip:"
# config.json's model_type -> how its tokenizer pads prompts: SigLIP was trained on prompts padded to max_length
FAMILIES = {"clip": "longest", "siglip": "max_length"}
IMAGE_FILES = ("config.json", "preprocessor_config.json")
TEXT_FILES = ("config.json", "tokenizer_config.json")
# What `featx weights pull` also fetches: the tokenizer files of either family (a repo has some of them)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json", "spiece.model")
FEATURE = "image embedding in the joint space (transformers' get_image_features), L2-normalised"
FILTERS = {2: "bilinear", 3: "bicubic"}  # PIL's resampling numbers, as preprocessor configs write them
INSTALL = "pip install 'featx[clip]'"


def handles(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def repo_of(name: str) -> str:
    """The Hugging Face repo that backbone `name` ("clip:<org>/<name>") names."""
    repo = name[len(PREFIX):]
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise FeatxError(f"--backbone {name}: give clip:<org>/<name>, a Hugging Face repo of a CLIP or SigLIP "
                         "model in transformers' format (e.g. clip:openai/clip-vit-base-patch32)")
    from featx.backbones import hub

    return hub.check_repo_id(name, repo)


def pull(name: str, download: bool = True) -> Path:
    """Every file both towers need, in the Hugging Face cache: returns the snapshot folder."""
    from featx.backbones import hub

    needed = tuple(dict.fromkeys(IMAGE_FILES + TEXT_FILES))
    return hub.hf_snapshot(name, repo_of(name), needed, TOKENIZER_FILES, download=download)


def weights_file(folder: Path, what: str) -> Path:
    from featx.backbones.hub import HF_FILES

    for filename in HF_FILES:
        if (folder / filename).is_file():
            return folder / filename
    raise FeatxError(f"{what}: {folder} holds none of {', '.join(HF_FILES)}")


def _snapshot(name: str, weights: str) -> tuple[Path, str]:
    """(the folder of the model's files, the weights' source as the store records it)."""
    if weights == RANDOM_INIT:
        raise FeatxError(f"{name}: an image-text backbone needs its trained weights (its features mean something only "
                         "beside its text tower); leave out --random-init")
    if weights == AUTO:
        folder = pull(name)
        return folder, f"hf:{repo_of(name)}@{folder.name}"
    folder = Path(weights)
    if not (folder / "config.json").is_file():
        raise FeatxError(f"--weights {weights}: an image-text backbone takes a folder in transformers' format "
                         "(config.json, preprocessor_config.json, the weights: what save_pretrained writes)")
    return folder, str(folder.resolve())


def model_type(folder: Path, what: str) -> str:
    """config.json's model_type, refused unless featx knows how to use its towers (FAMILIES)."""
    from featx.backbones import hub

    kind = hub.read_json_object(folder / "config.json").get("model_type")
    if kind not in FAMILIES:
        raise FeatxError(f"{what}: its model_type is {kind!r}; image-text backbones are {', '.join(FAMILIES)} models")
    return kind


def feature_dim(folder: Path) -> int | None:
    """D of the joint space, from config.json (CLIP: projection_dim; SigLIP: the vision tower's width)."""
    from featx.backbones import hub

    config = hub.read_json_object(folder / "config.json")
    return config.get("projection_dim") or (config.get("vision_config") or {}).get("hidden_size")


def load_pair(folder: Path, what: str):
    """The whole image-text model in eval mode, frozen (transformers' AutoModel)."""
    logging = _transformers().utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()  # "some weights were not used" and the like: not the user's concern
    logging.disable_progress_bar()  # a bar per load of a local file says nothing
    try:
        model = _transformers().AutoModel.from_pretrained(str(folder))
    except Exception as exc:  # a damaged or foreign file, whatever transformers raised: which folder, on one line
        raise FeatxError(f"{what}: transformers could not load {folder} ({exception_line(exc)})") from None
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _transformers():
    try:
        import transformers
    except ImportError:
        raise FeatxError(f"clip: backbones need transformers: {INSTALL}") from None
    return transformers


def preprocessing(folder: Path, what: str) -> dict:
    """The checkpoint's own preprocessing as featx's data config: input size, mean, std, filter, and either a
    centre crop after resizing the shorter side (CLIP: crop_pct = crop / shorter side) or a resize to H x W with
    no crop (SigLIP: resize_size)."""
    try:
        processor = _transformers().AutoImageProcessor.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise FeatxError(f"{what}: no usable preprocessor_config.json in {folder} ({exception_line(exc)})") from None
    try:
        return _preprocessing(processor)
    except (KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError) as exc:  # absurd values: which
        raise FeatxError(f"{what}: the preprocessing of {folder / 'preprocessor_config.json'} is not usable "
                         f"({exception_line(exc)})") from None


def _preprocessing(processor) -> dict:
    size, crop = dict(processor.size), dict(getattr(processor, "crop_size", None) or {})
    resample = getattr(processor.resample, "value", processor.resample)
    if resample not in FILTERS and not isinstance(resample, str):
        raise ValueError(f"resample {resample!r} has no FFmpeg equivalent in featx")
    data = {"mean": tuple(processor.image_mean), "std": tuple(processor.image_std),
            "interpolation": FILTERS.get(resample, resample)}
    if size.get("shortest_edge"):
        shorter = int(size["shortest_edge"])
        h, w = (int(crop["height"]), int(crop["width"])) if getattr(processor, "do_center_crop", False) else (shorter,) * 2
        return {**data, "input_size": (3, h, w), "crop_pct": min(h, w) / shorter, "resize_size": None}
    h, w = int(size["height"]), int(size["width"])
    return {**data, "input_size": (3, h, w), "crop_pct": 1.0, "resize_size": (h, w)}


def _image_tower_class():
    import torch
    import torch.nn.functional as F

    class ImageTower(torch.nn.Module):
        """An image-text model's image side: (B, 3, H, W) normalised pixels -> (B, D) unit vectors."""

        def __init__(self, pair):
            super().__init__()
            self.pair = pair

        def forward(self, pixels):
            out = self.pair.get_image_features(pixel_values=pixels)
            out = out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 5 returns an output object
            return F.normalize(out.float(), dim=-1)  # (B, D)

    return ImageTower


def create(config) -> tuple:
    """The image tower that `config.backbone` names: (model, weights source, sha256, data config), the data config
    carrying `text_tower`, the record `featx zero-shot` finds the matching text tower by."""
    from featx.digests import file_sha256

    name = config.backbone
    if config.clips or config.inflate or config.stream != "rgb":
        raise FeatxError(f"{name} embeds single RGB frames: leave out --clip-len, --inflate and --stream flow|both")
    folder, source = _snapshot(name, config.weights)
    kind = model_type(folder, name)
    data = preprocessing(folder, name)
    sha = file_sha256(weights_file(folder, name))
    model = _image_tower_class()(load_pair(folder, name)).eval()
    data["text_tower"] = {"source": source, "sha256": sha, "model_type": kind, "feature": FEATURE}
    return model, source, sha, data


def text_folder(text_tower: dict, what: str) -> Path:
    """The folder of the text tower a store recorded, with the weights it recorded (sha256 checked): the
    Hugging Face cache at that revision (downloaded when missing and online), or the local folder."""
    source = text_tower["source"]
    if source.startswith("hf:"):
        from featx.backbones import hub

        repo, _, revision = source[3:].partition("@")
        folder = hub.hf_snapshot(PREFIX + repo, repo, TEXT_FILES, TOKENIZER_FILES, revision=revision or "main")
    else:
        folder = Path(source)
    from featx.digests import file_sha256

    found = weights_file(folder, what)
    if file_sha256(found) != text_tower["sha256"]:
        raise FeatxError(f"{what}: {found} is not the file the store's features came from (its sha256 differs); "
                         f"restore that file or extract again")
    return folder


def embed_texts(text_tower: dict, prompts: list[str], device, what: str):
    """(K, D) unit vectors: the text tower's embeddings of `prompts` in the joint space, on the CPU."""
    import torch
    import torch.nn.functional as F

    folder = text_folder(text_tower, what)
    try:
        tokenizer = _transformers().AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        source = str(text_tower.get("source", ""))
        name = PREFIX + source[3:].split("@")[0] if source.startswith("hf:") else f"{PREFIX}<org>/<name>"
        raise FeatxError(f"{what}: no usable tokenizer in {folder} ({exception_line(exc)}); run "
                         f"`featx weights pull {name}` for its tokenizer files") from None
    pair = load_pair(folder, what).to(device)
    padding = FAMILIES[text_tower["model_type"]]
    length = pair.config.text_config.max_position_embeddings
    tokens = tokenizer(prompts, padding=padding, truncation=True, max_length=length, return_tensors="pt")
    inputs = {k: tokens[k].to(device) for k in ("input_ids", "attention_mask") if k in tokens}
    with torch.inference_mode():
        out = pair.get_text_features(**inputs)
    out = out if isinstance(out, torch.Tensor) else out.pooler_output
    return F.normalize(out.float(), dim=-1).cpu()  # (K, D)
