"""--runtime openvino: the backbone compiled by OpenVINO for the CPU gives torch float32's features, is converted
once (an on-disk cache), and is part of the store's identity."""

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import featx
from cli import app
from featx.backbones import openvino_model, runtime
from featx.config import ExtractConfig
from featx.errors import FeatxError
from tests.conftest import TINY_ARGS
from tests.helpers import one_error_line

runner = CliRunner()


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ov_cache")


@pytest.fixture
def cached(ov_cache, monkeypatch):
    monkeypatch.setenv(openvino_model.CACHE_ENV, str(ov_cache))
    return ov_cache


def _rows(store) -> np.ndarray:
    rows = featx.open_store(store).rows().sort_values(["video_id", "step"])
    return np.stack(rows["feature"].to_numpy()).astype(np.float64)


def _extract(videos, out, *extra):
    result = runner.invoke(app, ["extract", str(videos), "-o", str(out), *TINY_ARGS, "--dtype", "float32",
                                 "--no-progress", *extra])
    assert result.exit_code == 0, result.output
    return featx.open_store(out).config


def test_openvino_float32_gives_torch_float32_features_row_by_row(cached, tiny_videos, tmp_path):
    config = _extract(tiny_videos, tmp_path / "ov", "--runtime", "openvino")
    _extract(tiny_videos, tmp_path / "torch")
    assert (config.runtime, config.precision) == ("openvino", "float32") and "openvino" in config.versions
    got, want = _rows(tmp_path / "ov"), _rows(tmp_path / "torch")
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape == want.shape and cosine.min() >= 0.9999
    assert (np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)).max() < 1e-4


def test_a_second_run_reads_the_converted_model_from_the_cache(cached, tiny_videos, tmp_path, monkeypatch):
    _extract(tiny_videos, tmp_path / "first", "--runtime", "openvino")
    assert list(cached.glob("openvino/*.xml")) and list(cached.glob("openvino/*.bin"))
    import openvino

    monkeypatch.setattr(openvino, "convert_model", lambda *a, **k: pytest.fail("converted again"))
    _extract(tiny_videos, tmp_path / "second", "--runtime", "openvino")
    np.testing.assert_array_equal(_rows(tmp_path / "first"), _rows(tmp_path / "second"))


def test_the_runtime_is_the_stores_identity_and_wrong_combinations_are_one_line(cached, tiny_videos, tmp_path):
    _extract(tiny_videos, tmp_path / "s", "--runtime", "openvino")
    base = ["extract", str(tiny_videos), "-o", str(tmp_path / "s"), *TINY_ARGS, "--dtype", "float32"]
    assert "runtime" in one_error_line(runner.invoke(app, [*base, "--runtime", "torch"]))  # run by torch: refused
    fresh = ["extract", str(tiny_videos), "-o", str(tmp_path / "t"), *TINY_ARGS, "--runtime", "openvino"]
    one_error_line(runner.invoke(app, [*fresh, "--precision", "float16"]), "runs float32 or bfloat16")
    one_error_line(runner.invoke(app, [*fresh, "--stream", "both"]), "RGB only so far")
    one_error_line(runner.invoke(app, [*fresh[:-1], "tensorrt"]), "--runtime must be one of auto, torch, openvino")
    assert not (tmp_path / "t").exists()


def test_bfloat16_runs_only_when_asked_and_only_where_the_cpu_has_it(cached, tiny_videos, tmp_path):
    args = ["--runtime", "openvino", "--precision", "bfloat16"]
    if runtime.cpu_has_bf16():
        assert _extract(tiny_videos, tmp_path / "bf", *args).precision == "bfloat16"
    else:
        one_error_line(runner.invoke(app, ["extract", str(tiny_videos), "-o", str(tmp_path / "bf"), *TINY_ARGS, *args]),
                       "no native bfloat16")
    with pytest.raises(FeatxError, match="runs float32 or bfloat16"):
        runtime.resolve("float16")
    assert runtime.resolve("auto") == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("extra", [["--backbone", "r3d_18", "--clip-len", "4"], ["--layer", "blocks.1"]])
def test_clip_backbones_and_tapped_layers_convert_too(cached, tiny_videos, tmp_path, extra):
    _extract(tiny_videos, tmp_path / "ov", *extra, "--runtime", "openvino")
    _extract(tiny_videos, tmp_path / "torch", *extra)
    got, want = _rows(tmp_path / "ov"), _rows(tmp_path / "torch")
    assert got.shape == want.shape
    assert (np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)).max() < 1e-4


