"""The extraction config: one frozen dataclass that the CLI builds, the pipeline consumes, the store saves
in its Parquet metadata and `featx info` prints."""

from __future__ import annotations

import math

import dataclasses
import json
from dataclasses import dataclass, field

from featx.errors import FeatxError

FORMAT_VERSION = 1
DEFAULT_BACKBONE = "tf_efficientnet_lite0"
DTYPES = ("float16", "float32")
# The backbone's arithmetic: "auto" resolves to float16 autocast on CUDA and float32 on the CPU.
# What runs the backbone (featx.backbones.runtime); "auto" is resolved when the backbone is loaded, to what ran.
RUNTIMES = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
CLIP_TAILS = ("pad", "drop")  # the last, incomplete clip: repeat the last frame, or leave it out
INFLATE_MODES = ("mean", "center")
STREAMS = ("rgb", "flow", "both")  # what is embedded: frames, optical-flow stacks, or both on one time grid
# The one stream -> column map: which feature column holds each stream, by the store's --stream.
STORE_COLUMNS = {
    "rgb": {"rgb": "feature"},
    "flow": {"flow": "feature"},
    "both": {"rgb": "feature", "flow": "flow_feature"},
}
FEATURE_COLUMNS = ("feature", "flow_feature")  # every feature column a store may have
FLOW_METHODS = ("farneback", "tvl1", "raft-small", "raft-large")  # OpenCV in the workers, RAFT on the device
# Where frames are resized and cropped: "cpu", FFmpeg's scaler in the decoding workers; "device", torch's
# antialiased interpolate on the extraction device, the workers shipping frames at their decoded size.
RESIZE_ON = ("cpu", "device")
# What decodes the frames: "pyav", FFmpeg on the CPU (featx.video); "nvdec", the GPU's video decoder through
# PyNvVideoCodec (featx.nvdec), whose frames stay on the card and are resized there (resize_on "device").
DECODERS = ("pyav", "nvdec")

# Fields that do not change what the features mean: a store may be appended to when only these differ.
_NOT_IDENTITY = ("weights", "flow_weights", "flow_backbone_weights", "versions", "import_source", "mean_cube",
                 "text_tower")
# Left out of a store's JSON at these values (stores written before the key was recorded have them): such a store's
# metadata stays what it was, and older featx versions still read it.
_LEFT_OUT_AT = {"resize_on": "cpu", "decoder": "pyav", "resize_size": None, "flow_backbone_weights": None,
                "flow_backbone_sha256": None, "layer": None, "feature_description": None,
                "text_tower": None, "runtime": "torch"}


