"""featx.backbones.weights: every backbone kind (timm 2D, clip, the flow twin) loads a checkpoint in each form
to the features of the model the weights came from; unsafe and broken files are one error line."""

import argparse
import copy
import dataclasses
import hashlib
import pickle

import pytest
import timm
import torch
import torchvision.models.video as tvv
from torch import nn

from featx.backbones import flow_backbone, load_backbone
from featx.backbones.weights import load_into, read_state_dict
from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.flow import cross_modality_init

CONFIGS = {
    "2d": ExtractConfig(backbone="test_efficientnet"),
    "clip": ExtractConfig(backbone="mc3_18", clip_len=1),  # 1 frame: a 3D network is slow on a CPU
    "flow": ExtractConfig(backbone="test_efficientnet", stream="flow", flow_len=2),
}


@pytest.fixture(scope="module")
def trained():
    """kind -> (the full model whose state dict the test saves, the feature model it must load to)."""
    torch.manual_seed(123)
    image = timm.create_model("test_efficientnet", pretrained=False, num_classes=5).eval()
    image_features = copy.deepcopy(image)
    image_features.reset_classifier(0)
    clip = tvv.mc3_18(weights=None).eval()  # torchvision's keys, its 400-class fc included
    clip_features = copy.deepcopy(clip)
    clip_features.fc = nn.Identity()
    flow_features = cross_modality_init(copy.deepcopy(image_features), CONFIGS["flow"].flow_len)
    return {"2d": (image, image_features), "clip": (clip, clip_features), "flow": (image, flow_features)}


def _decoy(state: dict) -> dict:
    """Other values under the same names: loading these instead of the wanted weights changes the features."""
    return {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}


