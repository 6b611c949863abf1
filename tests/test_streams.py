"""Streams in stage 2: the columns a run reads, early and late fusion, runs that remember their streams; on toy
stores written straight through StoreWriter (RGB noise, the class in the flow column)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from featx.errors import FeatxError
from featx.store import open_store, StoreWriter
from seqmodels import streams
from seqmodels.classify import train_on_store
from seqmodels.data import SequenceSet, finite_sequences
from seqmodels.heads import build_head
from seqmodels.heads.common import HeadOutput
from seqmodels.runs import Run, TrainConfig, load_checkpoint
from seqmodels.classifier import _build, load_run, predict_scores, save_run, train
from tests.helpers import STORE_DIM, one_error_line, toy_config, toy_record

runner = CliRunner()
FAST = ["--epochs", "3", "--option", "hidden=8", "--no-progress"]


def write_store(root, stream: str, videos: int = 16, steps: int = 6, seed: int = 0) -> dict:
    """A toy store of `stream` ("rgb", "flow" or "both"); classes a/b: the flow features carry the class
    (channel 0 or 1 raised), the RGB ones are noise. Returns {video_id: (label, rgb, flow)}."""
    rng = np.random.default_rng(seed)
    made = {}
    with StoreWriter(root, toy_config(stream=stream)) as writer:
        for k in range(videos):
            vid, label = f"v{k:02d}", "ab"[k % 2]
            rgb = rng.normal(size=(steps, STORE_DIM)).astype(np.float32)
            flow = rng.normal(0, 0.3, (steps, STORE_DIM)).astype(np.float32)
            flow[:, 0 if label == "a" else 1] += 2
            t, frames = np.arange(steps) * 0.5, np.arange(steps) * 12
            main = flow if stream == "flow" else rgb
            table = writer.table(vid, t, t + 0.5, frames, frames + 12, main, flow if stream == "both" else None)
            writer.add_video(toy_record(vid), table)
            made[vid] = (label, rgb, flow)
    return made


def write_labels(path, made: dict):
    rows = [(v, label, "val" if k >= 3 * len(made) // 4 else "train") for k, (v, (label, _, _)) in enumerate(made.items())]
    pd.DataFrame(rows, columns=["video_id", "label", "split"]).to_csv(path, index=False)
    return path


@pytest.fixture
def two_stream(tmp_path):
    made = write_store(tmp_path / "both", "both")
    return tmp_path / "both", write_labels(tmp_path / "labels.csv", made), made


# --- which columns -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("store_stream, stream, expected", [
    ("rgb", "rgb", ["feature"]), ("flow", "flow", ["feature"]), ("both", "rgb", ["feature"]),
    ("both", "flow", ["flow_feature"]), ("both", "both", ["feature", "flow_feature"]),
])
def test_each_stream_reads_its_columns(store_stream, stream, expected):
    assert streams.columns(stream, store_stream, "S") == expected


@pytest.mark.parametrize("store_stream, stream, message", [
    ("rgb", "flow", "S has no flow features (it was extracted with --stream rgb); use --stream rgb"),
    ("rgb", "both", "S has no flow features"), ("flow", "rgb", "S has no rgb features"),
])
def test_a_stream_the_store_lacks_is_refused(store_stream, stream, message):
    with pytest.raises(FeatxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        streams.columns(stream, store_stream, "S")


def test_unset_stream_is_the_stores_own_and_both_fuses_late():
    for store_stream, stream, fusion in [("rgb", "rgb", None), ("flow", "flow", None), ("both", "both", "late")]:
        config, _ = streams.resolve(TrainConfig(), store_stream, "S")
        assert (config.stream, config.fusion) == (stream, fusion)
    assert streams.resolve(TrainConfig(stream="both", fusion="early"), "both", "S")[0].fusion == "early"
    with pytest.raises(FeatxError, match="--fusion needs two streams; S holds one"):
        streams.resolve(TrainConfig(fusion="early"), "rgb", "S")
    with pytest.raises(FeatxError, match="--fusion fuses two streams: it needs --stream both"):
        TrainConfig(stream="rgb", fusion="late")
    with pytest.raises(FeatxError, match="--stream must be rgb, flow or both"):
        TrainConfig(stream="optical")


def test_both_streams_load_side_by_side(two_stream):
    store, _, made = two_stream
    both = finite_sequences(open_store(store), columns=["feature", "flow_feature"])
    flow = finite_sequences(open_store(store), columns=["flow_feature"])
    for vid, (_, rgb, fl) in made.items():
        np.testing.assert_array_equal(both[vid], np.concatenate([rgb, fl], 1).astype(np.float16))
        np.testing.assert_array_equal(flow[vid], fl.astype(np.float16))


# --- late fusion ---------------------------------------------------------------------------------------------


def test_late_fusion_averages_the_heads_probabilities_by_hand():
    ln3 = float(np.log(3))
    a, b = torch.tensor([[0.0, ln3]]), torch.tensor([[ln3, 0.0]])  # softmax: (1/4, 3/4) and (3/4, 1/4)
    fused = streams.fuse([HeadOutput(a), HeadOutput(b)])
    torch.testing.assert_close(torch.softmax(fused.logits, -1), torch.tensor([[0.5, 0.5]]))
    steps = streams.fuse([torch.tensor([[[0.0, ln3]]]), torch.tensor([[[0.0, 0.0]]])])  # (1/4, 3/4), (1/2, 1/2)
    torch.testing.assert_close(torch.softmax(steps, -1), torch.tensor([[[0.375, 0.625]]]))
    # segment heads: sigmoid per class (1/2 and 3/4 -> 5/8), distances averaged
    logits, dist = streams.fuse([(torch.tensor([[[0.0]]]), torch.tensor([[[1.0, 3.0]]])),
                                 (torch.tensor([[[ln3]]]), torch.tensor([[[2.0, 5.0]]]))])
    torch.testing.assert_close(torch.sigmoid(logits), torch.tensor([[[0.625]]]))
    torch.testing.assert_close(dist, torch.tensor([[[1.5, 4.0]]]))


def test_a_fused_model_gives_each_head_its_own_columns():
    torch.manual_seed(0)
    heads = [build_head("avgpool", 3, 4, hidden=8).eval(), build_head("lstm", 5, 4, hidden=8).eval()]
    model = streams.StreamFusion(heads, [3, 5])
    x, mask = torch.randn(2, 7, 8), torch.ones(2, 7, dtype=torch.bool)
    mask[1, 4:] = False
    by_hand = (torch.softmax(heads[0](x[..., :3], mask).logits, -1) + torch.softmax(heads[1](x[..., 3:], mask).logits, -1)) / 2
    torch.testing.assert_close(torch.softmax(model(x, mask).logits, -1), by_hand)


def _sets(made: dict, cols=slice(None)):
    ids = list(made)
    seqs = [np.concatenate([made[v][1], made[v][2]], 1)[:, cols] for v in ids]
    labels = np.array([0 if made[v][0] == "a" else 1 for v in ids])
    data = SequenceSet(ids, seqs, labels)
    return data.subset(np.arange(12)), data.subset(np.arange(12, 16))


@pytest.mark.slow
def test_late_fusion_trains_each_head_as_if_alone(tmp_path):
    made = write_store(tmp_path / "s", "both")
    config = TrainConfig(head="lstm", head_options={"hidden": 8}, epochs=2, stream="both", fusion="late")
    late = train(*_sets(made), ["a", "b"], config, progress=False)
    assert isinstance(late.model, streams.StreamFusion) and late.in_dim == 2 * STORE_DIM
    assert [row["stream"] for row in late.history] == ["rgb", "rgb", "flow", "flow"]
    for k, cols in enumerate([slice(0, STORE_DIM), slice(STORE_DIM, None)]):
        alone = train(*_sets(made, cols), ["a", "b"], TrainConfig(head="lstm", head_options={"hidden": 8}, epochs=2),
                      progress=False)
        for key, value in alone.model.state_dict().items():
            assert torch.equal(value, late.model.heads[k].state_dict()[key]), key


@pytest.mark.slow
def test_early_fusion_is_one_head_on_twice_the_width(two_stream, tmp_path):
    store, labels, _ = two_stream
    run, _ = train_on_store(store, labels, TrainConfig(head="avgpool", head_options={"hidden": 8}, epochs=1,
                                                        stream="both", fusion="early"), tmp_path / "run", progress=False)
    assert run.in_dim == 2 * STORE_DIM and not isinstance(run.model, streams.StreamFusion)
    assert run.model.norm.normalized_shape == (2 * STORE_DIM,)


# --- runs remember their streams -----------------------------------------------------------------------------


def _saved_run(tmp_path, config: TrainConfig, store_stream: str):
    """A run of `config` (random weights) on a toy store of `store_stream`, saved in tmp_path / "run"."""
    torch.manual_seed(0)
    in_dim = STORE_DIM * len(streams.stream_names(config.stream))
    model = _build(config, in_dim, ["a", "b"])
    run = Run(model.eval(), config, ["a", "b"], in_dim, toy_config(stream=store_stream).to_dict())
    save_run(run, tmp_path / "run")
    return run


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_a_two_stream_run_reloads_and_predicts_the_same(tmp_path, fusion):
    config = TrainConfig(head="lstm", head_options={"hidden": 8}, stream="both", fusion=fusion)
    run = _saved_run(tmp_path, config, "both")
    again = load_run(tmp_path / "run")
    assert again.config == run.config and isinstance(again.model, streams.StreamFusion) == (fusion == "late")
    data = _sets(write_store(tmp_path / "s", "both"))[1]
    np.testing.assert_array_equal(predict_scores(again.model, data)[0], predict_scores(run.model, data)[0])


@pytest.mark.parametrize("store_stream, stream", [("rgb", "rgb"), ("both", "rgb"), ("flow", "flow")])
def test_runs_from_before_streams_read_the_feature_column(tmp_path, store_stream, stream):
    _saved_run(tmp_path, TrainConfig(head="avgpool"), store_stream)
    ckpt = load_checkpoint(tmp_path / "run")
    for key in ("stream", "fusion"):
        del ckpt["train"][key]
    torch.save(ckpt, tmp_path / "run" / "checkpoint.pt")
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    meta.pop("checkpoint_sha256")  # such runs had no checksum either
    (tmp_path / "run" / "config.json").write_text(json.dumps(meta))
    assert load_run(tmp_path / "run").config.stream == stream  # a flow store holds flow in `feature`


@pytest.mark.slow
def test_training_on_a_two_stream_store_fuses_late_by_default(two_stream, tmp_path):
    store, labels, made = two_stream
    run, _ = train_on_store(store, labels, TrainConfig(head="lstm", head_options={"hidden": 8}, epochs=2),
                            tmp_path / "run", progress=False)
    assert (run.config.stream, run.config.fusion) == ("both", "late")  # the store's own streams
    assert isinstance(load_run(tmp_path / "run").model, streams.StreamFusion)


@pytest.mark.slow
def test_evaluate_and_predict_follow_the_runs_stream(two_stream, tmp_path):
    store, labels, made = two_stream
    accuracy = {}
    for stream in ("rgb", "flow"):
        run = tmp_path / stream
        result = runner.invoke(app, ["train-head", str(store), "--labels", str(labels), "--head", "avgpool", "--out",
                                     str(run), "--stream", stream, "--epochs", "10", "--lr", "0.01", "--ema-decay", "0",
                                     "--option", "hidden=8", "--no-progress"])
        assert result.exit_code == 0, result.output
        assert f"on {stream} features" in result.output
        assert json.loads((run / "config.json").read_text())["train"]["stream"] == stream
        result = runner.invoke(app, ["evaluate", str(run), str(store), "--labels", str(labels), "--split", "all"])
        assert result.exit_code == 0, result.output
        accuracy[stream] = json.loads((run / "evaluation.json").read_text())["accuracy"]
        out = tmp_path / f"{stream}.csv"
        assert runner.invoke(app, ["predict", str(run), str(store), "--out", str(out)]).exit_code == 0
        predicted = pd.read_csv(out).set_index("video_id").label_1
        if stream == "flow":
            assert all(predicted[v] == label for v, (label, _, _) in made.items())
    assert accuracy["flow"] == 1.0 and accuracy["rgb"] < 0.9


@pytest.mark.slow
def test_a_late_fusion_run_through_the_cli(two_stream, tmp_path):
    store, labels, _ = two_stream
    result = runner.invoke(app, ["train-head", str(store), "--labels", str(labels), "--head", "avgpool", "--out",
                                 str(tmp_path / "run"), *FAST])
    assert result.exit_code == 0, result.output
    assert "rgb head:" in result.output and "flow head:" in result.output
    assert "trained 3 epochs (rgb head), 3 epochs (flow head) on both features, late fusion" in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["train"]["stream"], config["train"]["fusion"], config["in_dim"]) == ("both", "late", 2 * STORE_DIM)
    assert (tmp_path / "run" / "curves.png").is_file()


def test_a_missing_stream_is_one_error_line(tmp_path):
    made = write_store(tmp_path / "rgb", "rgb")
    labels = write_labels(tmp_path / "labels.csv", made)
    result = runner.invoke(app, ["train-head", str(tmp_path / "rgb"), "--labels", str(labels), "--stream", "flow",
                                 "--out", str(tmp_path / "run"), *FAST])
    one_error_line(result, "has no flow features", "--stream rgb")
    result = runner.invoke(app, ["train-head", str(tmp_path / "rgb"), "--labels", str(labels), "--fusion", "late",
                                 "--out", str(tmp_path / "run"), *FAST])
    one_error_line(result, "--fusion needs two streams")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_adaptive_prediction_refuses_a_flow_run(two_stream, tmp_path):
    store, labels, _ = two_stream
    run = tmp_path / "run"
    assert runner.invoke(app, ["train-head", str(store), "--labels", str(labels), "--head", "skip-gru", "--stream",
                               "flow", "--out", str(run), *FAST]).exit_code == 0
    (tmp_path / "clip.mp4").write_bytes(b"")  # never opened: the run is refused first
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "clip.mp4"), "--adaptive", "--out", str(tmp_path / "p.csv")])
    one_error_line(result, "--adaptive embeds RGB frames only", "reads the flow stream")


# --- detection -----------------------------------------------------------------------------------------------


@pytest.fixture
def detection_store(tmp_path):
    """Two-stream toy store of 12 videos x 20 steps of 0.5 s: one action per video, visible in the flow column only."""
    rng = np.random.default_rng(3)
    rows = []
    with StoreWriter(tmp_path / "both", toy_config(stream="both")) as writer:
        for k in range(12):
            vid, start = f"u{k:02d}", int(rng.integers(2, 10))
            label = "ab"[k % 2]
            rgb = rng.normal(size=(20, STORE_DIM)).astype(np.float32)
            flow = rng.normal(0, 0.3, (20, STORE_DIM)).astype(np.float32)
            flow[start : start + 6, 0 if label == "a" else 1] += 3
            t, frames = np.arange(20) * 0.5, np.arange(20) * 12
            writer.add_video(toy_record(vid), writer.table(vid, t, t + 0.5, frames, frames + 12, rgb, flow))
            rows.append((vid, start * 0.5, (start + 6) * 0.5, label))
    anno = tmp_path / "annotations.csv"
    pd.DataFrame(rows, columns=["video_id", "start", "end", "label"]).to_csv(anno, index=False)
    return tmp_path / "both", anno


@pytest.mark.slow
def test_detection_trains_on_the_flow_stream_and_evaluate_follows(detection_store, tmp_path):
    store, anno = detection_store
    run = tmp_path / "run"
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(anno), "--head", "linear", "--stream",
                                 "flow", "--epochs", "30", "--lr", "0.05", "--background-weight", "1", "--out", str(run),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["train"]["stream"] == "flow"
    result = runner.invoke(app, ["evaluate", str(run), str(store), "--annotations", str(anno), "--subset", "all",
                                 "--tiou", "0.5"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "evaluation.json").read_text())["average_map"] > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("head, options", [("montes-lstm", ["hidden=8"]), ("actionformer", ["hidden=16", "levels=2", "stem=1"])])
def test_detection_heads_fuse_late(detection_store, tmp_path, head, options):
    store, anno = detection_store
    run = tmp_path / "run"
    args = [a for o in options for a in ("--option", o)]
    result = runner.invoke(app, ["train-head", str(store), "--annotations", str(anno), "--head", head, "--epochs", "2",
                                 "--out", str(run), *args, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "rgb head:" in result.output and "flow head:" in result.output
    results = tmp_path / "results.json"
    assert runner.invoke(app, ["predict", str(run), str(store), "--out", str(results)]).exit_code == 0
    assert len(json.loads(results.read_text())["results"]) == 12
