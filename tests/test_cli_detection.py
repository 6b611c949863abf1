"""Detection through the CLI: synth untrimmed -> extract -> train-head --annotations -> predict JSON -> evaluate."""

import json

import pytest
from typer.testing import CliRunner

from cli import app
from seqmodels.detection.annotations import load_annotations
from seqmodels.detection.map import detection_map
from seqmodels.detection.run import ground_truth, read_results
from tests.anet_reference import official_map
from tests.conftest import TINY_ARGS

runner = CliRunner()


@pytest.fixture(scope="module")
def untrimmed_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("untrimmed")
    assert runner.invoke(app, ["synth", str(root / "v"), "--kind", "untrimmed", "--videos", "6", "--seconds", "20",
                               "--size", "32"]).exit_code == 0
    result = runner.invoke(app, ["extract", str(root / "v"), "--out", str(root / "s"), "--fps", "2", *TINY_ARGS, "--no-progress"])
    assert result.exit_code == 0, result.output
    return root / "s", root / "v" / "annotations.json"


@pytest.mark.slow
def test_train_predict_evaluate_agree(untrimmed_store, tmp_path):
    store, anno = untrimmed_store
    run = tmp_path / "run"
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(anno), "--out", str(run), "--epochs", "3",
                                 "--option", "hidden=16"])
    assert result.exit_code == 0, result.output
    assert "mAP" in result.output
    assert {"config.json", "checkpoint.pt", "metrics.json", "history.json", "timeline.png"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "config.json").read_text())["task"] == "detection"

    results = tmp_path / "results.json"
    result = runner.invoke(app, ["predict", str(run), str(store), "--out", str(results)])
    assert result.exit_code == 0, result.output
    data = json.loads(results.read_text())
    assert set(data) == {"version", "results", "external_data"} and len(data["results"]) == 6
    for rows in data["results"].values():
        for r in rows:
            assert set(r) == {"label", "score", "segment"} and r["segment"][0] < r["segment"][1]

    result = runner.invoke(app, ["evaluate", str(run), str(store), "--annotations", str(anno), "--tiou", "0.3,0.5"])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert set(evaluation["map"]) == {"0.3", "0.5"} and "average_map" in evaluation
    # the results file, scored on the validation videos, gives the numbers evaluate printed
    annotations = load_annotations(anno)
    val = annotations.subset("validation")
    mine = detection_map(ground_truth(annotations, val), [d for d in read_results(results) if d.video_id in val], [0.3, 0.5],
                         annotations.classes)
    assert mine.to_dict()["map"] == pytest.approx(evaluation["map"])


@pytest.mark.slow
def test_predict_subset_file_scored_by_an_independent_evaluator_equals_evaluate(untrimmed_store, tmp_path):
    store, anno = untrimmed_store
    run = tmp_path / "run"
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(anno), "--out", str(run), "--epochs", "2",
                                 "--option", "hidden=16", "--option", "heads=2", "--no-progress"])
    assert result.exit_code == 0, result.output
    results = tmp_path / "val.json"
    result = runner.invoke(app, ["predict", str(run), str(store), "--subset", "validation", "--annotations", str(anno),
                                 "--out", str(results)])
    assert result.exit_code == 0, result.output
    predicted = json.loads(results.read_text())
    truth = json.loads(anno.read_text())
    validation = {v for v, rec in truth["database"].items() if rec["subset"] == "validation"}
    assert set(predicted["results"]) == validation  # only that subset's videos
    metrics = tmp_path / "metrics.json"
    result = runner.invoke(app, ["evaluate", str(run), str(store), "--annotations", str(anno), "--out", str(metrics)])
    assert result.exit_code == 0, result.output
    evaluation = json.loads(metrics.read_text())
    thresholds = evaluation["tiou_thresholds"]
    per_threshold, average = official_map(truth, predicted, "validation", thresholds)
    assert list(evaluation["map"].values()) == pytest.approx(per_threshold.tolist(), abs=1e-12)
    assert evaluation["average_map"] == pytest.approx(average, abs=1e-12)


@pytest.mark.slow
def test_detection_input_errors_are_one_line(untrimmed_store, tmp_path):
    store, anno = untrimmed_store
    result = runner.invoke(app, ["train-head", str(store), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "error: classification needs --labels" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,start,end,label\nnot_there,0,1,a\n")
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "video 'not_there' is not in the store" in result.output
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(anno), "--head", "lstm", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "not a detection head" in result.output


def test_runs_and_results_are_never_written_into_a_store(untrimmed_store, tmp_path):
    store, anno = untrimmed_store
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(anno), "--out", str(store / "run")])
    assert result.exit_code == 1 and "is inside the store" in result.output
    result = runner.invoke(app, ["predict", str(tmp_path / "no-run"), str(store), "--out", str(store / "p.json")])
    assert result.exit_code == 1 and "is inside the store" in result.output
    assert not (store / "run").exists() and not (store / "p.json").exists()


def test_a_segment_beyond_the_video_is_refused_without_a_duration(untrimmed_store, tmp_path):
    store, anno = untrimmed_store
    truth = json.loads(anno.read_text())
    first = sorted(truth["database"])[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id,start,end,label\n" + "".join(
        f"{v},1,2,a\n" for v in truth["database"]) + f"{first},30,35,a\n")  # the videos last 20 s
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "ends after the video" in result.output