def _save_safetensors(state, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


FORMS = {
    "weights.safetensors": _save_safetensors,
    "safetensors_content.bin": _save_safetensors,  # recognised by its header, whatever its suffix
    "state_dict.pth": lambda s, p: torch.save(s, p),
    "checkpoint.pth.tar": lambda s, p: torch.save({"epoch": 3, "arch": "x", "state_dict": s}, p),
    "data_parallel.pt": lambda s, p: torch.save({f"module.{k}": v for k, v in s.items()}, p),
    "compiled.pt": lambda s, p: torch.save({f"_orig_mod.{k}": v for k, v in s.items()}, p),
    "lightning.ckpt": lambda s, p: torch.save({"epoch": 1, "state_dict": {f"model.{k}": v for k, v in s.items()}}, p),
    # timm's train.py with --model-ema: raw weights, the EMA (its keys under `module.`) and the argparse options
    "timm_ema.pth.tar": lambda s, p: torch.save({
        "epoch": 9, "arch": "x", "state_dict": _decoy(s), "state_dict_ema": {f"module.{k}": v for k, v in s.items()},
        "args": argparse.Namespace(model="x", lr=0.1, sched="cosine", aa=None), "metric": 71.5}, p),
    "deit_ema.pth": lambda s, p: torch.save({"model": _decoy(s), "model_ema": s, "epoch": 2}, p),
}


def _load(kind: str, weights: str):
    config = dataclasses.replace(CONFIGS[kind], weights=weights, runtime="torch")  # torch's module: any input size
    backbone = load_backbone(config, "cpu")
    return flow_backbone(backbone, config) if kind == "flow" else backbone


def _input(kind: str, backbone) -> torch.Tensor:
    c = backbone.config
    if kind == "clip":
        return torch.randn(2, 3, 2, 48, 48)  # (B, 3, L, H, W): small, the network pools whatever it gets
    return torch.randn(2, len(c.mean), *c.input_size[1:])  # (B, 3 or 2L, H, W)


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", CONFIGS)
def test_each_checkpoint_form_loads_to_the_features_of_its_model(tmp_path, trained, kind, form):
    full, features = trained[kind]
    path = tmp_path / form
    FORMS[form](full.state_dict(), path)
    backbone = _load(kind, str(path))
    x = _input(kind, backbone)
    with torch.inference_mode():
        torch.testing.assert_close(backbone.model(x), features(x), rtol=1e-4, atol=1e-5)
    assert backbone.config.weights == str(path.resolve())
    assert backbone.config.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


class _Payload:
    """Unpickling this would create the marker file: the pickle calls open(marker, "w")."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2", "pickle protocol 4"])
@pytest.mark.parametrize("kind", CONFIGS)
def test_a_pickle_that_runs_code_is_refused_without_running_it(tmp_path, kind, writer):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    checkpoint = {"epoch": 1, "x": _Payload(marker)}
    if writer == "torch.save":
        torch.save(checkpoint, path)
    else:
        path.write_bytes(pickle.dumps(checkpoint, protocol=int(writer[-1])))
    with pytest.raises(FeatxError) as err:
        _load(kind, str(path))
    assert not marker.exists()
    message = str(err.value)
    assert "\n" not in message
    if writer == "pickle protocol 4":  # torch's weights-only unpickler stops at protocol 4's framing opcode
        assert message.startswith(f"--weights {path}: not a readable checkpoint (UnpicklingError: Unsupported")
    else:
        assert message.startswith(f"--weights {path}: refused: its pickle calls io.open")


@pytest.mark.parametrize("name", ["w.pth", "w.safetensors"])
@pytest.mark.parametrize("kind", CONFIGS)
def test_a_truncated_file_is_one_error_line(tmp_path, trained, kind, name):
    path = tmp_path / name
    FORMS["weights.safetensors" if name.endswith(".safetensors") else "state_dict.pth"](trained[kind][0].state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FeatxError) as err:
        _load(kind, str(path))
    assert "\n" not in str(err.value) and "not a readable checkpoint" in str(err.value)


@pytest.mark.parametrize("kind", CONFIGS)
def test_a_missing_file_names_the_option(tmp_path, kind):
    with pytest.raises(FeatxError, match="--weights .*nothing.pth: no such file"):
        _load(kind, str(tmp_path / "nothing.pth"))


def test_a_checkpoint_without_tensors_says_where_it_looked(tmp_path):
    torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "w.pth")
    with pytest.raises(FeatxError, match="expected a state dict of tensors, or one under state_dict_ema/"):
        read_state_dict(tmp_path / "w.pth")


def test_a_mismatch_counts_and_names_missing_unexpected_and_reshaped_tensors(tmp_path, trained):
    state = dict(trained["2d"][1].state_dict())
    gone = sorted(state)[0]
    del state[gone]
    state["extra.weight"] = torch.zeros(2)
    reshaped = "conv_stem.weight"
    state[reshaped] = torch.zeros(1, 2, 3)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(FeatxError) as err:
        _load("2d", str(tmp_path / "w.pth"))
    message = str(err.value)
    assert "\n" not in message and "does not fit timm's test_efficientnet" in message
    assert f"1 missing (e.g. {gone})" in message and "1 unexpected (e.g. extra.weight)" in message
    assert f"1 of another shape (e.g. {reshaped} (1, 2, 3) for" in message


class _Wrapper(nn.Module):
    """A network whose own parameters live under `model.`, as a Lightning module's do."""

    def __init__(self):
        super().__init__()
        self.model = nn.Linear(2, 2)


def test_a_prefix_that_is_the_models_own_is_kept():
    own = _Wrapper()
    twin = _Wrapper()
    load_into(twin, {f"module.{k}": v for k, v in own.state_dict().items()}, "w", "a wrapper", head=())
    torch.testing.assert_close(twin.model.weight, own.model.weight)
    with pytest.raises(FeatxError, match="2 missing"):  # `model.` is the model's own: not stripped twice
        load_into(twin, {k.removeprefix("model."): v for k, v in own.state_dict().items()}, "w", "a wrapper", head=())
