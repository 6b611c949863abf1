"""The extraction config: one frozen dataclass that the CLI builds, the pipeline consumes, the store saves
in its Parquet metadata and `featx info` prints."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from featx.errors import FeatxError

FORMAT_VERSION = 1
DEFAULT_BACKBONE = "tf_efficientnet_lite0"
DTYPES = ("float16", "float32")
# The backbone's arithmetic: "auto" resolves to float16 autocast on CUDA and float32 on the CPU.
PRECISIONS = ("auto", "float32", "bfloat16", "float16")

# Fields that do not change what the features mean: a store may be appended to when only these differ.
_NOT_IDENTITY = ("weights", "versions")


@dataclass(frozen=True)
class ExtractConfig:
    backbone: str = DEFAULT_BACKBONE  # a timm model name (or a featx-registered backbone)
    weights: str = "auto"  # "auto" (bundled, else timm's hub), a checkpoint path, or "random-init"
    fps: float | None = None  # target sampling rate by presentation time; None keeps every frame
    dtype: str = "float16"  # storage dtype of the feature column
    precision: str = "auto"  # backbone arithmetic (PRECISIONS); resolved when the backbone is loaded
    # Filled in by the backbone when it is loaded (see `featx.backbones.load_backbone`).
    weights_sha256: str | None = None  # sha256 of the weights file (or of the tensors, for hub/random weights)
    feature_dim: int | None = None  # D, the length of every feature vector
    input_size: tuple[int, int, int] | None = None  # (C, H, W) fed to the backbone
    mean: tuple[float, ...] | None = None  # per-channel normalisation, from the backbone's timm data config
    std: tuple[float, ...] | None = None
    interpolation: str | None = None  # resize filter ("bicubic", "bilinear")
    crop_pct: float | None = None  # resize shorter side to H / crop_pct, then centre-crop H x W
    versions: dict[str, str] = field(default_factory=dict)  # featx / torch / timm / av versions
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise FeatxError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.precision not in PRECISIONS:
            raise FeatxError(f"--precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.fps is not None and not self.fps > 0:
            raise FeatxError(f"--fps must be a positive number of frames per second, not {self.fps}")

    @property
    def resolved(self) -> bool:
        return self.feature_dim is not None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

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
        for key in ("input_size", "mean", "std"):
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
