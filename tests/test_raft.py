"""--flow raft-small|raft-large: torchvision's RAFT on the extraction device, weights from --weights-flow.

No pretrained RAFT weights exist offline, so these tests use randomly initialised ones written to a file: the
weights load strictly, frames reach RAFT as torchvision's RAFT preset prepares them, the flow planes have the
right shape, dtype and place in time. Recovering a known translation needs trained weights and is not tested."""

import hashlib

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from featx.errors import FeatxError
from featx.flow import FlowFields, Raft, encode_flow, load_raft
from featx.store import read_config
from tests.conftest import TINY_ARGS

runner = CliRunner()


@pytest.fixture(scope="module")
def raft_small_file(tmp_path_factory):
    """A randomly initialised raft_small, saved as a plain state dict the way torchvision's checkpoints are."""
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("raft") / "raft_small_random.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


def _frames(n=4, h=128, w=128, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_weights_load_strictly_from_the_file(raft_small_file, tmp_path):
    raft, source, sha = load_raft("raft-small", str(raft_small_file), torch.device("cpu"))
    saved = torch.load(raft_small_file, weights_only=True)
    loaded = raft.model.state_dict()
    assert set(loaded) == set(saved) and all(torch.equal(loaded[k], saved[k]) for k in saved)
    assert sha == hashlib.sha256(raft_small_file.read_bytes()).hexdigest() and source == str(raft_small_file.resolve())
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in saved.items() if not k.startswith("update_block.")}, partial)
    with pytest.raises(FeatxError, match=r"--weights-flow .*partial.pth does not fit torchvision's raft_small: \d+ missing"):
        load_raft("raft-small", str(partial), torch.device("cpu"))
    with pytest.raises(FeatxError, match="of another shape|missing|unexpected"):  # the small checkpoint is not large's
        load_raft("raft-large", str(raft_small_file), torch.device("cpu"))
    with pytest.raises(FeatxError, match="no such file"):
        load_raft("raft-small", str(tmp_path / "none.pth"), torch.device("cpu"))


