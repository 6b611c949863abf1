"""Adaptive detection: a skip step detector predicts from videos, running the backbone only on the steps it
updates on, and finds the same segments as on a fully extracted store."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from featx.inputs import collect_inputs
from featx.synth import make_untrimmed
from seqmodels.adaptive import adaptive_detect
from seqmodels.detection.run import load_detection_run, predict_detection, train_detection
from seqmodels.runs import TrainConfig, save_run
from tests.conftest import TINY_ARGS


@pytest.fixture(scope="module")
def skip_detector(tmp_path_factory):
    """(videos folder, store, run) of a skip-gru detector on 6 untrimmed videos, its gate set to skip often."""
    root = tmp_path_factory.mktemp("adaptive-detection")
    data = make_untrimmed(root / "v", videos=6, seconds=8, fps=8, size=32, seed=3)
    result = CliRunner().invoke(app, ["extract", str(root / "v"), "--out", str(root / "s"), "--fps", "4", *TINY_ARGS,
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    config = TrainConfig.with_defaults("detection", "skip-gru", epochs=2, head_options={"hidden": 16}, threshold=0.3)
    train_detection(root / "s", data.labels, config, root / "run")
    run = load_detection_run(root / "run")
    with torch.no_grad():  # a gate that skips often, and scores that cross the threshold somewhere
        run.model.skip.gate.weight.mul_(0.1)
        run.model.skip.gate.bias.fill_(-0.6)
        run.model.skip.classifier[-1].bias[0] -= 1.0
    save_run(run, root / "run")
    return root / "v", root / "s", root / "run"


def _segments(results: dict) -> dict:
    return {v: sorted((r["label"], r["segment"][0], r["segment"][1], r["score"]) for r in rows)
            for v, rows in results["results"].items()}


@pytest.mark.slow
def test_adaptive_detection_finds_the_segments_of_the_full_features(skip_detector):
    videos, store, run = skip_detector
    full = _segments(predict_detection(run, store))
    results, summary = adaptive_detect(run, collect_inputs([videos]), device="cpu", streams=4)
    adaptive = _segments(results)
    assert not summary.failures and set(adaptive) == set(full)
    assert sum(map(len, full.values())) > 0  # something to compare
    for vid in full:
        assert [s[0] for s in adaptive[vid]] == [s[0] for s in full[vid]]
        np.testing.assert_allclose([s[1:] for s in adaptive[vid]], [s[1:] for s in full[vid]], rtol=1e-5, atol=1e-5)
    assert summary.frames == 6 * 8 * 4
    assert 0.2 < summary.backbone_calls / summary.frames < 0.8


@pytest.mark.slow
def test_cli_predicts_detections_adaptively(skip_detector, tmp_path):
    videos, _, run = skip_detector
    out = tmp_path / "adaptive.json"
    result = CliRunner().invoke(app, ["predict", str(run), str(videos), "--adaptive", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "backbone calls" in result.output
    assert json.loads(out.read_text())["results"].keys() == {v.video_id for v in collect_inputs([videos])}
