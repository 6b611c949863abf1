"""transformers video encoders (featx.backbones.hf_video): tiny random VideoMAE, V-JEPA 2, TimeSformer, ViViT and
X-CLIP models with their processors, served from a local HTTP server so that huggingface_hub's own download fills
the Hugging Face cache; extraction with no flag but --backbone, parity with each checkpoint's own processor and
model, `featx weights list/pull`, and the offline and unsupported-architecture error lines."""

from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest
import torch
import transformers
from typer.testing import CliRunner

from cli import app
from featx.errors import FeatxError
from featx.backbones import hf_video
from featx.digests import file_sha256
from featx.store import open_store
from tests.helpers import HF_CROP as CROP, HF_FRAMES as FRAMES, HF_SHORTER as SHORTER, HF_VIDEO_KINDS as KINDS
from tests.helpers import REV, encode_h264, featx_command, go_offline, one_error_line, tiny_hf_video_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """kind -> a save_pretrained folder (config.json, the processor config, model.safetensors)."""
    root = tmp_path_factory.mktemp("tiny_hf")
    folders = {}
    for seed, kind in enumerate(KINDS):
        torch.manual_seed(seed)
        model, processor = tiny_hf_video_model(kind)
        folders[kind] = root / kind
        model.save_pretrained(folders[kind])
        processor.save_pretrained(folders[kind])
    return folders


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """8 frames of 64 x 48 (two clips of 4): ramps of 3 and 4 levels a pixel (a crop one pixel off is 3 levels
    off) and a wave. 4:4:4 chroma: FFmpeg resizes 4:2:0 chroma planes before converting to RGB, the processors
    resize RGB, which puts their pixels 2 levels apart on average (measured) and hides the geometry this checks;
    with 4:4:4 they are within one level."""
    yy, xx = np.mgrid[0:48, 0:64]
    images = [np.stack([np.clip(3 * xx + 9 * k, 0, 255), 4 * yy, 128 + 90 * np.sin((xx + yy + 4 * k) / 9)], -1)
              .astype(np.uint8) for k in range(8)]
    return encode_h264(tmp_path_factory.mktemp("hf_video") / "clip.mp4", images, fps=8, pix_fmt="yuv444p")


def serve(server, monkeypatch, folder, repo: str) -> None:
    """Serve a save_pretrained folder as Hugging Face repo `repo` and point HF_ENDPOINT at the server."""
    for path in folder.iterdir():
        server.files[f"/{repo}/resolve/main/{path.name}"] = path.read_bytes()
    monkeypatch.setenv("HF_ENDPOINT", server.url)


def snapshot(caches, repo: str):
    return caches / "hf" / "hub" / ("models--" + repo.replace("/", "--")) / "snapshots" / REV


def effective_normalisation(folder, kind: str):
    """The mean and std of [0, 1] RGB equal to the processor's rescale (and offset) and normalisation."""
    data = hf_video.preprocessing(hf_video.read_processor(next(folder.glob("*preprocessor_config.json"))),
                                  hf_video.ADAPTERS[kind])
    return data["mean"], data["std"]


