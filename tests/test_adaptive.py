import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from featx.errors import FeatxError
from featx.inputs import collect_inputs
from seqmodels.adaptive import adaptive_predict
from seqmodels.classify import predict_store
from seqmodels.train import TrainConfig, load_run, save_run

runner = CliRunner()


@pytest.fixture(scope="module")
def skip_run(labelled_store, tmp_path_factory):
    store, labels = labelled_store
    from seqmodels.classify import train_on_store

    folder = tmp_path_factory.mktemp("runs") / "skip"
    train_on_store(store, labels, TrainConfig(head="skip-gru", epochs=2, head_options={"hidden": 16}), folder, progress=False)
    run = load_run(folder)
    with torch.no_grad():  # a gate that skips often: Δũ about 0.35, so roughly every other step is used
        run.model.gate.weight.mul_(0.1)
        run.model.gate.bias.fill_(-0.6)
    save_run(run, folder)
    return folder


@pytest.mark.slow
def test_adaptive_prediction_equals_prediction_on_full_features(labelled_store, skip_run):
    store, _ = labelled_store
    videos = collect_inputs([store.parent / "v"])
    full = predict_store(skip_run, store, top_k=3).set_index("video_id")
    result = adaptive_predict(skip_run, videos, top_k=3, device="cpu", streams=5)
    adaptive = result.table.set_index("video_id")
    assert list(adaptive.index) == list(full.index) and not result.failures
    for j in (1, 2, 3):
        assert (adaptive[f"label_{j}"] == full[f"label_{j}"]).all()
        np.testing.assert_allclose(adaptive[f"score_{j}"], full[f"score_{j}"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(adaptive.update_fraction, full.update_fraction)  # the same steps were used
    assert result.backbone_calls == int(adaptive.backbone_calls.sum()) < result.frames == 16 * 6
    assert 0.2 < result.backbone_calls / result.frames < 0.8


@pytest.mark.slow
def test_adaptive_needs_a_skip_head(labelled_store, tmp_path):
    store, labels = labelled_store
    from seqmodels.classify import train_on_store

    train_on_store(store, labels, TrainConfig(head="avgpool", epochs=1), tmp_path / "pool", progress=False)
    with pytest.raises(FeatxError, match="needs a skip-lstm or skip-gru run"):
        adaptive_predict(tmp_path / "pool", collect_inputs([store.parent / "v"]))


@pytest.mark.slow
def test_cli_adaptive_reports_backbone_calls(labelled_store, skip_run, tmp_path):
    store, _ = labelled_store
    out = tmp_path / "adaptive.csv"
    result = runner.invoke(app, ["predict", str(skip_run), str(store.parent / "v"), "--adaptive", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "backbone calls" in result.output and "of 96 frames sampled" in result.output
    assert out.is_file()
