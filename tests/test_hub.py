"""Pretrained weights without the internet: featx.backbones.hub's cache lookups, downloads from a local HTTP server
(torch.hub's and huggingface_hub's real download code, pointed at it), offline errors, `featx weights`, and parity
of featx's r3d_18 features with torchvision's own `weights.transforms()`."""

from __future__ import annotations

import hashlib
import io
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torchvision.models.video as tvv
from typer.testing import CliRunner

from cli import app
from featx.backbones import hub, timm2d, video3d
from featx.errors import FeatxError
from tests.helpers import REV, encode_h264, featx_command, go_offline, one_error_line

R3D = tvv.R3D_18_Weights.KINETICS400_V1


@pytest.fixture(scope="module")
def r3d_file():
    """A torchvision-style r3d_18 checkpoint (random weights, its 400-class fc included): (bytes, sha256)."""
    torch.manual_seed(1)
    buffer = io.BytesIO()
    torch.save(tvv.r3d_18(weights=None).state_dict(), buffer)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def clip_video(tmp_path_factory):
    """8 frames of 320 x 192 (5:3, so r3d_18's 128 x 171 resize squeezes it) with a ramp and moving waves."""
    yy, xx = np.mgrid[0:192, 0:320]
    images = [np.stack([np.clip(xx + 9 * k, 0, 255), yy, 128 + 100 * np.sin((xx + 2 * yy + 3 * k) / 6)], -1)
              .astype(np.uint8) for k in range(8)]
    return encode_h264(tmp_path_factory.mktemp("hub") / "clip.mp4", images, fps=8)


def cached_r3d(data: bytes):
    path = hub.url_file_path(R3D.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def serve_r3d(server, monkeypatch, data: bytes, prefix: str):
    """Serve `data` as r3d_18-<prefix>.pth and point torchvision's r3d_18 URL (through the mirror variable) at it."""
    name = f"r3d_18-{prefix}.pth"
    server.files[f"/models/{name}"] = data
    real = hub.torchvision_weights
    served = SimpleNamespace(url=f"{hub.TORCHVISION_BASE}/models/{name}", meta=R3D.meta, transforms=R3D.transforms)
    monkeypatch.setattr(hub, "torchvision_weights", lambda spec: served if spec.startswith("R3D_18") else real(spec))
    monkeypatch.setenv(hub.TORCHVISION_URL_ENV, server.url)
    return hub.torch_checkpoints_dir() / name


def extract(video, out, **options):
    import featx.api
    from featx.store import open_store

    summary = featx.api.extract([video], out, backbone="r3d_18", clip_len=8, device="cpu", dtype="float32",
                                progress=False, **options)
    assert summary.failed == 0
    store = open_store(out)
    return store.config, np.stack(store.rows().sort_values("step")["feature"].to_numpy()).astype(np.float32)


def test_r3d_18_matches_torchvision_transforms_and_model(caches, r3d_file, clip_video):
    """Same decoded video, same weights (in torch.hub's cache, no --weights): featx's pixels and features are
    torchvision's own `weights.transforms()` + r3d_18's."""
    from featx.backbones import extraction_config, load_backbone
    from featx.video import FrameChunk, stream_frames

    data, sha = r3d_file
    cached_r3d(data)
    config, features = extract(clip_video, caches / "store")
    t = R3D.transforms()
    assert (config.weights, config.weights_sha256) == ("torchvision:r3d_18-b3b3357e.pth", sha)
    assert config.resize_size == tuple(t.resize_size) and config.input_size == (3, *t.crop_size)
    assert config.mean == tuple(t.mean) and config.std == tuple(t.std) and config.clip_len == 8
    frames = np.concatenate([c.pixels for c in stream_frames(clip_video) if isinstance(c, FrameChunk)])
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, 192, 320) uint8, as torchvision reads videos
    pre = load_backbone(extraction_config(backbone="r3d_18", clip_len=8, weights="random-init"), "cpu").preprocess
    ours = np.concatenate([c.pixels for c in stream_frames(clip_video, pre=pre) if isinstance(c, FrameChunk)])
    shape = (3, 1, 1, 1)
    theirs = (t(clip) * torch.tensor(t.std).view(shape) + torch.tensor(t.mean).view(shape)) * 255  # (3, T, 112, 112)
    # FFmpeg resizes YUV then converts, torchvision converts then resizes: 2.8 levels apart on average (measured);
    # the floor crop offset (29 for 30) gave 5.6, the shorter side to 128 instead of 128 x 171 more
    assert np.abs(ours - theirs.permute(1, 2, 3, 0).numpy()).mean() < 4.0
    model = tvv.r3d_18(weights=None)
    model.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
    model.fc = torch.nn.Identity()
    with torch.no_grad():
        want = model.eval()(t(clip).unsqueeze(0)).numpy()[0]  # (512,)
    got = features[0]
    cosine = float(got @ want / np.linalg.norm(got) / np.linalg.norm(want))
    assert cosine >= 0.999 and np.linalg.norm(got - want) / np.linalg.norm(want) < 0.015, cosine


