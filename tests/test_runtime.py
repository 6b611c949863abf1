"""--runtime openvino: the backbone compiled by OpenVINO for the CPU gives torch float32's features, is converted
once (an on-disk cache), and is part of the store's identity."""

import numpy as np
import pytest
from typer.testing import CliRunner

import featx
from cli import app
from featx.backbones import runtime
from featx.errors import FeatxError
from tests.conftest import TINY_ARGS
from tests.helpers import one_error_line

runner = CliRunner()


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ov_cache")


@pytest.fixture
def cached(ov_cache, monkeypatch):
    monkeypatch.setenv(runtime.CACHE_ENV, str(ov_cache))
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
    assert "runtime" in one_error_line(runner.invoke(app, base))  # the same store, run by torch: refused
    fresh = ["extract", str(tiny_videos), "-o", str(tmp_path / "t"), *TINY_ARGS, "--runtime", "openvino"]
    one_error_line(runner.invoke(app, [*fresh, "--precision", "float16"]), "runs float32 or bfloat16")
    one_error_line(runner.invoke(app, [*fresh, "--stream", "both"]), "RGB only so far")
    one_error_line(runner.invoke(app, [*fresh[:-1], "tensorrt"]), "--runtime must be one of torch, openvino")
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