@dataclass(frozen=True)
class ExtractConfig:
    backbone: str = DEFAULT_BACKBONE  # a timm model name (or a featx-registered backbone)
    weights: str = "auto"  # "auto" (bundled, else the hub's cache or a download: featx.backbones.hub), a path, or "random-init"
    fps: float | None = None  # target sampling rate by presentation time; None keeps every frame
    dtype: str = "float16"  # storage dtype of the feature column
    precision: str = "auto"  # backbone arithmetic (PRECISIONS); resolved when the backbone is loaded
    clip_len: int | None = None  # frames (sampled at fps) per clip for clip (3D) backbones; None: per frame
    clip_stride: int | None = None  # frames between clip starts (default: clip_len, non-overlapping)
    clip_tail: str = "pad"  # CLIP_TAILS
    inflate: str | None = None  # inflate a 2D timm CNN into 3D: "mean" or "center" (INFLATE_MODES)
    inflate_time: int = 3  # temporal kernel of the inflated k x k convolutions
    layer: str | None = None  # --layer: the named module whose pooled output is the feature (featx.backbones.tap)
    mean_cube: str | None = None  # C3D: a .npy mean cube subtracted from every clip (its path; like weights, not identity)
    mean_cube_sha256: str | None = None  # sha256 of that file, filled in when the backbone is loaded (identity)
    stream: str = "rgb"  # STREAMS; "both" adds the column flow_feature
    flow_len: int = 5  # flow fields stacked per row (2 * flow_len input channels); 1 for flow clips (2, L, H, W)
    flow_method: str = "farneback"  # FLOW_METHODS
    flow_weights: str | None = None  # RAFT's checkpoint path (--weights-flow); like `weights`, not identity
    # The flow stream's own backbone checkpoint (--weights-flow-backbone), loaded instead of the RGB weights'
    # cross-modality copy; like `weights`, not identity (its sha256, flow_backbone_sha256, is)
    flow_backbone_weights: str | None = None
    # Filled in by the backbone when it is loaded (see `featx.backbones.load_backbone`).
    weights_sha256: str | None = None  # sha256 of the weights file (or of the tensors, for hub/random weights)
    flow_weights_sha256: str | None = None  # sha256 of flow_weights' file (RAFT)
    flow_backbone_sha256: str | None = None  # sha256 of flow_backbone_weights' file, filled in when it is loaded
    feature_dim: int | None = None  # D, the length of every feature vector
    input_size: tuple[int, int, int] | None = None  # (C, H, W) fed to the backbone
    mean: tuple[float, ...] | None = None  # per-channel normalisation, from the backbone's timm data config
    std: tuple[float, ...] | None = None
    interpolation: str | None = None  # resize filter ("bicubic", "bilinear")
    crop_pct: float | None = None  # resize shorter side to H / crop_pct, then centre-crop H x W
    # (H, W) every frame is resized to before the centre crop, its aspect ratio ignored (torchvision's video
    # transforms with two sizes: r3d_18's 128 x 171); None: the shorter side, by crop_pct. Left out of the JSON
    # when None, as stores written before it was recorded have it.
    resize_size: tuple[int, int] | None = None
    # What the feature is, for backbones that pick it among several outputs (transformers video models: "mean of
    # VideoMAEModel's last_hidden_state over its tubelet tokens", "CLS token of ..."); None for the others, whose
    # output is the model's pooled feature. Left out of the JSON when None.
    feature_description: str | None = None
    # Image-text backbones (clip:<repo>, featx.backbones.image_text): the matching text tower, filled in when the
    # backbone is loaded: {"source": "hf:<repo>@<revision>" or a folder, "sha256": of the weights file both towers
    # share, "model_type": "clip" | "siglip", "feature": what a row is}; `featx zero-shot` loads it. Like `weights`,
    # not identity (its sha256 is weights_sha256). None, and left out of the JSON, for every other backbone.
    text_tower: dict | None = None
    # RESIZE_ON: which implementation resized the frames (identity: the two give slightly different features);
    # stores written before it was recorded lack the key and read as "cpu", the only path there was
    resize_on: str = "cpu"
    # DECODERS: what decoded the frames (identity: NVDEC's colour conversion is not swscale's). The store records
    # what actually decoded: a run asked for nvdec that fell back to PyAV records "pyav". Older stores read "pyav".
    decoder: str = "pyav"
    # RUNTIMES: what ran the backbone, torch or OpenVINO's compiled model (featx.backbones.runtime); identity (its
    # features differ from torch's in the last digits, more at bfloat16). "auto" until the backbone is loaded; a
    # store records what ran, and leaves the key out at "torch" (stores written before it was recorded ran torch).
    runtime: str = "auto"
    versions: dict[str, str] = field(default_factory=dict)  # featx / torch / timm / av versions
    # `featx import` (featx.importer) of arrays made elsewhere: how they were read, {"fps": F (None: per video,
    # --source-fps-file), "stride": S, "window": W, "layout": "TC" | "CT", "key": array name or None}; None when the
    # rows were extracted here (or came back from a featx export, whose config is the original's).
    imported: dict | None = None
    import_source: str | None = None  # the folder `featx import` read (like `weights`, not identity)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise FeatxError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.clip_len is not None and self.clip_len < 1 or self.clip_stride is not None and self.clip_stride < 1:
            raise FeatxError("--clip-len and --clip-stride must be positive numbers of frames")
        if self.clip_stride is not None and self.clip_len is None:
            raise FeatxError("--clip-stride needs --clip-len")
        if self.clip_tail not in CLIP_TAILS:
            raise FeatxError(f"--clip-tail must be one of {', '.join(CLIP_TAILS)}, not {self.clip_tail!r}")
        if self.inflate is not None and self.inflate not in INFLATE_MODES:
            raise FeatxError(f"--inflate must be one of {', '.join(INFLATE_MODES)}, not {self.inflate!r}")
        if self.inflate_time < 1 or self.inflate_time % 2 == 0:
            raise FeatxError(f"--inflate-time must be an odd positive number of frames, not {self.inflate_time}")
        if self.layer is not None and (not isinstance(self.layer, str) or not self.layer.strip()):
            raise FeatxError(f"--layer must name a module of the backbone, not {self.layer!r}")
        if self.stream not in STREAMS:
            raise FeatxError(f"--stream must be one of {', '.join(STREAMS)}, not {self.stream!r}")
        if self.flow_method not in FLOW_METHODS:
            raise FeatxError(f"--flow must be one of {', '.join(FLOW_METHODS)}, not {self.flow_method!r}")
        if self.flow_len < 1:
            raise FeatxError(f"--flow-len must be at least 1, not {self.flow_len}")
        if self.stream != "rgb" and self.clip_len is not None and self.flow_len != 1:
            raise FeatxError("flow clips take one flow field per frame, (2, L, H, W) for --clip-len L: "
                             "leave out --flow-len (or give 1)")
        if self.flow_weights is not None and not self.flow_method.startswith("raft"):
            raise FeatxError(f"--weights-flow is for --flow raft-small|raft-large, not {self.flow_method}")
        if self.flow_backbone_weights is not None and self.stream == "rgb":
            raise FeatxError("--weights-flow-backbone is the flow stream's backbone checkpoint: it needs --stream "
                             "flow|both")
        if self.precision not in PRECISIONS:
            raise FeatxError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.resize_on not in RESIZE_ON:
            raise FeatxError(f"--resize-on must be one of {', '.join(RESIZE_ON)}, not {self.resize_on!r}")
        if self.resize_on == "device" and (self.clips or self.stream != "rgb"):
            raise FeatxError("--resize-on device embeds single RGB frames: clip backbones (--clip-len) and "
                             "--stream flow|both resize in the decoding workers; leave out --resize-on")
        if self.runtime not in RUNTIMES:
            raise FeatxError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}")
        if self.runtime == "openvino" and self.stream != "rgb":
            raise FeatxError(f"--runtime {self.runtime} embeds RGB only so far: use --runtime torch with --stream "
                             f"{self.stream}")
        if self.decoder not in DECODERS:
            raise FeatxError(f"--decoder must be one of {', '.join(DECODERS)}, not {self.decoder!r}")
        if self.decoder == "nvdec" and self.resize_on != "device":
            raise FeatxError("--decoder nvdec keeps frames on the GPU and resizes them there: leave out --resize-on cpu")
        if self.fps is not None and not 0 < self.fps < math.inf:
            raise FeatxError(f"--fps must be a positive number of frames per second, not {self.fps}")

    @property
    def clips(self) -> bool:
        """Whether rows are clips of several frames (a clip backbone) rather than single frames."""
        return self.clip_len is not None

    @property
    def stride(self) -> int:
        return self.clip_stride or self.clip_len or 1

    @property
    def resolved(self) -> bool:
        return self.feature_dim is not None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """The JSON a store saves. Keys recorded later than others (`resize_on`, `decoder`, `resize_size`, the flow
        backbone's checkpoint) are left out at the values stores had before them (_LEFT_OUT_AT): such a store keeps
        the metadata it always had (and older featx versions still read it); a device path, NVDEC or own-flow-weights
        store names them, which older versions refuse (an unknown key) rather than mix it with their own."""
        data = self.to_dict()
        for key, before in _LEFT_OUT_AT.items():
            if data[key] == before:
                del data[key]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ExtractConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FeatxError(
                f"unknown extraction config keys {unknown}: the store was written by a newer featx; upgrade featx"
            )
        data = dict(data)
        data.setdefault("precision", "float32")  # stores written before precision was recorded ran float32
        data.setdefault("runtime", "torch")  # left out of the JSON at torch (and absent before it was recorded)
        for key in ("input_size", "mean", "std", "resize_size"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "ExtractConfig":
        return cls.from_dict(json.loads(text))

    def differences(self, other: "ExtractConfig") -> list[str]:
        """The settings that make features of `self` and `other` incomparable, as 'key: a != b' lines."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [
            f"{key}: {mine[key]!r} != {theirs[key]!r}"
            for key in mine
            if key not in _NOT_IDENTITY and mine[key] != theirs[key]
        ]
