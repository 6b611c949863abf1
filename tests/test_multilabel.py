"""Multi-label per-step heads: labels with several classes per video or per step, binary cross-entropy, and
mAP as Charades defines it (checked against scikit-learn)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner

from cli import app
from featx.store import StoreWriter
from seqmodels.detection.annotations import Segment
from seqmodels.heads import build_head
from seqmodels.metrics import average_precision, multilabel_map
from seqmodels.multilabel import _cover, read_label_sets
from seqmodels.streams import fuse
from tests.helpers import STORE_DIM, one_error_line, toy_config, toy_record

CLASSES = ["jump", "run", "wave"]
STEP = 0.5  # seconds per store row


def test_average_precision_matches_scikit_learn_with_and_without_ties():
    rng = np.random.default_rng(0)
    for trial in range(100):
        n = int(rng.integers(2, 40))
        scores = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.random(n)
        positives = rng.random(n) < 0.4
        positives[0] = True
        assert average_precision(scores, positives) == pytest.approx(average_precision_score(positives, scores), abs=1e-12)


def test_map_averages_only_classes_with_a_positive():
    # class a: positives ranked 1st and 3rd -> (1 + 2/3) / 2; class b: its positive ranked 2nd -> 1/2; c: none
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [0.7, 0.9, 0.5], [0.1, 0.3, 0.5]])
    targets = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0]])
    scores[1, 0] = 0.8  # rank: row0 0.9, row1 0.8, row2 0.7 for class a
    result = multilabel_map(scores, targets, ["a", "b", "c"])
    assert result["AP"]["a"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["AP"]["b"] == pytest.approx(1.0)  # row2 scores 0.9, the highest of class b
    assert result["AP"]["c"] is None and result["classes_scored"] == 2
    assert result["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)


def test_several_labels_per_cell_or_per_row_read_the_same(tmp_path):
    cells = tmp_path / "cells.csv"
    cells.write_text("video_id,labels,split\nv1,run|jump,train\nv2,wave,val\n")
    rows = tmp_path / "rows.csv"
    rows.write_text("video_id,label,split\nv1,jump,train\nv1,run,train\nv2,wave,val\n")
    for path in (cells, rows):
        table = read_label_sets(path)
        assert dict(zip(table.video_id, table.labels)) == {"v1": ("jump", "run"), "v2": ("wave",)}
        assert dict(zip(table.video_id, table.split)) == {"v1": "train", "v2": "val"}


def test_a_video_in_two_splits_is_one_error_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video_id,label,split\nv1,jump,train\nv1,run,val\n")
    with pytest.raises(Exception, match="v1.*split"):
        read_label_sets(path)


def test_step_targets_hold_several_classes_where_segments_overlap():
    # cells of 1 s: [0,1), [1,2), [2,3), [3,4); jump covers 0.5-2.5, run 1.4-4
    cells = (np.arange(4.0), np.arange(4.0) + 1)
    target = _cover(cells, [Segment(0.5, 2.5, "jump"), Segment(1.4, 4.0, "run")], ["jump", "run"])
    # jump covers half of cell 0, all of cell 1, half of cell 2; run covers 0.6 of cell 1, all of cells 2, 3
    assert target.tolist() == [[1, 0], [1, 1], [1, 1], [0, 1]]


@pytest.mark.parametrize("name", ["lstm", "gru", "skip-lstm", "skip-gru"])
def test_per_step_heads_are_causal_and_score_every_step(name):
    torch.manual_seed(0)
    head = build_head(name, 4, 3, task="multilabel", hidden=8, dropout=0.0).eval()
    x = torch.randn(2, 7, 4)
    mask = torch.ones(2, 7, dtype=torch.bool)
    out = head(x, mask)
    assert out.logits.shape == (2, 7, 3)
    changed = x.clone()
    changed[:, 4:] = torch.randn(2, 3, 4) * 3
    later = head(changed, mask)
    assert torch.allclose(out.logits[:, :4], later.logits[:, :4], atol=1e-6)  # step t sees steps 1..t only
    assert not torch.allclose(out.logits[:, 4:], later.logits[:, 4:])


def test_a_skipped_step_repeats_the_previous_steps_output():
    torch.manual_seed(0)
    head = build_head("skip-gru", 4, 3, task="multilabel", hidden=8, dropout=0.0, update_bias=-3.0).eval()
    out = head(torch.randn(1, 12, 4), torch.ones(1, 12, dtype=torch.bool))
    updates = out.updates[0]
    assert updates[0] == 1 and (updates == 0).any()  # the first step always updates; sigmoid(-3) then skips
    for t in range(1, 12):
        if updates[t] == 0:
            assert torch.equal(out.logits[0, t], out.logits[0, t - 1])


def test_late_fusion_of_per_step_heads_averages_sigmoid_probabilities():
    a, b = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    from seqmodels.heads.common import HeadOutput

    fused = fuse([HeadOutput(a, multilabel=True), HeadOutput(b, multilabel=True)])
    assert torch.allclose(torch.sigmoid(fused.logits), (torch.sigmoid(a) + torch.sigmoid(b)) / 2, atol=1e-5)
    # a per-step softmax head (skip step detectors) averages softmax probabilities instead
    fused = fuse([HeadOutput(a), HeadOutput(b)])
    assert torch.allclose(torch.softmax(fused.logits, -1), (torch.softmax(a, -1) + torch.softmax(b, -1)) / 2, atol=1e-5)


def _multilabel_store(root, videos=24, steps=30, seed=0):
    """Videos whose steps hold 0-2 classes at once; a step's features are the sum of its classes' prototypes
    plus noise. Returns the segments per video."""
    rng = np.random.default_rng(seed)
    protos = np.eye(STORE_DIM)[: len(CLASSES)] * 2.0
    segments = {}
    with StoreWriter(root, toy_config()) as writer:
        for v in range(videos):
            vid = f"v{v:02d}"
            segs = []
            for k in rng.choice(len(CLASSES), size=2, replace=False):
                start = float(rng.integers(0, steps // 2)) * STEP
                segs.append(Segment(start, start + float(rng.integers(4, steps // 2)) * STEP, CLASSES[k]))
            t = np.arange(steps) * STEP
            active = _cover((t, t + STEP), segs, CLASSES)
            feats = (rng.normal(0, 0.4, (steps, STORE_DIM)) + active @ protos).astype(np.float32)
            frames = np.arange(steps) * 12
            writer.add_video(toy_record(vid), writer.table(vid, t, t + STEP, frames, frames + 12, feats))
            segments[vid] = segs
    return segments


def _annotations_json(path, segments):
    database = {vid: {"subset": "training" if i % 4 else "validation", "duration": 15.0,
                      "annotations": [{"segment": [s.start, s.end], "label": s.label} for s in segs]}
                for i, (vid, segs) in enumerate(segments.items())}
    path.write_text(json.dumps({"database": database}))


@pytest.mark.slow
def test_multilabel_from_annotations_trains_evaluates_and_predicts(tmp_path):
    store, run = tmp_path / "store", tmp_path / "run"
    segments = _multilabel_store(store, videos=16, steps=24)
    ann = tmp_path / "ann.json"
    _annotations_json(ann, segments)
    runner = CliRunner()
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(ann), "--task", "multilabel",
                                 "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["videos"] == 4 and metrics["classes_scored"] == 3
    # chance is the share of positive steps (about a third); the classes are in the features
    assert metrics["mAP"] > 0.75, metrics
    assert "mAP (Charades" in result.output
    result = runner.invoke(app, ["evaluate", str(run), str(store), "--annotations", str(ann)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "evaluation.json").read_text())["mAP"] == pytest.approx(metrics["mAP"], abs=1e-6)
    out = tmp_path / "steps.parquet"
    result = runner.invoke(app, ["predict", str(run), str(store), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert len(table) == 16 * 24 * 3 and set(table.label) == set(CLASSES)
    one = table[(table.video_id == "v01") & (table.step == 3)]
    assert one.t_start.tolist() == [1.5] * 3 and one.probability.between(0, 1).all()


@pytest.mark.slow
def test_a_labels_csv_with_several_labels_per_video_trains_a_multilabel_run(tmp_path):
    store, run = tmp_path / "store", tmp_path / "run"
    segments = _multilabel_store(store, steps=12)
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,labels\n" + "".join(f"{v},{'|'.join(s.label for s in segs)}\n" for v, segs in segments.items()))
    result = CliRunner().invoke(app, ["train-head", str(store), "--labels", str(labels), "--out", str(run),
                                      "--head", "gru", "--option", "hidden=32", "--no-progress"])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == "multilabel" and config["train"]["head"] == "gru"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["mAP"] > 0.8, metrics  # every step carries its video's 2 of 3 classes: chance about 0.67


def test_a_classification_head_is_not_a_per_step_head(tmp_path):
    store = tmp_path / "store"
    segments = _multilabel_store(store, videos=4, steps=10)
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,labels\n" + "".join(f"{v},{'|'.join(s.label for s in segs)}\n" for v, segs in segments.items()))
    result = CliRunner().invoke(app, ["train-head", str(store), "--labels", str(labels), "--out", str(tmp_path / "run"),
                                      "--head", "avgpool", "--no-progress"])
    one_error_line(result, "per-step head", "avgpool")
