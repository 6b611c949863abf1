import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from tests.conftest import TINY_ARGS

runner = CliRunner()


@pytest.mark.slow
@pytest.mark.parametrize("head", ["avgpool", "skip-lstm"])
def test_train_head_writes_a_complete_run(labelled_store, tmp_path, head):
    store, labels = labelled_store
    out = tmp_path / "run"
    result = runner.invoke(app, ["train-head", str(store), "--labels", str(labels), "--head", head, "--out", str(out),
                                 "--epochs", "3", "--option", "hidden=16", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "epoch | train loss" in result.output and "accuracy" in result.output
    expected = {"config.json", "checkpoint.pt", "metrics.json", "history.json", "curves.png", "confusion.png"}
    if head == "skip-lstm":
        expected.add("skips.png")
    assert expected <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "macro_f1"} <= set(metrics)
    assert ("update_fraction" in metrics) == (head == "skip-lstm")
    assert json.loads((out / "config.json").read_text())["train"]["head_options"] == {"hidden": 16}


@pytest.mark.slow
def test_evaluate_and_predict_use_the_run(labelled_store, tmp_path):
    store, labels = labelled_store
    run = tmp_path / "run"
    trained = runner.invoke(app, ["train-head", str(store), "--labels", str(labels), "--head", "lstm", "--out", str(run),
                                  "--epochs", "2", "--no-progress"])
    assert trained.exit_code == 0, trained.output
    assert "note: scored on only 4 videos" in trained.output  # a handful of validation videos is said so
    result = runner.invoke(app, ["evaluate", str(run), str(store), "--labels", str(labels), "--clip-steps", "3", "--clips", "2"])
    assert result.exit_code == 0, result.output
    assert "note: scored on only 4 videos" in result.output and "| precision | recall |" in result.output
    evaluation = json.loads((run / "evaluation.json").read_text())
    classes = json.loads((run / "config.json").read_text())["classes"]
    assert set(evaluation["per_class"]) == set(classes) and len(evaluation["confusion"]) == len(classes)
    assert sum(map(sum, evaluation["confusion"])) == 4
    saved = json.loads((run / "metrics.json").read_text())
    assert evaluation["videos"] == saved["videos"] == 4  # the run's own validation split
    assert evaluation["clips"] == 8 and {"clip_hit@1", "video_hit@1", "video_hit@5"} <= set(evaluation)
    for suffix in (".csv", ".parquet"):
        out = tmp_path / f"pred{suffix}"
        assert runner.invoke(app, ["predict", str(run), str(store), "--out", str(out), "--top-k", "2"]).exit_code == 0
        table = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert list(table.columns) == ["video_id", "label_1", "score_1", "label_2", "score_2"]
        assert len(table) == 16 and (table.score_1 >= table.score_2).all()


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda s, l, t: ["train-head", s, "--labels", str(t / "nope.csv"), "--out", str(t / "r")], "no such file"),
        (lambda s, l, t: ["train-head", s, "--labels", l, "--head", "lstn", "--out", str(t / "r")], "did you mean lstm"),
        (lambda s, l, t: ["train-head", s, "--labels", l, "--option", "hidden", "--out", str(t / "r")], "expected key=value"),
        (lambda s, l, t: ["evaluate", str(t), s, "--labels", l], "not a training run"),
        (lambda s, l, t: ["predict", str(t), s, "--out", str(t / "p.txt")], "not a training run"),
    ],
)
@pytest.mark.slow
def test_bad_input_to_head_commands_is_one_line(labelled_store, tmp_path, make_args, message):
    store, labels = labelled_store
    result = runner.invoke(app, make_args(str(store), str(labels), tmp_path))
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def _avgpool_run(store, labels, run, epochs: int):
    """An avgpool run trained on `store` through the CLI; returns its folder."""
    result = runner.invoke(app, ["train-head", str(store), "--labels", str(labels), "--head", "avgpool", "--out", str(run),
                                 "--epochs", str(epochs), "--no-progress"])
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.slow
def test_a_run_refuses_a_store_of_other_features(labelled_store, tmp_path):
    store, labels = labelled_store
    run = _avgpool_run(store, labels, tmp_path / "run", epochs=1)
    videos = store.parent / "v"
    other = tmp_path / "other"
    assert runner.invoke(app, ["extract", str(videos), "--out", str(other), *TINY_ARGS, "--fps", "2", "--no-progress"]).exit_code == 0
    result = runner.invoke(app, ["predict", str(run), str(other), "--out", str(tmp_path / "p.csv")])
    assert result.exit_code == 1 and "fps: None != 2.0" in result.stderr


@pytest.mark.slow
def test_predict_straight_from_videos_equals_predict_on_their_store(labelled_store, tmp_path):
    store, labels = labelled_store
    run = _avgpool_run(store, labels, tmp_path / "run", epochs=2)
    on_store, on_videos = tmp_path / "store.csv", tmp_path / "videos.csv"
    assert runner.invoke(app, ["predict", str(run), str(store), "--out", str(on_store)]).exit_code == 0
    result = runner.invoke(app, ["predict", str(run), str(labels.parent), "--out", str(on_videos)])
    assert result.exit_code == 0, result.output
    assert "extracted 16 videos as the run's store was" in result.output
    pd.testing.assert_frame_equal(pd.read_csv(on_videos), pd.read_csv(on_store))
    mixed = runner.invoke(app, ["predict", str(run), str(store), str(labels.parent), "--out", str(tmp_path / "m.csv")])
    assert mixed.exit_code == 1 and "one store, or video files" in mixed.stderr
