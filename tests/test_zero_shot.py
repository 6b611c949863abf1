"""Image-text backbones (featx.backbones.image_text) and `featx zero-shot`: a tiny random CLIP pair saved by
transformers into a Hugging Face cache laid out as the hub's, extracted through the CLI with no other flag, and
zero-shot scores checked against cosines computed here with transformers' own CLIPModel and tokenizer."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from featx.store import StoreWriter, open_store
from tests.helpers import add_toy_video, one_error_line, tiny_image_text_pair, toy_config

transformers = pytest.importorskip("transformers")

REPO = "tiny/clip-test"
NAME = f"clip:{REPO}"
REV = "89abcdef0123456789abcdef0123456789abcdef"  # a hub commit hash
CLASSES = ["red", "green", "blue square"]


def saved_files(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    return saved_files(tiny_image_text_pair(tmp_path_factory.mktemp("pair") / "saved"))


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty Hugging Face cache under tmp_path, offline (no download is ever tried)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf" / "hub"


def cache_repo(cache, files: dict):
    """The pair's files in huggingface_hub's cache layout: blobs/<sha256>, snapshots/<rev>/<file> -> blob, refs/main."""
    import hashlib

    folder = cache / ("models--" + REPO.replace("/", "--"))
    for sub in ("blobs", f"snapshots/{REV}", "refs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(REV)
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (folder / "snapshots" / REV / name).symlink_to(f"../../blobs/{blob.name}")
    return folder / "snapshots" / REV


@pytest.fixture
def clip_store(hf_home, pair_files, tiny_videos, tmp_path):
    """(store, snapshot folder): the tiny videos extracted with the cached pair by `featx extract` alone."""
    snapshot = cache_repo(hf_home, pair_files)
    result = CliRunner().invoke(app, ["extract", str(tiny_videos), "--backbone", NAME, "-o", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    return tmp_path / "s", snapshot


def test_the_store_records_the_checkpoint_preprocessing_and_its_text_tower(clip_store):
    from featx.digests import file_sha256

    store, snapshot = clip_store
    config = open_store(store).config
    assert (config.feature_dim, config.input_size, config.crop_pct, config.resize_size) == (8, (3, 32, 32), 1.0, None)
    assert config.mean == pytest.approx(transformers.CLIPImageProcessor().image_mean)
    assert config.interpolation == "bicubic"
    sha = file_sha256(snapshot / "model.safetensors")
    assert (config.weights, config.weights_sha256) == (f"hf:{REPO}@{REV}", sha)
    assert config.text_tower["source"] == f"hf:{REPO}@{REV}" and config.text_tower["sha256"] == sha
    assert config.text_tower["model_type"] == "clip"
    rows = open_store(store).rows()
    norms = np.linalg.norm(np.stack(rows["feature"].to_numpy()).astype(np.float32), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=2e-3)  # unit vectors, stored as float16


def by_hand(store, snapshot, family="clip") -> pd.DataFrame:
    """Per-step cosines of the stored features with the text embeddings of transformers' own CLIPModel (or
    SiglipModel, its prompts padded to max_length as SigLIP was trained)."""
    model = getattr(transformers, "CLIPModel" if family == "clip" else "SiglipModel").from_pretrained(str(snapshot)).eval()
    padding = dict(padding=True) if family == "clip" else dict(padding="max_length", max_length=16)
    tokens = transformers.AutoTokenizer.from_pretrained(str(snapshot))(CLASSES, return_tensors="pt", **padding)
    with torch.no_grad():
        text = model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    text = getattr(text, "pooler_output", text).numpy()
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    rows = open_store(store).rows().sort_values(["video_id", "step"])
    feats = np.stack(rows["feature"].to_numpy()).astype(np.float64)
    cos = feats / np.linalg.norm(feats, axis=1, keepdims=True) @ text.T
    return pd.DataFrame(cos, columns=CLASSES).assign(video_id=rows["video_id"].to_numpy(), step=rows["step"].to_numpy())


def test_zero_shot_scores_are_the_cosines_and_accuracy_is_top_1(clip_store, tmp_path):
    store, snapshot = clip_store
    ids = open_store(store).ok_ids()
    labels = pd.DataFrame({"video_id": ids, "label": [CLASSES[i % 3] for i in range(len(ids))]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(app, ["zero-shot", str(store), "--classes", *CLASSES, "-o", str(out),
                                      "--labels", str(tmp_path / "labels.csv")])
    assert result.exit_code == 0, result.output
    want = by_hand(store, snapshot)
    got = pd.read_csv(out)
    assert list(got.columns) == ["video_id", "step", "t_start", "t_end", "class", "score"]
    steps = got[got.step.notna()].pivot(index=["video_id", "step"], columns="class", values="score")
    np.testing.assert_allclose(steps.loc[list(zip(want.video_id, want.step)), CLASSES].to_numpy(),
                               want[CLASSES].to_numpy(), rtol=1e-4, atol=1e-5)
    videos = got[got.step.isna()].pivot(index="video_id", columns="class", values="score")
    mean = want.groupby("video_id")[CLASSES].mean()
    np.testing.assert_allclose(videos.loc[mean.index, CLASSES].to_numpy(), mean.to_numpy(), rtol=1e-4, atol=1e-5)
    predicted = mean.idxmax(axis=1)
    right = int((predicted.loc[labels.video_id].to_numpy() == labels.label.to_numpy()).sum())
    assert f"top-1 accuracy {right / len(ids):.4f} ({right}/{len(ids)} labelled videos)" in result.output


def test_a_siglip_pair_resizes_without_a_crop_and_pads_prompts_to_max_length(hf_home, tiny_videos, tmp_path):
    snapshot = cache_repo(hf_home, saved_files(tiny_image_text_pair(tmp_path / "saved", "siglip")))
    runner = CliRunner()
    result = runner.invoke(app, ["extract", str(tiny_videos), "--backbone", NAME, "-o", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    config = open_store(tmp_path / "s").config
    assert (config.resize_size, config.crop_pct, config.mean, config.text_tower["model_type"]) == ((32, 32), 1.0, (0.5,) * 3, "siglip")
    result = runner.invoke(app, ["zero-shot", str(tmp_path / "s"), "--classes", *CLASSES, "-o", str(tmp_path / "z.parquet")])
    assert result.exit_code == 0, result.output
    got = pd.read_parquet(tmp_path / "z.parquet").dropna(subset=["step"])
    want = by_hand(tmp_path / "s", snapshot, "siglip").melt(["video_id", "step"], var_name="class", value_name="score")
    merged = got.merge(want, on=["video_id", "step", "class"])
    assert len(merged) == len(got) == len(want)
    np.testing.assert_allclose(merged.score_x, merged.score_y, rtol=1e-4, atol=1e-5)


def test_labels_outside_the_classes_are_one_error_line(clip_store, tmp_path):
    store, _ = clip_store
    ids = open_store(store).ok_ids()
    pd.DataFrame({"video_id": ids, "label": "purple"}).to_csv(tmp_path / "labels.csv", index=False)
    result = CliRunner().invoke(app, ["zero-shot", str(store), "--classes", *CLASSES, "-o", str(tmp_path / "z.csv"),
                                      "--labels", str(tmp_path / "labels.csv")])
    one_error_line(result, "'purple' is not among --classes")


def test_offline_with_no_cache_is_one_fast_error_line(hf_home, tiny_videos, tmp_path):
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["extract", str(tiny_videos), "--backbone", NAME, "-o", str(tmp_path / "s")])
    seconds = time.perf_counter() - start
    where = str(hf_home / f"models--{REPO.replace('/', '--')}" / "snapshots")
    one_error_line(result, where, "HF_HUB_OFFLINE", f"featx weights pull {NAME}")
    assert seconds < 5, seconds  # the issue asks for 2 s; 5 leaves room for a loaded test machine


def test_zero_shot_without_the_text_tower_in_the_cache_is_one_error_line(clip_store, hf_home, tmp_path):
    import shutil

    store, _ = clip_store
    shutil.rmtree(hf_home)
    result = CliRunner().invoke(app, ["zero-shot", str(store), "--classes", "red", "green", "-o", str(tmp_path / "z.csv")])
    one_error_line(result, "HF_HUB_OFFLINE", str(hf_home))


def test_a_store_without_a_text_tower_is_refused_in_one_line(tmp_path):
    with StoreWriter(tmp_path / "s", toy_config()) as writer:
        add_toy_video(writer, "a", 3)
    result = CliRunner().invoke(app, ["zero-shot", str(tmp_path / "s"), "--classes", "a", "b", "-o", str(tmp_path / "z.csv")])
    one_error_line(result, "has no text tower", "clip:<org>/<name>")
    assert not (tmp_path / "z.csv").exists()


def test_weights_list_reads_a_cached_pair(hf_home, pair_files):
    cache_repo(hf_home, pair_files)
    listed = CliRunner().invoke(app, ["weights", "list", NAME])
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if line.startswith(NAME))
    assert "image-text (clip)" in row and " 8 " in row and "32x32" in row and " cached " in row, row


def test_the_store_config_round_trips_and_old_json_is_unchanged():
    from featx.config import ExtractConfig

    plain = toy_config()
    assert "text_tower" not in json.loads(plain.to_json())
    tower = {"source": f"hf:{REPO}@{REV}", "sha256": "ab" * 32, "model_type": "clip", "feature": "x"}
    with_tower = toy_config(text_tower=tower)
    assert ExtractConfig.from_json(with_tower.to_json()) == with_tower
    assert not plain.differences(with_tower)  # like `weights`: its sha256 is weights_sha256


def test_a_tapped_layer_is_not_the_joint_space_so_the_store_names_no_text_tower(hf_home, pair_files, tiny_videos,
                                                                                tmp_path):
    cache_repo(hf_home, pair_files)
    out = tmp_path / "tapped"
    result = CliRunner().invoke(app, ["extract", str(tiny_videos), "-o", str(out), "--backbone", NAME, "--layer",
                                      "pair.vision_model.post_layernorm", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert open_store(out).config.text_tower is None
    one_error_line(CliRunner().invoke(app, ["zero-shot", str(out), "--classes", "a", "b", "-o",
                                            str(tmp_path / "z.csv")]), "has no text tower")


def test_an_out_that_is_a_folder_is_refused_before_any_work(clip_store, tmp_path, monkeypatch):
    from featx.backbones import image_text

    store, _ = clip_store
    (tmp_path / "z.csv").mkdir()
    monkeypatch.setattr(image_text, "embed_texts", lambda *a, **k: pytest.fail("the work started"))
    one_error_line(CliRunner().invoke(app, ["zero-shot", str(store), "--classes", "a", "b", "-o",
                                            str(tmp_path / "z.csv")]), "is a folder")