def test_extract_downloads_torchvision_weights_into_the_cache(caches, server, monkeypatch, r3d_file, clip_video):
    data, sha = r3d_file
    path = serve_r3d(server, monkeypatch, data, sha[:8])
    config, _ = extract(clip_video, caches / "store")
    assert path.read_bytes() == data  # torch.hub's download, its sha256 prefix checked
    assert (config.weights, config.weights_sha256) == (f"torchvision:{path.name}", sha)


def test_a_download_whose_hash_does_not_match_its_name_is_refused(caches, server, monkeypatch):
    server.files["/models/r3d_18-b3b3357e.pth"] = b"not the published checkpoint"
    monkeypatch.setenv(hub.TORCHVISION_URL_ENV, server.url)
    with pytest.raises(FeatxError, match="r3d_18: the download of r3d_18-b3b3357e.pth is corrupt") as caught:
        video3d.create("r3d_18", "auto")
    assert "\n" not in str(caught.value)
    assert not any(hub.torch_checkpoints_dir().iterdir())  # nothing kept


def hf_cache_file(root, repo: str, data: bytes):
    """`data` as the repo's model.safetensors in huggingface_hub's cache layout: snapshots/<rev>/..., refs/main."""
    folder = root / "hf" / "hub" / ("models--" + repo.replace("/", "--"))
    (folder / "snapshots" / REV).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(REV)
    path = folder / "snapshots" / REV / "model.safetensors"
    path.write_bytes(data)
    return path


def timm_safetensors(name: str) -> tuple[bytes, dict]:
    import timm
    from safetensors.torch import save

    torch.manual_seed(2)
    state = timm.create_model(name, pretrained=False).state_dict()
    return save({k: v.contiguous() for k, v in state.items()}), state


def test_a_timm_model_in_the_hugging_face_cache_loads_with_no_network(caches, monkeypatch):
    import huggingface_hub.constants

    from featx.digests import file_sha256

    data, state = timm_safetensors("resnet18")
    path = hf_cache_file(caches, "timm/resnet18.a1_in1k", data)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model, source, sha = timm2d.create("resnet18", "auto")
    assert (source, sha) == (f"hf:timm/resnet18.a1_in1k@{REV}", file_sha256(path))
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"])


def test_a_timm_model_downloads_through_huggingface_hub(caches, server, monkeypatch):
    data, state = timm_safetensors("test_resnet")
    server.files["/timm/test_resnet.r160_in1k/resolve/main/model.safetensors"] = data
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    model, source, _ = timm2d.create("test_resnet", "auto")
    assert source == f"hf:timm/test_resnet.r160_in1k@{REV}"
    assert (caches / "hf" / "hub" / "models--timm--test_resnet.r160_in1k" / "snapshots" / REV / "model.safetensors").is_file()
    assert torch.equal(model.state_dict()["conv1.0.weight"], state["conv1.0.weight"])
    listed = CliRunner().invoke(app, ["weights", "list"])
    assert listed.exit_code == 0 and any(line.startswith("test_resnet.r160_in1k ") and " cached " in line
                                         for line in listed.output.splitlines()), listed.output


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable"])
@pytest.mark.parametrize("name", ["r3d_18", "resnet18"])
def test_offline_without_a_cache_is_one_fast_line_naming_the_cache_path(caches, monkeypatch, how, name):
    go_offline(monkeypatch, how)
    where = (str(hub.url_file_path(R3D.url)) if name == "r3d_18"
             else str(caches / "hf" / "hub" / "models--timm--resnet18.a1_in1k" / "snapshots"))
    create = video3d.create if name == "r3d_18" else timm2d.create
    start = time.perf_counter()
    with pytest.raises(FeatxError) as caught:
        create(name, "auto")
    seconds = time.perf_counter() - start
    message = str(caught.value)
    assert seconds < 5, seconds  # the issue asks for 2 s; 5 leaves room for a loaded test machine
    assert "\n" not in message and where in message and f"featx weights pull {name}" in message, message
    assert ("HF_HUB_OFFLINE" if how == "HF_HUB_OFFLINE" else "unreachable") in message


def test_weights_list_and_pull_through_the_cli(caches, server, monkeypatch, r3d_file):
    data, sha = r3d_file
    runner = CliRunner()

    def r3d_row() -> str:
        result = runner.invoke(app, ["weights", "list", "r3d_18", "swin3d_t"])
        assert result.exit_code == 0, result.output
        return next(line for line in result.output.splitlines() if line.startswith("r3d_18 "))

    path = serve_r3d(server, monkeypatch, data, sha[:8])
    assert " not cached " in r3d_row() and "512" in r3d_row() and f"torchvision:{path.name}" in r3d_row()
    pulled = runner.invoke(app, ["weights", "pull", "r3d_18"])
    assert pulled.exit_code == 0, pulled.output
    assert path.read_bytes() == data and " cached " in r3d_row() and " not cached " not in r3d_row()
    one_error_line(runner.invoke(app, ["weights", "pull", "c3d"]), "c3d", "--weights PATH")
    one_error_line(runner.invoke(app, ["weights", "pull", "resnet_18"]), "did you mean")


