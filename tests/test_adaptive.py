import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from featx.errors import FeatxError
from featx.inputs import collect_inputs
from seqmodels.adaptive import adaptive_predict
from seqmodels.classify import predict_store
from seqmodels.classifier import TrainConfig, load_run, save_run

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


def test_cli_adaptive_on_no_readable_video_or_on_a_store_is_one_error_line(labelled_store, skip_run, tmp_path):
    from tests.helpers import one_error_line

    store, _ = labelled_store
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    args = ["predict", str(skip_run), "--adaptive", "--out", str(tmp_path / "p.csv"), "--device", "cpu"]
    one_error_line(runner.invoke(app, [*args[:2], str(fake), *args[2:]]), "no video could be read", "fake")
    one_error_line(runner.invoke(app, [*args[:2], str(store), *args[2:]]), "--adaptive reads the videos themselves")
    assert not (tmp_path / "p.csv").exists()


def _head_with_increment(delta: float):
    """A skip-gru head whose Δũ is `delta` whatever the state (gate weights 0, bias logit(delta))."""
    from seqmodels.heads.skip_rnn import SkipRNNHead

    torch.manual_seed(0)
    head = SkipRNNHead(4, 3, cell="gru", hidden=8).eval()
    with torch.no_grad():
        head.gate.weight.zero_()
        head.gate.bias.fill_(float(np.log(delta / (1 - delta))))
    return head


@pytest.mark.parametrize(("delta", "skips"), [(0.3, 1), (0.15, 3), (0.05, 9), (0.7, 0)])
def test_skips_after_an_update_are_known_from_the_increment(delta, skips):
    from seqmodels.adaptive import _skips

    head = _head_with_increment(delta)
    with torch.no_grad():
        state, u = head.step(head.project(head.norm(torch.ones(1, 4))), head.initial_state(1, torch.zeros(1)))
        assert u.item() == 1  # ũ_1 = 1
        states, updates_next = _skips(head, state)
    # ũ after k skips is (k + 1) Δũ; it rounds to 1 first at k = ceil(0.5 / Δũ) - 1 (none of these hit 0.5)
    assert updates_next and len(states) - 1 == skips
    assert all(torch.equal(s["h"], state["h"]) for s in states)  # skipped steps copy the state


class _FakeFrames:
    """FramesOnDemand over frames held in memory, counting what was converted."""

    def __init__(self, frames):
        self.frames, self.next, self.taken = frames, 0, []

    def skip(self, n):
        passed = min(n, len(self.frames) - self.next)
        self.next += passed
        return passed

    def take(self):
        if self.next == len(self.frames):
            return None
        self.taken.append(self.next)
        self.next += 1
        return self.frames[self.next - 1]


def test_advancing_by_skip_counts_makes_the_updates_of_the_whole_sequence():
    from seqmodels.adaptive import _advance, _Stream

    head = _head_with_increment(0.2)
    x = torch.randn(1, 23, 4)  # (B, T, D): the features of every frame
    with torch.no_grad():
        _, want, final = head.unroll(x, torch.ones(1, 23, dtype=torch.bool))
        stream = _Stream(None, _FakeFrames(list(x[0])), head.initial_state(1, torch.zeros(1)))
        while (feature := _advance(head, stream)) is not None:
            stream.state, u = head.step(head.project(head.norm(feature[None])), stream.state)
            stream.updates.append(int(u.item()))
    assert stream.updates == want[0].int().tolist() and 0 < sum(stream.updates) < 23
    assert stream.frames.taken == [t for t, u in enumerate(stream.updates) if u]  # only updated steps were read
    torch.testing.assert_close(stream.state["h"], final["h"])  # unroll projects all steps in one product


@pytest.mark.slow
def test_adaptive_refuses_a_run_on_a_store_resized_on_the_device(labelled_store, skip_run, tmp_path):
    run = load_run(skip_run)
    run.store_config = {**run.store_config, "resize_on": "device"}  # frames resized by torch, not swscale
    save_run(run, tmp_path / "device")
    with pytest.raises(FeatxError, match="--resize-on device"):
        adaptive_predict(tmp_path / "device", collect_inputs([labelled_store[0].parent / "v"]), device="cpu")