def _tiny_defaults(videos, out, *extra):
    """`featx extract` of `videos` with the tiny backbone and no --runtime (the default, auto)."""
    return runner.invoke(app, ["extract", str(videos), "-o", str(out), *TINY_ARGS, "--dtype", "float32", "--no-progress",
                               *extra])


def test_the_default_runtime_is_openvino_on_the_cpu_with_torch_float32_features(cached, tiny_videos, tmp_path):
    result = _tiny_defaults(tiny_videos, tmp_path / "auto")
    assert result.exit_code == 0, result.output
    config = featx.open_store(tmp_path / "auto").config
    assert (config.runtime, config.precision) == ("openvino", "float32")
    verdict = [openvino_model.read_verdict(p) for p in cached.glob("openvino/*.json")]
    assert verdict and all(v["ok"] and v["min_cosine"] >= openvino_model.MIN_COSINE for v in verdict)
    _extract(tiny_videos, tmp_path / "torch", "--runtime", "torch")
    got, want = _rows(tmp_path / "auto"), _rows(tmp_path / "torch")
    cosine = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert got.shape == want.shape and cosine.min() >= 0.9999


def test_auto_extends_a_store_with_the_runtime_it_started_with(cached, tiny_videos, tmp_path):
    some = tmp_path / "some"
    some.mkdir()
    for name in sorted(p.name for p in tiny_videos.glob("*.mp4"))[:2]:
        (some / name).symlink_to(tiny_videos / name)
    _extract(some, tmp_path / "s", "--runtime", "torch")
    result = _tiny_defaults(tiny_videos, tmp_path / "s")  # auto, on a store torch started: torch again
    assert result.exit_code == 0, result.output
    store = featx.open_store(tmp_path / "s")
    assert store.config.runtime == "torch" and len(store.ok_ids()) == len(list(tiny_videos.glob("*.mp4")))


def test_a_store_this_machine_cannot_run_as_it_started_is_refused_in_one_line(cached, tiny_videos, tmp_path,
                                                                               monkeypatch):
    _extract(tiny_videos, tmp_path / "s", "--runtime", "openvino")
    monkeypatch.setattr(runtime, "has_openvino", lambda: False)
    one_error_line(_tiny_defaults(tiny_videos, tmp_path / "s"), "extracted by OpenVINO at float32, which is not "
                                                                "installed here")
    monkeypatch.setattr(runtime, "has_openvino", lambda: True)
    config = featx.open_store(tmp_path / "s").config
    bf16 = ExtractConfig.from_dict({**config.to_dict(), "precision": "bfloat16"})
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with pytest.raises(FeatxError, match="at bfloat16, which this CPU cannot run"):
        runtime.settle_for_store(ExtractConfig(), bf16, "S")


def test_auto_runs_torch_where_openvino_cannot_convert_and_decides_that_once(cached, tiny_videos, tmp_path,
                                                                            monkeypatch):
    import openvino

    monkeypatch.setenv(openvino_model.CACHE_ENV, str(tmp_path / "cache"))

    def fails(*args, **kwargs):
        raise RuntimeError("an operation this test says OpenVINO lacks")

    monkeypatch.setattr(openvino, "convert_model", fails)
    assert _tiny_defaults(tiny_videos, tmp_path / "a").exit_code == 0
    assert featx.open_store(tmp_path / "a").config.runtime == "torch"
    monkeypatch.setattr(openvino, "convert_model", lambda *a, **k: pytest.fail("tried to convert again"))
    assert _tiny_defaults(tiny_videos, tmp_path / "b").exit_code == 0
    assert featx.open_store(tmp_path / "b").config.runtime == "torch"
    one_error_line(runner.invoke(app, ["extract", str(tiny_videos), "-o", str(tmp_path / "c"), *TINY_ARGS,
                                       "--runtime", "openvino"]), "could not convert")


