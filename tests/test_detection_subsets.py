"""Subsets as datasets name them: a THUMOS-shaped file trains on validation and reports on test at THUMOS's
tIoUs without a flag; ActivityNet trains on training; test videos never reach training unless named; the run
records what it used and `evaluate` / `predict` default to it."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from featx.errors import FeatxError
from featx.store import StoreWriter
from seqmodels.detection.annotations import Annotations, Segment, VideoAnnotation
from seqmodels.detection.map import ACTIVITYNET_TIOU, THUMOS_TIOU
from seqmodels.detection.subsets import choose_split, default_tiou, thumos_shaped
from tests.helpers import STORE_DIM, toy_config, toy_record

runner = CliRunner()


def _annotations(subsets: dict[str, str | None]) -> Annotations:
    return Annotations("a.json", {v: VideoAnnotation(s, 30.0, [Segment(2.0, 6.0, "x")]) for v, s in subsets.items()})


def test_activitynet_subsets_train_on_training_and_score_validation():
    ann = _annotations({"a": "training", "b": "training", "c": "validation", "d": "testing"})
    split = choose_split(ann, list(ann.videos), None, None, 0.2, 0)
    assert (split.train, split.eval, split.train_subset, split.eval_subset) == (["a", "b"], ["c"], "training", "validation")
    assert default_tiou(ann) == ACTIVITYNET_TIOU


def test_a_thumos_shaped_file_trains_on_validation_and_scores_test_at_thumos_tious():
    ann = _annotations({"v1": "validation", "v2": "validation", "t1": "testing", "t2": "testing"})
    assert thumos_shaped(ann)
    split = choose_split(ann, list(ann.videos), None, None, 0.2, 0)
    assert (split.train, split.eval, split.train_subset, split.eval_subset) == (["v1", "v2"], ["t1", "t2"], "validation", "testing")
    assert default_tiou(ann) == THUMOS_TIOU == (0.3, 0.4, 0.5, 0.6, 0.7)


def test_a_random_split_never_takes_test_videos():
    ann = _annotations({**{f"u{i}": None for i in range(10)}, "t1": "testing", "t2": "testing"})
    for seed in range(5):
        split = choose_split(ann, list(ann.videos), None, None, 0.2, seed)
        assert not {"t1", "t2"} & set(split.train + split.eval)
        assert len(split.eval) == 2 and sorted(split.train + split.eval) == sorted(f"u{i}" for i in range(10))


def test_named_subsets_in_any_case_win_and_the_same_subset_twice_is_refused():
    ann = _annotations({"a": "training", "b": "validation", "c": "testing"})
    split = choose_split(ann, list(ann.videos), "Validation", "TEST", 0.2, 0)
    assert (split.train, split.eval) == (["b"], ["c"])
    with pytest.raises(FeatxError, match="both validation"):
        choose_split(ann, list(ann.videos), "val", "validation", 0.2, 0)
    with pytest.raises(FeatxError, match="--eval-subset must be"):
        choose_split(ann, list(ann.videos), None, "holdout", 0.2, 0)


# -- end to end on a store: what the run records and what evaluate / predict then use -------------------------
def _thumos_store(root, n=4):
    """Videos whose feature 0 is high inside the action: 2 validation and 2 test videos, THUMOS14's JSON layout."""
    database = {}
    with StoreWriter(root / "store", toy_config()) as writer:
        for k in range(2 * n):
            vid = f"video_{'validation' if k < n else 'test'}_{k:07d}"
            t = np.arange(40) * 0.5
            feats = np.random.default_rng(k).normal(0, 0.1, (40, STORE_DIM)).astype(np.float32)
            start = 4.0 + k
            feats[(t >= start) & (t < start + 5), 0] += 3.0
            writer.add_video(toy_record(vid), writer.table(vid, t, t + 0.5, np.arange(40) * 12, np.arange(40) * 12 + 12, feats))
            database[vid] = {"subset": "Validation" if k < n else "Test", "duration": 20.0, "fps": 30.0,
                             "annotations": [{"label": "Jump", "segment": [start, start + 5.0], "label_id": 0,
                                              "segment(frames)": [start * 30, (start + 5) * 30]}]}
    anno = root / "thumos14.json"
    anno.write_text(json.dumps({"version": "Thumos14-30fps", "database": database}))
    return root / "store", anno


@pytest.mark.slow
def test_train_head_on_a_thumos_file_records_its_subsets_tious_and_training_videos(tmp_path):
    store, anno = _thumos_store(tmp_path)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(anno), "--head", "linear", "--epochs", "3",
                                 "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "trained on validation (4 videos), scored on testing (4 videos)" in result.output
    config = json.loads((run / "config.json").read_text())
    assert (config["train"]["train_subset"], config["train"]["eval_subset"]) == ("validation", "testing")
    assert config["train"]["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert sorted(config["train_videos"]) == [f"video_validation_{k:07d}" for k in range(4)]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["tiou_thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7] and metrics["eval_subset"] == "testing"
    assert metrics["notes"] == ["scored on only 4 videos: one segment more or less moves the mAP a lot"]
    assert "note: scored on only 4 videos" in result.output

    result = runner.invoke(app, ["evaluate", str(run), str(store), "--annotations", str(anno)])
    assert result.exit_code == 0, result.output
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["videos"] == 4 and evaluation["tiou_thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert evaluation["map"] == metrics["map"]  # the same videos, thresholds and weights as training reported

    out = tmp_path / "test.json"
    result = runner.invoke(app, ["predict", str(run), str(store), "--annotations", str(anno), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(out.read_text())["results"]) == [f"video_test_{k:07d}" for k in range(4, 8)]


@pytest.mark.slow
def test_a_random_split_run_evaluates_the_videos_it_did_not_train_on(tmp_path):
    store, anno = _thumos_store(tmp_path)
    data = json.loads(anno.read_text())
    for entry in data["database"].values():
        entry.pop("subset")  # no subsets: a random share is held out
    anno.write_text(json.dumps(data))
    run = tmp_path / "run"
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(anno), "--head", "linear", "--epochs", "2",
                                 "--val-fraction", "0.25", "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    trained = set(json.loads((run / "config.json").read_text())["train_videos"])
    assert len(trained) == 6
    result = runner.invoke(app, ["evaluate", str(run), str(store), "--annotations", str(anno)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "evaluation.json").read_text())["videos"] == 2
    assert "tIoU  |   0.5 |  0.55" in result.output  # not THUMOS-shaped: ActivityNet's thresholds


def test_classes_the_scored_videos_never_show_are_named_in_a_note():
    from seqmodels.detection.run import sample_notes

    ann = Annotations("a.json", {f"v{k}": VideoAnnotation("validation", 30.0, [Segment(1.0, 2.0, "jump")]) for k in range(6)})
    assert sample_notes(ann, list(ann.videos), ["jump"]) == []
    (note,) = sample_notes(ann, list(ann.videos), ["dive", "jump", "swim"])
    assert "2 of 3 classes have no segment in the scored videos (dive, swim)" in note and "averages the other 1" in note


def test_a_seed_outside_numpys_range_is_one_error_line():
    from seqmodels.runs import TrainConfig

    for seed in (-1, 2**32):
        with pytest.raises(FeatxError, match="--seed must be an integer from 0 to 2\\*\\*32 - 1"):
            TrainConfig(seed=seed)
