"""--runtime openvino across the backbone families featx builds: the tiny videos extracted by OpenVINO's compiled
model and by torch float32 give the same features row by row (cosine >= 0.9999, relative L2 < 1e-4, the bounds of
test_runtime.py) for a timm ConvNeXt, an inflated ResNet (--inflate), R(2+1)D, C3D with a mean cube, I3D, S3D, the
five transformers video families (VideoMAE, V-JEPA 2, TimeSformer, ViViT, X-CLIP), a tapped layer of one, and CLIP
and SigLIP image towers; test_runtime.py has timm's test_efficientnet, r3d_18 and a tapped timm layer. Random-init
or tiny random checkpoints, built here; the 112 and 224 px models see one 12-frame video.

Measured on 2 busy cores (torch 2.14, OpenVINO 2026.4): every family converts (2-13 s); the worst row is C3D's
4096-d fc6 at relative L2 2e-6. Not here, for time (measured once on random clips through load_backbone):
mc3_18 2.6e-7, c3d_fc7 2.1e-6, i3d-googlenet 3.8e-7, vit_tiny_patch16_224 1.2e-6, and torchvision's mvit_v1_b
9e-7, mvit_v2_s 1.3e-6 and swin3d_t 3.6e-7, whose 16 (8) x 224 x 224 inputs take 30-45 s to convert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import featx
from cli import app
from featx.backbones import openvino_model as runtime
from tests.helpers import one_error_line, tiny_hf_video_model, tiny_image_text_pair

runner = CliRunner()
BASE = ["--workers", "0", "--device", "cpu", "--dtype", "float32", "--no-progress"]
RANDOM = ["--random-init"]
BUILT = "{built}"  # in a case's arguments: the path of what the case builds (a checkpoint folder, a mean cube)


def case(name, *args, built=None, videos="one", slow=False):
    """One family: `featx extract` arguments, what to build first (an hf_video kind, clip / siglip, or cube),
    and which tiny videos: one (12 frames of 64 x 64, the models at 112 or 224 px), or all four (the tiny
    transformers models at 32 px)."""
    return pytest.param(list(args), built, videos, id=name, marks=[pytest.mark.slow] if slow else [])


FAMILIES = [
    case("timm-convnext", "--backbone", "convnext_atto", *RANDOM),
    case("inflated-resnet18", "--backbone", "resnet18", *RANDOM, "--inflate", "mean", "--clip-len", "2", "--fps", "4"),
    case("r2plus1d_18", "--backbone", "r2plus1d_18", *RANDOM, "--clip-len", "4"),
    case("c3d-mean-cube", "--backbone", "c3d", *RANDOM, "--mean-cube", BUILT, built="cube"),  # 16 frames: 1 clip
    case("i3d", "--backbone", "i3d", *RANDOM, "--clip-len", "8", "--fps", "4", slow=True),  # 6 frames: 1 clip
    case("s3d", "--backbone", "s3d", *RANDOM, "--clip-len", "16", slow=True),  # shorter clips: too short for S3D
    *[case(kind, "--backbone", f"hf:tiny-org/{kind}", "--weights", BUILT, built=kind, videos="all")
      for kind in ("videomae", "vjepa2", "timesformer", "vivit", "xclip")],
    case("videomae-layer", "--backbone", "hf:tiny-org/videomae", "--weights", BUILT, "--layer",
         "model.encoder.layer.0", built="videomae", videos="all"),
    case("clip", "--backbone", "clip:tiny/clip", "--weights", BUILT, built="clip", videos="all"),
    case("siglip", "--backbone", "clip:tiny/siglip", "--weights", BUILT, built="siglip", videos="all"),
]


@pytest.fixture
def cached(tmp_path, monkeypatch):
    monkeypatch.setenv(runtime.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def build(what: str | None, folder: Path) -> str | None:
    """The path a case's arguments name: a tiny transformers checkpoint folder, or a random C3D mean cube."""
    if what is None:
        return None
    if what == "cube":  # Sports-1M's shape, 0-255 values
        cube = np.random.default_rng(0).uniform(0, 255, (3, 16, 128, 171)).astype(np.float32)
        np.save(folder / "mean.npy", cube)
        return str(folder / "mean.npy")
    if what in ("clip", "siglip"):
        return str(tiny_image_text_pair(folder / what, what))
    import torch

    torch.manual_seed(0)
    model, processor = tiny_hf_video_model(what)
    model.save_pretrained(folder / what)
    processor.save_pretrained(folder / what)
    return str(folder / what)


def features(videos, out: Path, args: list[str], runtime_name: str) -> np.ndarray:
    """(rows, D) float64 features of `featx extract --runtime runtime_name`, in (video, step) order."""
    result = runner.invoke(app, ["extract", str(videos), "-o", str(out), *args, *BASE, "--runtime", runtime_name])
    assert result.exit_code == 0, result.output
    store = featx.open_store(out)
    assert (store.config.runtime, store.config.precision) == (runtime_name, "float32")
    rows = store.rows().sort_values(["video_id", "step"])
    return np.stack(rows["feature"].to_numpy()).astype(np.float64)


@pytest.mark.parametrize(("args", "built", "videos"), FAMILIES)
def test_openvino_gives_torch_float32_features_for_every_family(cached, tiny_videos, tmp_path, args, built, videos):
    path = build(built, tmp_path)
    args = [path if a == BUILT else a for a in args]
    source = tiny_videos if videos == "all" else sorted(tiny_videos.glob("*.mp4"))[0]
    got = features(source, tmp_path / "ov", args, "openvino")
    want = features(source, tmp_path / "torch", args, "torch")
    assert list(cached.glob("openvino/*.xml"))  # converted, not run by torch
    assert got.shape == want.shape and len(got) >= 1
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    relative = np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() >= 0.9999 and relative.max() < 1e-4, (cosine.min(), relative.max())


def test_a_backbone_openvino_cannot_convert_is_one_line_that_says_use_torch(cached, tiny_videos, tmp_path, monkeypatch):
    """No family fails today; the refusal for one that would (an operator OpenVINO's frontend lacks)."""
    import openvino

    def unsupported(*args, **kwargs):
        raise RuntimeError("Model wasn't fully converted: aten::made_up_op\nmore detail")

    monkeypatch.setattr(openvino, "convert_model", unsupported)
    video = sorted(tiny_videos.glob("*.mp4"))[0]
    result = runner.invoke(app, ["extract", str(video), "-o", str(tmp_path / "s"), "--backbone", "test_efficientnet",
                                 *RANDOM, *BASE, "--runtime", "openvino"])
    one_error_line(result, "OpenVINO could not convert this backbone (RuntimeError: Model wasn't fully converted: "
                           "aten::made_up_op)", "use --runtime torch")
    assert not list(cached.glob("openvino/*.xml"))