def test_auto_runs_torch_where_openvinos_features_are_not_torchs(cached, tiny_videos, tmp_path, monkeypatch):
    monkeypatch.setenv(openvino_model.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(openvino_model, "agreement", lambda *a: {"min_cosine": 0.99, "max_relative_l2": 0.1})
    assert _tiny_defaults(tiny_videos, tmp_path / "a").exit_code == 0
    assert featx.open_store(tmp_path / "a").config.runtime == "torch"
    asked = _extract(tiny_videos, tmp_path / "b", "--runtime", "openvino")  # asked for: it runs, with a warning
    assert asked.runtime == "openvino"


def test_featx_imports_openvino_and_converts_with_its_telemetry_off(tmp_path):
    """OpenVINO sends a usage event at import and on conversion, and writes ~/intel, unless its user opted out."""
    import os
    import subprocess
    import sys

    script = """
import sys, torch
from featx.backbones import openvino_model
ov = openvino_model.import_openvino()
from openvino.tools.ovc import telemetry_stub, telemetry_utils
assert telemetry_utils.tm is telemetry_stub, telemetry_utils.tm
openvino_model.compile_model(torch.nn.Conv2d(3, 4, 3).eval(), (1, 3, 8, 8), "float32", {"backbone": "conv"}, 1)
import openvino_telemetry  # importable again for other code
"""
    env = {**os.environ, "HOME": str(tmp_path / "home"), openvino_model.CACHE_ENV: str(tmp_path / "cache")}
    env.pop("CI", None)  # OpenVINO's telemetry stays off in CI by itself: this is about everyone else
    (tmp_path / "home").mkdir()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "home" / "intel").exists() and list((tmp_path / "cache").glob("openvino/*.xml"))


def test_compile_is_torchs_and_refused_with_openvino(tiny_videos, tmp_path):
    one_error_line(runner.invoke(app, ["extract", str(tiny_videos), "-o", str(tmp_path / "s"), *TINY_ARGS,
                                       "--runtime", "openvino", "--compile"]), "--compile is torch.compile")
    config, device = runtime.settle_runtime(ExtractConfig(), tmp_path / "none", compile=True)
    assert (config.runtime, device) == ("torch", "auto")


def test_a_damaged_cached_model_is_converted_again(cached, tiny_videos, tmp_path, monkeypatch):
    monkeypatch.setenv(openvino_model.CACHE_ENV, str(tmp_path / "cache"))
    _extract(tiny_videos, tmp_path / "first", "--runtime", "openvino")
    (weights,) = (tmp_path / "cache" / "openvino").glob("*.bin")
    zeros = bytes(weights.stat().st_size)  # every weight 0: same size, other numbers
    weights.write_bytes(zeros)
    shutil.rmtree(weights.parent / "compiled")  # else OpenVINO runs its compiled copy of the intact model
    _extract(tiny_videos, tmp_path / "second", "--runtime", "openvino")
    np.testing.assert_array_equal(_rows(tmp_path / "first"), _rows(tmp_path / "second"))
    assert weights.read_bytes() != zeros


