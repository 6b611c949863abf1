"""Two-stream extraction: optical-flow stacks into a cross-modality-initialised twin of the RGB network."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli import app
from featx.flow import FlowFields, FlowStacker, flow_stacks
from featx.store import load_sequences, read_config
from tests.conftest import TINY_ARGS

runner = CliRunner()


@pytest.mark.parametrize("chunks", [(9,), (2, 3, 4), (1,) * 9])
def test_stacks_built_chunk_by_chunk_equal_those_of_the_whole_video(chunks):
    rng = np.random.default_rng(0)
    big = np.kron(rng.uniform(0, 255, (12, 12, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    frames = np.stack([big[k : k + 48, 2 * k : 2 * k + 48] for k in range(9)])
    fields, stacker, out, at = FlowFields(), FlowStacker(3), [], 0
    for size in chunks:
        got = stacker.push(fields.push(frames[at : at + size]))
        at += size
        out += [] if got is None else [got]
    out.append(stacker.finish())
    np.testing.assert_array_equal(np.concatenate(out), flow_stacks(frames, 3))


@pytest.mark.slow
def test_both_streams_share_one_time_grid_and_flow_alone_matches(tiny_videos, tmp_path):
    for stream in ("both", "flow"):
        result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(tmp_path / stream), *TINY_ARGS,
                                     "--stream", stream, "--flow-len", "2", "--no-progress"])
        assert result.exit_code == 0, result.output
    both = pd.read_parquet(tmp_path / "both")
    assert {"feature", "flow_feature"} <= set(both.columns)
    assert read_config(tmp_path / "both").stream == "both"
    rgb_only = tmp_path / "rgb"
    # torch, as --stream both runs both streams (auto takes OpenVINO for RGB alone: equal to 1e-6, not bit for bit)
    assert runner.invoke(app, ["extract", str(tiny_videos), "--out", str(rgb_only), *TINY_ARGS, "--runtime", "torch",
                               "--no-progress"]).exit_code == 0
    rgb, flow_in_both, flow_alone = load_sequences(rgb_only), load_sequences(tmp_path / "both", column="flow_feature"), load_sequences(tmp_path / "flow")
    for vid in rgb:
        np.testing.assert_array_equal(load_sequences(tmp_path / "both")[vid], rgb[vid])  # the RGB column is unchanged
        np.testing.assert_array_equal(flow_in_both[vid], flow_alone[vid])
        assert flow_in_both[vid].shape == rgb[vid].shape and not np.allclose(flow_in_both[vid], rgb[vid])


@pytest.mark.slow
def test_heads_train_on_a_two_stream_store(tiny_videos, tmp_path):
    store = tmp_path / "both"
    assert runner.invoke(app, ["extract", str(tiny_videos), "--out", str(store), *TINY_ARGS, "--stream", "both",
                               "--no-progress"]).exit_code == 0
    labels = tmp_path / "labels.csv"
    ids = sorted(load_sequences(store))
    labels.write_text("video_id,label,split\n" + "".join(f"{v},{'ab'[k % 2]},{'train' if k < 2 else 'val'}\n" for k, v in enumerate(ids)))
    for stream in ("both", "flow", "rgb"):  # unset: the store's own streams, fused late
        run = tmp_path / f"run-{stream}"
        args = [] if stream == "both" else ["--stream", stream]
        result = runner.invoke(app, ["train-head", str(store), "--labels", str(labels), "--head", "avgpool", "--out",
                                     str(run), "--epochs", "1", *args, "--no-progress"])
        assert result.exit_code == 0, result.output
        train = json.loads((run / "config.json").read_text())["train"]
        assert (train["stream"], train["fusion"]) == (stream, "late" if stream == "both" else None)
        result = runner.invoke(app, ["predict", str(run), str(store), "--out", str(tmp_path / f"{stream}.csv")])
        assert result.exit_code == 0, result.output
    scores = {s: pd.read_csv(tmp_path / f"{s}.csv").score_1.to_numpy() for s in ("both", "flow", "rgb")}
    assert not np.allclose(scores["flow"], scores["rgb"])  # each run read its own column


@pytest.mark.slow
def test_flow_in_the_workers_writes_the_store_of_the_main_process(tiny_videos, tmp_path):
    videos = sorted(tiny_videos.glob("*.mp4"))[:2]
    args = [a for a in TINY_ARGS if a not in ("--workers", "0")]
    for workers in ("0", "2"):
        result = runner.invoke(app, ["extract", *map(str, videos), "--out", str(tmp_path / workers), *args,
                                     "--workers", workers, "--stream", "both", "--flow-len", "2", "--no-progress"])
        assert result.exit_code == 0, result.output
    main, pool = (pd.read_parquet(tmp_path / w).sort_values(["video_id", "step"]) for w in ("0", "2"))
    assert len(main) == 24 and (main[["video_id", "step", "frame_start", "frame_end"]].to_numpy()
                                == pool[["video_id", "step", "frame_start", "frame_end"]].to_numpy()).all()
    for column in ("feature", "flow_feature"):
        np.testing.assert_allclose(np.stack(main[column]), np.stack(pool[column]), rtol=1e-3, atol=1e-3)