def test_every_torchvision_video_model_lists_its_own_weights_and_preprocessing(caches):
    from featx.backbones import catalog

    names = ["r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s", "swin3d_t", "swin3d_s", "swin3d_b"]
    rows = {r.name: r for r in catalog.list_weights()}
    for name in names:
        member = hub.torchvision_weights(video3d.CLIP_MODELS[name].weights)
        t, spec = member.transforms(), video3d.CLIP_MODELS[name].input
        assert (spec.crop, spec.mean, spec.std) == (t.crop_size[0], tuple(t.mean), tuple(t.std))
        assert rows[name].source == f"torchvision:{member.url.rsplit('/', 1)[1]}" and not rows[name].cached
        assert rows[name].feature_dim == video3d.feature_dim(name) and rows[name].feature_dim in (512, 768, 1024)
    assert (rows["s3d"].clip_len, rows["swin3d_b"].clip_len, rows["mvit_v2_s"].clip_len) == (128, 32, 16)
    assert rows["tf_efficientnet_lite0"].cached  # the bundled default


def test_featx_extract_uses_the_cached_checkpoint_without_weights_flag(caches, r3d_file, clip_video):
    """The installed `featx` command, in a fresh process that sees only the environment's TORCH_HOME."""
    import os

    data, sha = r3d_file
    cached_r3d(data)
    out = caches / "cli-store"
    env = {**os.environ, "TORCH_HOME": str(caches / "torch"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([featx_command(), "extract", str(clip_video), "--backbone", "r3d_18", "--clip-len", "8",
                           "--out", str(out), "--device", "cpu", "--no-progress"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from featx.store import open_store

    assert open_store(out).config.weights_sha256 == sha


def test_extract_offline_without_the_checkpoint_is_one_error_line(caches, monkeypatch, clip_video):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["extract", str(clip_video), "--backbone", "r3d_18", "--clip-len", "8", "--out",
                                      str(caches / "store"), "--device", "cpu", "--no-progress"])
    one_error_line(result, str(hub.url_file_path(R3D.url)), "featx weights pull r3d_18")


def test_resize_size_is_kept_out_of_the_json_unless_set():
    import json

    from featx.config import ExtractConfig

    plain, squeezed = ExtractConfig(), ExtractConfig(resize_size=(128, 171))
    assert "resize_size" not in json.loads(plain.to_json())  # other stores' metadata is what it was
    assert ExtractConfig.from_json(squeezed.to_json()) == squeezed and plain.differences(squeezed)


@pytest.mark.parametrize("kind", ["foreign", "another model's"])
def test_a_cached_timm_file_that_is_not_the_models_weights_is_one_line(caches, monkeypatch, kind):
    """timm loads pretrained files non-strictly once the classifier is gone: featx checks every tensor was filled."""
    import huggingface_hub.constants
    from safetensors.torch import save

    from featx.backbones import timm2d

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    if kind == "foreign":
        data = save({"foo": torch.zeros(1)})
    else:  # resnet18's tensors where resnet34's belong: layers missing
        data, _ = timm_safetensors("resnet18")
    hf_cache_file(caches, "timm/resnet34.a1_in1k", data)
    with pytest.raises(FeatxError, match="does not hold timm's resnet34 .*missing|timm could not load") as caught:
        timm2d.create("resnet34", "auto")
    assert "\n" not in str(caught.value)


def test_weights_list_passes_over_timm_org_repos_that_are_not_timm_models(caches):
    """The timm organisation on the hub also holds open_clip's models; a tag this timm does not know is skipped."""
    hf_cache_file(caches, "timm/ViT-B-16-SigLIP", b"{}")
    hf_cache_file(caches, "timm/resnet18.a1_in1k_x", b"{}")
    listed = CliRunner().invoke(app, ["weights", "list"])
    assert listed.exit_code == 0, listed.output
    assert "ViT-B-16-SigLIP" not in listed.output and "a1_in1k_x" not in listed.output and "r3d_18" in listed.output


def test_pull_goes_on_past_a_name_that_fails_and_says_which_failed(caches, server, monkeypatch, r3d_file):
    data, sha = r3d_file
    path = serve_r3d(server, monkeypatch, data, sha[:8])
    result = CliRunner().invoke(app, ["weights", "pull", "c3d", "r3d_18"])
    assert path.read_bytes() == data  # r3d_18 pulled although c3d, named first, cannot be
    assert result.exit_code == 1 and "r3d_18:" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: 1 of 2 not pulled: c3d"), result.stderr


def test_pull_checks_a_cached_file_against_the_hash_in_its_name(caches):
    cached_r3d(b"truncated")
    one_error_line(CliRunner().invoke(app, ["weights", "pull", "r3d_18"]), "is damaged", "delete it")
