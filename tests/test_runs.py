"""The one run layer: per-head defaults, a run rebuilt from its folder, and one-line errors for damaged runs."""

import json
import pickle

import pytest
import torch

from featx.errors import FeatxError
from seqmodels.detection.run import build_head as build_detection_head
from seqmodels.runs import Run, TrainConfig, load_checkpoint, load_run, read_meta, run_task, save_run


def test_unset_options_take_the_heads_defaults_and_given_ones_win():
    af = TrainConfig.with_defaults("detection", None, lr=None, epochs=7)
    assert af.head == "actionformer" and af.epochs == 7 and af.lr == 2e-4 and af.weight_decay == 0.05
    lstm = TrainConfig.with_defaults("classification", None)
    assert lstm.head == "lstm" and lstm.lr == 1e-3
    with pytest.raises(FeatxError, match="--task"):
        TrainConfig.with_defaults("segmentation")


def test_unknown_config_keys_are_refused():
    with pytest.raises(FeatxError, match="unknown training config keys"):
        TrainConfig.from_dict({"head": "lstm", "clip": 1.0})


def _run(tmp_path):
    config = TrainConfig.with_defaults("detection", "linear")
    model = build_detection_head(config, 6, ["a", "b"])
    run = Run(model, config, ["a", "b"], 6, None, [{"epoch": 1, "train_loss": 1.0}])
    save_run(run, tmp_path / "run")
    return run, tmp_path / "run"


def forget_checksum(folder):
    meta = json.loads((folder / "config.json").read_text())
    meta.pop("checkpoint_sha256")
    (folder / "config.json").write_text(json.dumps(meta))


def test_a_flipped_byte_in_the_checkpoint_is_an_error_not_other_predictions(tmp_path):
    _, folder = _run(tmp_path)
    data = bytearray((folder / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0x40
    (folder / "checkpoint.pt").write_bytes(bytes(data))
    with pytest.raises(FeatxError, match="does not match the checksum"):
        load_run(folder, build_detection_head)


def test_a_config_from_a_newer_featx_is_refused(tmp_path):
    _, folder = _run(tmp_path)
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(FeatxError, match="newer featx"):
        read_meta(folder)


def test_a_run_rebuilds_from_its_folder(tmp_path):
    run, folder = _run(tmp_path)
    again = load_run(folder, build_detection_head)
    assert again.config == run.config and again.classes == ["a", "b"] and run_task(folder) == "detection"
    for a, b in zip(run.model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(a, b)
    assert {p.name for p in folder.iterdir()} == {"config.json", "checkpoint.pt"}  # no temporary files left


def test_damaged_runs_give_one_line_errors(tmp_path):
    _, folder = _run(tmp_path)
    ckpt = folder / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatxError, match="does not match the checksum in config.json"):
        load_checkpoint(folder)
    forget_checksum(folder)  # as a run written before checksums: reading itself must fail cleanly
    with pytest.raises(FeatxError, match="cannot be read safely"):
        load_checkpoint(folder)
    ckpt.write_bytes(pickle.dumps({"state_dict": object()}))
    with pytest.raises(FeatxError, match="cannot be read safely"):
        load_checkpoint(folder)
    ckpt.unlink()
    with pytest.raises(FeatxError, match="no checkpoint.pt"):
        load_checkpoint(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(FeatxError, match="not valid JSON"):
        read_meta(folder)


@pytest.mark.parametrize("version, word", [(1, "older"), (99, "newer")])
def test_runs_of_another_format_version_are_refused(tmp_path, version, word):
    _, folder = _run(tmp_path)
    ckpt = torch.load(folder / "checkpoint.pt", weights_only=True)
    torch.save({**ckpt, "format_version": version}, folder / "checkpoint.pt")
    forget_checksum(folder)
    with pytest.raises(FeatxError, match=word):
        load_checkpoint(folder)
    assert json.loads((folder / "config.json").read_text())["format_version"] == 2


def test_a_detection_head_asked_for_classification_says_so():
    with pytest.raises(FeatxError, match="montes-lstm is a detection head: train it with --annotations"):
        TrainConfig.with_defaults("classification", "montes-lstm")


def test_training_again_into_a_run_folder_replaces_every_file_of_the_earlier_run(tmp_path):
    from seqmodels.runs import check_run_folder

    _, folder = _run(tmp_path)
    (folder / "skips.png").write_bytes(b"from the earlier run")
    with pytest.raises(FeatxError, match="holds a run already.*--overwrite"):
        check_run_folder(folder)  # an earlier run: only when asked
    check_run_folder(folder, overwrite=True)
    _run(tmp_path)
    assert not (folder / "skips.png").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FeatxError, match="non-empty folder but not a featx run"):
        check_run_folder(other)
