"""featx import: a featx export comes back exactly; a foreign folder lands on the grid its flags describe and
trains a detector; bad arrays are one error line with the store untouched."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from featx.errors import FeatxError
from featx.export import export_store
from featx.importer import Grid, import_folder, read_fps_file
from featx.timegrid import import_grid_times
from featx.store import StoreWriter, latest_manifest, load_features, load_sequences, read_config
from tests.helpers import add_toy_video, one_error_line, toy_config, toy_record

runner = CliRunner()
TIMES = ["video_id", "step", "t_start", "t_end", "frame_start", "frame_end"]


def imported(folder, out, *args):
    return runner.invoke(app, ["import", str(folder), "--out", str(out), *args, "--no-progress"])


def rows(store) -> pd.DataFrame:
    return load_features(store, columns=TIMES).sort_values(["video_id", "step"], ignore_index=True)


# -- the grid ------------------------------------------------------------------------------------------------------
def test_import_grid_times_hand_computed():
    t_start, t_end, f_start, f_end = import_grid_times(3, 30.0, 4, 16)
    np.testing.assert_array_equal(f_start, [0, 4, 8])
    np.testing.assert_array_equal(f_end, [16, 20, 24])
    np.testing.assert_allclose(t_start, [0, 4 / 30, 8 / 30])
    np.testing.assert_allclose(t_end, [16 / 30, 20 / 30, 24 / 30])


# -- featx's own exports: exact round trips ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["npy", "csv", "hdf5"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_export_then_import_gives_back_the_store(tmp_path, fmt, dtype):
    if fmt == "hdf5":
        pytest.importorskip("h5py")
    root = tmp_path / "store"
    config = toy_config(dtype=dtype, clip_len=4, clip_stride=2)  # a clip store: t_center too
    with StoreWriter(root, config) as writer:
        for k, vid in enumerate(["a", "sub/b"]):
            add_toy_video(writer, vid, 3 + k, seed=k)
    export_store(root, tmp_path / "out", fmt=fmt, progress=False)
    result = imported(tmp_path / "out", tmp_path / "back")
    assert result.exit_code == 0, result.output
    back = tmp_path / "back"
    original, again = load_sequences(root), load_sequences(back)
    assert list(original) == list(again)
    for vid in original:
        assert again[vid].dtype == original[vid].dtype and np.array_equal(again[vid], original[vid])
    columns = TIMES + ["t_center"]
    pd.testing.assert_frame_equal(load_features(back, columns=columns).sort_values(["video_id", "step"], ignore_index=True),
                                  load_features(root, columns=columns).sort_values(["video_id", "step"], ignore_index=True))
    assert read_config(root).differences(read_config(back)) == []  # runs trained on one evaluate on the other
    assert read_config(back).import_source == str((tmp_path / "out").resolve())
    facts = ["video_id", "path", "fps", "frames", "duration", "width", "height", "rows"]
    pd.testing.assert_frame_equal(latest_manifest(back)[facts], latest_manifest(root)[facts])


def test_a_featx_export_refuses_grid_flags(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, toy_config()) as writer:
        add_toy_video(writer, "a", 3)
    export_store(root, tmp_path / "out", progress=False)
    assert "is a featx export" in one_error_line(imported(tmp_path / "out", tmp_path / "back", "--source-fps", "30"))


# -- foreign folders ---------------------------------------------------------------------------------------------------
def write_formats(folder: Path, dim=5) -> dict[str, np.ndarray]:
    """One video per reader: .npy, .npz, .pt, .h5 (one dataset), .csv with a header; ids with a sub-folder."""
    rng = np.random.default_rng(0)
    arrays = {vid: rng.normal(size=(n, dim)).astype(np.float32) for vid, n in
              [("n1", 3), ("z/n2", 4), ("p3", 5), ("h4", 2), ("c5", 6)]}
    (folder / "z").mkdir(parents=True)
    np.save(folder / "n1.npy", arrays["n1"])
    np.savez(folder / "z" / "n2.npz", feats=arrays["z/n2"])
    torch.save(torch.from_numpy(arrays["p3"]), folder / "p3.pt")
    np.savetxt(folder / "c5.csv", arrays["c5"], fmt="%.9g", delimiter=",", header="a,b,c,d,e", comments="")
    h5py = pytest.importorskip("h5py")
    with h5py.File(folder / "h4.h5", "w") as file:
        file["features"] = arrays["h4"]
    return arrays


def test_every_format_lands_on_the_grid_the_flags_describe(tmp_path):
    arrays = write_formats(tmp_path / "in")
    result = imported(tmp_path / "in", tmp_path / "s", "--source-fps", "30", "--clip-stride", "4", "--clip-len", "16", "--backbone", "i3d")
    assert result.exit_code == 0, result.output
    assert "imported 5 videos, 20 rows" in result.stdout
    seqs = load_sequences(tmp_path / "s")
    assert sorted(seqs) == sorted(arrays)
    for vid, array in arrays.items():
        assert seqs[vid].dtype == np.float32 and np.array_equal(seqs[vid], array), vid
    table = rows(tmp_path / "s")
    p3 = table[table.video_id == "p3"]
    np.testing.assert_array_equal(p3.frame_start, [0, 4, 8, 12, 16])
    np.testing.assert_allclose(p3.t_end, (np.arange(5) * 4 + 16) / 30)
    config = read_config(tmp_path / "s")
    assert (config.backbone, config.fps, config.clip_len, config.clip_stride, config.feature_dim) == ("i3d", 30, 16, 4, 5)
    assert config.imported == {"fps": 30.0, "stride": 4, "window": 16, "layout": "TC", "key": None}
    manifest = latest_manifest(tmp_path / "s").set_index("video_id")
    assert manifest.loc["p3", "frames"] == 4 * 4 + 16 and manifest.loc["p3", "duration"] == pytest.approx(32 / 30)


def test_transposed_arrays_keys_and_per_video_fps(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    np.savez(folder / "a.npz", rgb=np.ones((8, 3)), flow=np.zeros((8, 3)))  # (D, T) = (8, 3): 3 steps of 8
    np.savez(folder / "b.npz", rgb=np.ones((8, 2)), flow=np.zeros((8, 2)))
    assert "say which with --key" in one_error_line(imported(folder, tmp_path / "s", "--source-fps", "10"))
    fps = tmp_path / "fps.csv"
    fps.write_text("video_id,fps\na,10\nb,25\n")
    result = imported(folder, tmp_path / "s", "--source-fps-file", str(fps), "--layout", "CT", "--key", "flow", "--clip-stride", "2")
    assert result.exit_code == 0, result.output
    seqs = load_sequences(tmp_path / "s")
    assert seqs["a"].shape == (3, 8) and (seqs["a"] == 0).all()
    table = rows(tmp_path / "s")
    np.testing.assert_allclose(table[table.video_id == "b"].t_start, [0, 2 / 25])
    assert read_config(tmp_path / "s").fps is None  # per video, as an extraction without --fps


def test_fps_files_in_each_form(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"v1": 30, "v2": 29.97}))
    (tmp_path / "b.json").write_text(json.dumps({"database": {"v1": {"fps": 30.0, "duration": 3}}}))
    assert read_fps_file(tmp_path / "a.json") == {"v1": 30.0, "v2": 29.97}
    assert read_fps_file(tmp_path / "b.json") == {"v1": 30.0}
    (tmp_path / "c.csv").write_text("video_id,fps\nv1,0\n")
    with pytest.raises(FeatxError, match="not a positive number"):
        read_fps_file(tmp_path / "c.csv")


def test_appending_resumes_and_other_settings_are_refused(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", np.ones((3, 4), np.float32))
    assert imported(folder, tmp_path / "s", "--source-fps", "30", "--clip-stride", "4", "--clip-len", "16").exit_code == 0
    np.save(folder / "b.npy", np.ones((2, 4), np.float32))
    result = imported(folder, tmp_path / "s", "--source-fps", "30", "--clip-stride", "4", "--clip-len", "16")
    assert result.exit_code == 0 and "imported 1 videos" in result.stdout and "1 already there" in result.stdout
    line = one_error_line(imported(folder, tmp_path / "s", "--source-fps", "30", "--clip-stride", "8", "--clip-len", "16"))
    assert "clip_stride: 4 != 8" in line and "imported" in line
    assert sorted(load_sequences(tmp_path / "s")) == ["a", "b"]


# -- bad arrays: one line, nothing written ------------------------------------------------------------------------
def bad_folder(tmp_path, files: dict) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, array in files.items():
        if isinstance(array, bytes):
            (folder / name).write_bytes(array)
        else:
            np.save(folder / name, array)
    return folder


@pytest.mark.parametrize("files,needle", [
    ({"a.npy": np.ones((2, 3, 4))}, "expected a 2-d (T, D) array of features, got shape (2, 3, 4)"),
    ({"a.npy": np.ones((3, 4)), "b.npy": np.ones((4, 3))}, "features of size 3, but the others have 4; arrays stored (D, T)?"),
    ({"a.npy": np.array([[1.0, np.nan], [np.inf, 0.0]])}, "2 values are NaN or infinite (the first in row 0)"),
    ({"a.npy": np.full((2, 2), 1e6)}, "NaN or infinite as float16"),
    ({"a.npy": b"not an array"}, "a.npy: cannot be read as .npy"),
    ({"a.npy": np.zeros((0, 4))}, "an empty array"),
    ({"a.npy": np.ones((2, 2)), "a.pt": b"x"}, "both give video 'a'"),
    ({"notes.txt": b"hello"}, "holds no .npy, .npz, .pt, .h5, .hdf5, .csv files"),
])
def test_a_bad_array_is_one_line_and_nothing_is_written(tmp_path, files, needle):
    folder = bad_folder(tmp_path, files)
    extra = ["--dtype", "float16"] if "float16" in needle else []
    line = one_error_line(imported(folder, tmp_path / "s", "--source-fps", "30", *extra))
    assert needle in line, line
    assert not (tmp_path / "s").exists()


def test_a_bad_array_after_good_ones_leaves_an_existing_store_as_it_was(tmp_path):
    folder = bad_folder(tmp_path, {"a.npy": np.ones((3, 4), np.float32)})
    assert imported(folder, tmp_path / "s", "--source-fps", "30").exit_code == 0
    np.save(folder / "b.npy", np.ones((3, 4), np.float32))
    np.save(folder / "c.npy", np.full((3, 4), np.nan, np.float32))
    assert "c.npy: 12 values are NaN" in one_error_line(imported(folder, tmp_path / "s", "--source-fps", "30"))
    assert sorted(load_sequences(tmp_path / "s")) == ["a"]


def test_a_foreign_folder_without_its_grid_is_one_line(tmp_path):
    folder = bad_folder(tmp_path, {"a.npy": np.ones((3, 4))})
    assert "give its grid, --source-fps F" in one_error_line(imported(folder, tmp_path / "s"))
    assert "no fps for video 'a'" in one_error_line(imported(folder, tmp_path / "s", "--source-fps-file", str(_fps_csv(tmp_path))))


def _fps_csv(tmp_path) -> Path:
    path = tmp_path / "fps.csv"
    path.write_text("video_id,fps\nother,30\n")
    return path


# -- the THUMOS14 I3D layout: import, train, evaluate, predict (docs/interop.md) ---------------------------------------
def thumos_like(folder: Path, videos: int = 6, steps: int = 48, dim: int = 2048, seed: int = 0) -> Path:
    """ActionFormer's THUMOS14 layout at toy size: <video_id>.npy of (T, 2048) float32, features of 16-frame clips
    every 4 frames at 30 fps (row i's centre at (4i + 8) / 30 s), and ActivityNet-style annotations."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    prototypes = rng.normal(size=(2, dim)).astype(np.float32)
    database = {}
    for k in range(videos):
        vid = f"video_{'validation' if k < videos * 2 // 3 else 'test'}_{k:07d}"
        feats = rng.normal(0, 0.3, (steps, dim)).astype(np.float32)
        start = int(rng.integers(4, steps // 2))
        length = int(rng.integers(8, steps // 3))
        label = k % 2
        feats[start:start + length] += prototypes[label]
        np.save(folder / f"{vid}.npy", feats)
        segment = [(4 * start + 8) / 30, (4 * (start + length - 1) + 8) / 30]
        database[vid] = {"subset": "training" if "validation" in vid else "validation", "duration": (4 * steps + 12) / 30,
                         "fps": 30.0, "annotations": [{"segment": segment, "label": ["Diving", "Shotput"][label]}]}
    (folder.parent / "thumos14.json").write_text(json.dumps({"database": database}))
    return folder


@pytest.mark.slow
def test_thumos_layout_imports_and_trains_a_detector_that_evaluates_and_predicts(tmp_path):
    features = thumos_like(tmp_path / "i3d_features")
    anno = tmp_path / "thumos14.json"
    result = imported(features, tmp_path / "thumos", "--source-fps", "30", "--clip-stride", "4", "--clip-len", "16", "--backbone", "i3d")
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    result = runner.invoke(app, ["train-head", str(tmp_path / "thumos"), "--annotations", str(anno), "--head",
                                 "actionformer", "--epochs", "2", "--max-steps", "64", "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(run), str(tmp_path / "thumos"), "--annotations", str(anno), "--tiou", "thumos"])
    assert result.exit_code == 0, result.output
    assert set(json.loads((run / "evaluation.json").read_text())["map"]) == {"0.3", "0.4", "0.5", "0.6", "0.7"}
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "thumos"), "--out", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "p.json").read_text())["results"]) == 6


@pytest.mark.slow
def test_the_installed_command_imports_a_folder(tmp_path):
    folder = bad_folder(tmp_path, {"a.npy": np.ones((3, 4), np.float32)})
    featx = Path(sys.executable).parent / "featx"
    done = subprocess.run([str(featx), "import", str(folder), "--out", str(tmp_path / "s"), "--source-fps", "25", "--no-progress"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported 1 videos, 3 rows")
    bad = subprocess.run([str(featx), "import", str(tmp_path / "missing"), "--out", str(tmp_path / "t"), "--source-fps", "25"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'} is not a folder"]


def test_grid_refuses_nonsense():
    with pytest.raises(FeatxError, match="--source-fps must be a positive"):
        Grid(0.0, 1, 1)
    with pytest.raises(FeatxError, match="positive numbers of frames"):
        Grid(30.0, 0, 1)
    with pytest.raises(FeatxError, match="is not a folder"):
        import_folder("/nonexistent/x", "/tmp/y", Grid(30.0, 1, 1))


def test_configs_written_before_imports_existed_still_read_and_match():
    from featx.config import ExtractConfig

    old = toy_config().to_dict()
    del old["imported"], old["import_source"]
    assert ExtractConfig.from_dict(old) == toy_config()
    moved = toy_config(import_source="/elsewhere")  # where the arrays came from is not identity
    assert toy_config().differences(moved) == [] and toy_config().differences(toy_config(imported={"fps": 1})) != []


def test_a_stride_too_large_for_frame_numbers_is_one_line_and_writes_nothing(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "a.npy", np.ones((10, 8), np.float32))
    line = one_error_line(imported(folder, tmp_path / "s", "--source-fps", "4", "--clip-stride", str(2**62)))
    assert "--clip-stride and --clip-len must be at most" in line and not (tmp_path / "s").exists()