def test_an_unwritable_cache_warns_once_and_the_run_goes_on(tiny_videos, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv(openvino_model.CACHE_ENV, str(blocker))
    result = runner.invoke(app, ["extract", str(tiny_videos), "-o", str(tmp_path / "s"), *TINY_ARGS, "--no-progress"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cannot keep the converted model" in warnings[0] and openvino_model.CACHE_ENV in warnings[0]
    assert featx.open_store(tmp_path / "s").config.runtime == "openvino"


def test_a_cached_model_that_no_longer_gives_torchs_outputs_is_converted_again(tmp_path, monkeypatch):
    """A cached IR made from other model code (a library upgrade the key does not see) is checked, not trusted."""
    import torch

    monkeypatch.setenv(openvino_model.CACHE_ENV, str(tmp_path))
    torch.manual_seed(0)
    first, second = torch.nn.Conv2d(3, 4, 3).eval(), torch.nn.Conv2d(3, 4, 3).eval()
    same = {"backbone": "conv"}  # one key for both: as if the code that builds the model had changed
    openvino_model.compile_model(first, (1, 3, 8, 8), "float32", same, 1)
    compiled = openvino_model.compile_model(second, (1, 3, 8, 8), "float32", same, 1)
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), second(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("verdict", ['{"ok": false, "min_cosine": "abc"}', '{"why": 123}', '[1, 2]', "not json"])
def test_a_hand_edited_verdict_is_decided_again(tmp_path, monkeypatch, verdict):
    import torch

    monkeypatch.setenv(openvino_model.CACHE_ENV, str(tmp_path))
    model, shape = torch.nn.Conv2d(3, 4, 3).eval(), (1, 3, 8, 8)
    openvino_model.compile_model(model, shape, "float32", {"backbone": "conv"}, 1)
    (path,) = (tmp_path / "openvino").glob("*.json")
    path.write_text(verdict)
    assert openvino_model.compile_model(model, shape, "float32", {"backbone": "conv"}, 1, required=False) is not None
    assert openvino_model.read_verdict(path)["ok"] is True


def test_a_cache_openvino_cannot_write_warns_and_the_model_runs_from_memory(tmp_path, monkeypatch, capsys):
    import openvino
    import torch

    def full_disk(*args, **kwargs):
        raise RuntimeError("Exception from src/core/src/pass/serialize.cpp\nbasic_ios::clear: iostream error")

    monkeypatch.setenv(openvino_model.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(openvino, "save_model", full_disk)
    model = torch.nn.Conv2d(3, 4, 3).eval()
    assert openvino_model.compile_model(model, (1, 3, 8, 8), "float32", {"backbone": "conv"}, 1) is not None
    assert "warning: cannot keep the converted model" in capsys.readouterr().err
    assert not list(tmp_path.glob("openvino/*.xml")) and not list(tmp_path.glob("openvino/.*"))


def test_settings_openvino_does_not_run_name_the_stores_difference(cached, tiny_videos, tmp_path):
    _extract(tiny_videos, tmp_path / "s", "--runtime", "openvino")
    line = one_error_line(_tiny_defaults(tiny_videos, tmp_path / "s", "--precision", "float16"))
    assert "precision: 'float32' != 'float16'" in line and "runtime: 'openvino' != 'torch'" in line
    line = one_error_line(_tiny_defaults(tiny_videos, tmp_path / "s", "--compile"))
    assert "runtime: 'openvino' != 'torch'" in line


def test_the_stores_runtime_asked_for_by_name_takes_its_precision_and_the_cpu(cached, tiny_videos, tmp_path):
    made = _extract(tiny_videos, tmp_path / "s", "--runtime", "openvino")
    assert _tiny_defaults(tiny_videos, tmp_path / "s", "--runtime", "openvino").exit_code == 0
    bf16 = ExtractConfig.from_dict({**made.to_dict(), "precision": "bfloat16"})
    asked = runtime.settle_for_store(ExtractConfig(runtime="openvino"), bf16, "S")
    assert (asked.runtime, asked.precision) == ("openvino", "bfloat16")
    config, device = runtime.settle_runtime(ExtractConfig(), tmp_path / "s")
    assert (config.runtime, config.precision, device) == ("openvino", "float32", "cpu")  # not a CUDA card's auto


def test_a_conversion_killed_mid_write_leaves_nothing_behind_the_next(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv(openvino_model.CACHE_ENV, str(tmp_path))
    model, shape, same = torch.nn.Conv2d(3, 4, 3).eval(), (1, 3, 8, 8), {"backbone": "conv"}
    openvino_model.compile_model(model, shape, "float32", same, 1)
    (xml,) = (tmp_path / "openvino").glob("*.xml")
    dead = [xml.parent / f".{xml.stem}.999999999{suffix}" for suffix in (".xml", ".bin")]  # no such process
    for path in dead:
        path.write_bytes(b"half of an IR")
    xml.unlink()  # the next run converts again, and clears what a dead one left
    openvino_model.compile_model(model, shape, "float32", same, 1)
    assert xml.is_file() and not any(path.exists() for path in dead)


def test_ctrl_c_after_compiled_models_were_released_is_an_interrupt_not_a_crash(tmp_path):
    """OpenVINO unloaded its CPU plugin with the last Core, and a later SIGINT ended the process in a segmentation
    fault (seen where cached models were compiled, found stale and converted again, each checked by a torch forward
    pass): featx keeps one Core for the process."""
    import os
    import subprocess
    import sys

    script = """
import gc, os, signal, torch
from featx.backbones import openvino_model
for i in range(5):  # unseeded: the second run finds the first's models stale
    compiled = openvino_model.compile_model(torch.nn.Conv2d(3, 4, 3).eval(), (1, 3, 8, 8), "float32",
                                            {"backbone": f"conv{i}"}, 2)
    del compiled
    gc.collect()
got = []
signal.signal(signal.SIGINT, lambda *a: got.append(1))
os.kill(os.getpid(), signal.SIGINT)
print("interrupted", got)
"""
    env = {**os.environ, openvino_model.CACHE_ENV: str(tmp_path)}
    for run in ("converts", "converts again"):
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "interrupted [1]" in done.stdout, (run, done.returncode, done.stderr[-500:])