def test_frames_reach_raft_as_torchvisions_preset_prepares_them(raft_small_file):
    from torchvision.transforms._presets import OpticalFlow

    raft, _, _ = load_raft("raft-small", str(raft_small_file), torch.device("cpu"))
    raft.updates = 2  # fewer refinements than the default 12, to stay quick: this checks what goes in
    a, b = _frames(1), _frames(1, seed=1)
    got = raft(a, b)  # 128 x 128: no padding (RAFT needs multiples of 8, at least 128 px)
    ta, tb = OpticalFlow()(torch.from_numpy(a).permute(0, 3, 1, 2), torch.from_numpy(b).permute(0, 3, 1, 2))
    with torch.no_grad():
        expected = raft.model(ta, tb, num_flow_updates=2)[-1].permute(0, 2, 3, 1).numpy()
    assert got.shape == (1, 128, 128, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_sizes_off_the_grid_are_padded_and_the_flow_cropped_back(raft_small_file):
    raft, _, _ = load_raft("raft-small", str(raft_small_file), torch.device("cpu"))
    raft.updates = 2
    flow = raft(_frames(2, 36, 140), _frames(2, 36, 140, seed=1))  # padded to 128 x 144
    assert flow.shape == (2, 36, 140, 2) and np.isfinite(flow).all()


def test_fields_by_chunks_batch_the_pairs_of_the_whole_video():
    calls = []

    def pairs(a, b):  # stands in for Raft: one call per chunk, (n, H, W, 3) frames a, b -> (n, H, W, 2) flow
        calls.append(len(a))
        return np.stack([b[..., 0], a[..., 0]], axis=-1).astype(np.float32) / 20 - 6

    frames = _frames(7, 16, 16)
    fields = FlowFields(pairs=pairs)
    got = np.concatenate([fields.push(frames[at : at + size]) for at, size in ((0, 3), (3, 1), (4, 3))])
    assert calls == [2, 1, 3]  # a chunk's pairs in one batch, the pair spanning each chunk boundary included
    expected = [encode_flow(pairs(frames[k - 1 : k], frames[k : k + 1]))[0] for k in range(1, 7)]
    assert (got[0] == 128).all()  # nothing arrives at the first frame
    np.testing.assert_array_equal(got[1:], np.stack(expected))


def test_raft_offline_without_weights_or_weights_without_raft_is_one_line(tiny_videos, tmp_path, raft_small_file,
                                                                         caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no download tried: the empty cache is all there is
    import featx.backbones  # RAFT's missing file is said before any backbone is built (that can take a minute)

    monkeypatch.setattr(featx.backbones, "load_backbone", lambda *a, **k: pytest.fail("the backbone was built first"))
    for args, says in ((["--flow", "raft-small"], "raft_small_C_T_V2-01064c6d.pth and HF_HUB_OFFLINE is set"),
                       (["--weights-flow", str(raft_small_file)], "--weights-flow is for --flow raft-small|raft-large")):
        result = runner.invoke(app, ["extract", str(tiny_videos), "--out", str(tmp_path / "s"), *TINY_ARGS,
                                     "--stream", "both", *args])
        assert result.exit_code == 1 and says in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_store_with_raft_flow_records_its_weights(tiny_videos, tmp_path, raft_small_file):
    video = sorted(tiny_videos.glob("*.mp4"))[0]  # 12 frames at 8 fps: 2 sampled at 1 fps, one pair for RAFT
    store = tmp_path / "s"
    result = runner.invoke(app, ["extract", str(video), "--out", str(store), *TINY_ARGS, "--fps", "1", "--stream",
                                 "both", "--flow-len", "2", "--flow", "raft-small", "--weights-flow",
                                 str(raft_small_file), "--no-progress"])
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(store).sort_values("step")
    assert rows.frame_start.tolist() == [0, 8] and rows.flow_feature.map(len).nunique() == 1
    config = read_config(store)
    assert (config.flow_method, config.flow_weights) == ("raft-small", str(raft_small_file.resolve()))
    assert config.flow_weights_sha256 == hashlib.sha256(raft_small_file.read_bytes()).hexdigest()
    farneback = tmp_path / "f"
    assert runner.invoke(app, ["extract", str(video), "--out", str(farneback), *TINY_ARGS, "--fps", "1",
                               "--stream", "both", "--flow-len", "2", "--no-progress"]).exit_code == 0
    other = pd.read_parquet(farneback).sort_values("step")
    np.testing.assert_array_equal(np.stack(rows.feature), np.stack(other.feature))  # RGB is untouched
    assert not np.allclose(np.stack(rows.flow_feature), np.stack(other.flow_feature))  # the flow came from RAFT
    result = runner.invoke(app, ["extract", str(video), "--out", str(store), *TINY_ARGS, "--fps", "1", "--stream",
                                 "both", "--flow-len", "2"])  # appending Farneback flow to a RAFT store
    assert result.exit_code == 1 and "flow_method" in result.output


def test_raft_without_weights_flow_loads_torchvisions_checkpoint_from_the_hub_cache(caches, raft_small_file):
    """What `--flow raft-small` reads with no --weights-flow: torchvision's C_T_V2 file in torch.hub's cache,
    recorded by name and sha256, the same network as the file given by path."""
    from featx.backbones import hub
    from featx.backbones.weights import file_sha256

    cached = hub.torch_checkpoints_dir() / "raft_small_C_T_V2-01064c6d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(raft_small_file.read_bytes())
    raft, source, sha = load_raft("raft-small", None, torch.device("cpu"))
    assert (source, sha) == ("torchvision:raft_small_C_T_V2-01064c6d.pth", file_sha256(raft_small_file))
    by_path, _, _ = load_raft("raft-small", str(raft_small_file), torch.device("cpu"))
    for (name, a), (_, b) in zip(raft.model.state_dict().items(), by_path.model.state_dict().items()):
        assert torch.equal(a, b), name