@pytest.mark.parametrize("kind", KINDS)
def test_extract_with_only_backbone_downloads_the_repo_and_records_its_own_preprocessing(caches, server, monkeypatch,
                                                                                         tiny, video, kind):
    repo = f"tiny-org/{kind}"
    serve(server, monkeypatch, tiny[kind], repo)
    out = caches / "store"
    result = CliRunner().invoke(app, ["extract", str(video), "--backbone", f"hf:{repo}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = open_store(out).config
    weights = snapshot(caches, repo) / "model.safetensors"
    assert (config.weights, config.weights_sha256) == (f"hf:{repo}@{REV}", file_sha256(weights))
    assert (snapshot(caches, repo) / "config.json").is_file() and (caches / "hf" / "hub" / ("models--" + repo.replace(
        "/", "--")) / "refs" / "main").read_text() == REV  # huggingface_hub's own layout
    assert config.clip_len == FRAMES and config.input_size == (3, CROP, CROP) and config.feature_dim == 32
    assert (config.mean, config.std) == effective_normalisation(tiny[kind], kind)
    shorter = int(CROP * 256 / 224) if kind == "vjepa2" else SHORTER
    assert round(CROP / config.crop_pct) == shorter and config.resize_size is None
    assert config.interpolation == ("bicubic" if kind == "xclip" else "bilinear")
    assert config.feature_description == hf_video.ADAPTERS[kind].feature
    assert config.versions["transformers"] == transformers.__version__
    assert len(open_store(out).rows()) == 2  # 8 frames, clips of 4


def test_vivit_rescale_offset_and_normalisation_fold_into_mean_and_std():
    """ViViT: v * (1 / 127.5) - 1, then (. - 0.5) / 0.5, is (v / 255 - 0.75) / 0.25."""
    data = hf_video.preprocessing({"rescale_factor": 1 / 127.5, "offset": True, "image_mean": [0.5] * 3,
                                   "image_std": [0.5] * 3, "size": {"shortest_edge": 256}, "crop_size": 224},
                                  hf_video.ADAPTERS["vivit"])
    assert np.allclose(data["mean"], 0.75) and np.allclose(data["std"], 0.25)
    assert data["input_size"] == (3, 224, 224) and round(224 / data["crop_pct"]) == 256


def client_features(kind: str, folder, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(pixel values (1, T, 3, H, W), features (D,)) of one clip by the checkpoint's own processor and model."""
    t = transformers
    if kind == "vjepa2":
        pixels = t.AutoVideoProcessor.from_pretrained(folder)(torch.from_numpy(frames).permute(0, 3, 1, 2),
                                                              return_tensors="pt")["pixel_values_videos"]
    else:
        pixels = t.AutoImageProcessor.from_pretrained(folder)(list(frames), return_tensors="pt")["pixel_values"]
        pixels = pixels if pixels.ndim == 5 else pixels.unsqueeze(0)  # CLIP's processor: frames as images
    cls = getattr(t, hf_video.ADAPTERS[kind].model_class)
    model = cls.from_pretrained(folder, **hf_video.ADAPTERS[kind].init).eval()
    with torch.no_grad():
        if kind == "xclip":
            return pixels, model.get_video_features(pixels).pooler_output[0]
        if kind == "vjepa2":
            return pixels, model.get_vision_features(pixels)[0].mean(0)
        hidden = model(pixels).last_hidden_state[0]  # (N, D)
        return pixels, hidden[0] if kind in ("timesformer", "vivit") else hidden.mean(0)


@pytest.mark.parametrize("runtime", ["torch", pytest.param("openvino", marks=pytest.mark.slow)])  # converting: 2-3 s
@pytest.mark.parametrize("kind", KINDS)
def test_features_match_the_checkpoints_own_processor_and_model(tmp_path, tiny, video, kind, runtime, monkeypatch):
    """Same decoded frames: featx's pixels (decoded, resized and cropped by FFmpeg) are the processor's within a
    level, and its features (its normalisation and pooling on the model, run by torch or compiled by OpenVINO) are
    the model's on the processor's output. Random weights make cosine a weak test, hence the relative L2 bound too."""
    import featx.api
    from featx.backbones import openvino_model as ov_runtime
    from featx.video import FrameChunk, Preprocess, stream_frames

    monkeypatch.setenv(ov_runtime.CACHE_ENV, str(tmp_path / "cache"))  # a converted model lands here, not in ~
    summary = featx.api.extract([video], tmp_path / "s", backbone=f"hf:tiny-org/{kind}", weights=tiny[kind],
                                device="cpu", dtype="float32", progress=False, runtime=runtime)
    assert summary.failed == 0
    store = open_store(tmp_path / "s")
    c = store.config
    assert c.runtime == runtime
    got = np.stack(store.rows().sort_values("step")["feature"].to_numpy()).astype(np.float32)  # (2, D)
    decoded = np.concatenate([x.pixels for x in stream_frames(video) if isinstance(x, FrameChunk)])  # (8, 48, 64, 3)
    pre = Preprocess.from_config(c.input_size, c.crop_pct, c.interpolation, resize_size=c.resize_size)
    ours = np.concatenate([x.pixels for x in stream_frames(video, pre=pre) if isinstance(x, FrameChunk)])
    mean, std = torch.tensor(c.mean).view(3, 1, 1), torch.tensor(c.std).view(3, 1, 1)
    for row in range(2):
        clip = slice(row * FRAMES, (row + 1) * FRAMES)
        pixels, want = client_features(kind, tiny[kind], decoded[clip])
        theirs = ((pixels[0] * std + mean) * 255).permute(0, 2, 3, 1).numpy()  # (T, H, W, 3) levels
        apart = np.abs(ours[clip].astype(np.float32) - theirs)
        assert apart.mean() < 0.5 and apart.max() < 2.0, (apart.mean(), apart.max())  # 0.27 and 1.0 measured
        want = want.numpy()
        cosine = float(got[row] @ want / np.linalg.norm(got[row]) / np.linalg.norm(want))
        relative = float(np.linalg.norm(got[row] - want) / np.linalg.norm(want))
        assert cosine >= 0.999 and relative < 0.015, (cosine, relative)  # V-JEPA 2's 0.008 is the most measured


@pytest.mark.slow
def test_weights_list_and_pull_by_alias_then_an_offline_featx_process(caches, server, monkeypatch, tiny, video):
    """`featx weights pull videomae-base` fills the cache through huggingface_hub; the installed `featx` command
    then extracts with it, offline, with no flag but --backbone."""
    repo = hf_video.ALIASES["videomae-base"].repo
    serve(server, monkeypatch, tiny["videomae"], repo)
    runner = CliRunner()

    def row(*names: str) -> list[str]:
        result = runner.invoke(app, ["weights", "list", *names])
        assert result.exit_code == 0, result.output
        return next(line for line in result.output.splitlines() if line.startswith("videomae-base ")).split()

    before = row()  # every known name: the aliases among them
    assert "768" in before and "16" in before and "not" in before and f"hf:{repo}" in before  # what the alias says
    pulled = runner.invoke(app, ["weights", "pull", "videomae-base"])
    assert pulled.exit_code == 0, pulled.output
    after = row("videomae-base")
    assert "32" in after and str(FRAMES) in after and "cached" in after and "not" not in after  # the cached config
    env = {**os.environ, "HF_HOME": str(caches / "hf"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([featx_command(), "extract", str(video), "--backbone", "videomae-base", "--out",
                           str(caches / "cli-store")], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    config = open_store(caches / "cli-store").config
    assert config.clip_len == FRAMES and config.weights == f"hf:{repo}@{REV}"
    assert config.weights_sha256 == file_sha256(snapshot(caches, repo) / "model.safetensors")


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable"])
def test_offline_with_an_empty_cache_is_one_fast_error_line(caches, monkeypatch, video, how):
    go_offline(monkeypatch, how)
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["extract", str(video), "--backbone", "vjepa2-vitl", "--out",
                                      str(caches / "store")])
    seconds = time.perf_counter() - start
    where = str(caches / "hf" / "hub" / "models--facebook--vjepa2-vitl-fpc64-256" / "snapshots")
    one_error_line(result, where, "featx weights pull vjepa2-vitl")
    assert seconds < 5, seconds  # the issue asks for 2 s; 5 leaves room for a loaded test machine


def test_a_repo_whose_architecture_has_no_adapter_is_one_line_naming_the_supported_ones(caches, server, monkeypatch,
                                                                                         video):
    repo = "tiny-org/bert"
    server.files[f"/{repo}/resolve/main/config.json"] = b'{"model_type": "bert", "architectures": ["BertModel"]}'
    server.files[f"/{repo}/resolve/main/model.safetensors"] = b"weights that are never fetched"
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    result = CliRunner().invoke(app, ["extract", str(video), "--backbone", f"hf:{repo}", "--out",
                                      str(caches / "store")])
    line = one_error_line(result, "model_type 'bert' (BertModel) has no featx adapter", *hf_video.ADAPTERS)
    assert "X-CLIP" in line and not (snapshot(caches, repo) / "model.safetensors").exists()


def test_a_fixed_frame_model_refuses_another_clip_length(tmp_path, tiny, video):
    result = CliRunner().invoke(app, ["extract", str(video), "--backbone", "hf:tiny-org/videomae", "--weights",
                                      str(tiny["videomae"]), "--clip-len", "2", "--out", str(tmp_path / "s")])
    one_error_line(result, "takes exactly its 4 frames per clip")


@pytest.mark.parametrize("processor, says", [
    ({"size": {"shortest_edge": 0}}, "not usable"),  # no size: the computation fails on it
    ({"crop_size": {"height": 0, "width": 0}}, "input size 3 x 0 x 0"),
    ({"image_mean": [0.5, 0.5]}, "2 means and 3 stds"),
    ({"image_std": [0, 0, 0]}, "std [0.0, 0.0, 0.0]"),
    ({"image_mean": "abc"}, "not usable"),
    ({"size": {"shortest_edge": -5}}, "crop fraction"),
])
def test_an_absurd_processor_config_is_one_error_line(processor, says):
    """What a checkpoint's processor config says is checked before a frame is fed (a zero std gives NaN rows)."""
    from featx.backbones import _check_input, hf_video

    with pytest.raises(FeatxError, match="not usable") as caught:
        _check_input("hf:x/y", hf_video.preprocessing(processor, hf_video.ADAPTERS["videomae"]))
    assert says in str(caught.value) and "\n" not in str(caught.value)
