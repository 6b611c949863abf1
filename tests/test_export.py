"""featx export: the tools' own readers get the store's rows bit for bit, the sidecar says the time grid in their
keys, and bad input is one error line with nothing written."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli import app
from featx.config import ExtractConfig
from featx.errors import FeatxError
from featx.export import ANNOTATIONS, SIDECAR, TIMES, export_store, tool_annotations
from featx.store import StoreWriter, load_features, load_sequences, read_config
from featx.timegrid import tool_grid
from seqmodels.detection.annotations import Annotations, Segment, VideoAnnotation
from tests.helpers import STORE_DIM, add_toy_video, one_error_line, toy_config, toy_record

runner = CliRunner()
TIME_COLUMNS = ["video_id", "step", "t_start", "t_end", "frame_start", "frame_end"]


def make_store(root, dtype="float16", ids=("a", "sub/b", "c"), **config):
    with StoreWriter(root, toy_config(dtype=dtype, **config)) as writer:
        for k, vid in enumerate(ids):
            add_toy_video(writer, vid, 4 + k, seed=k)
        writer.add_error({**toy_record("broken"), "error": "no video stream"})
    return root


# -- the grid: hand-computed cases -----------------------------------------------------------------------------
def test_thumos_style_clips_give_actionformers_and_opentads_published_keys():
    i = np.arange(5)
    start = i * 4  # 16-frame clips every 4 frames at 30 fps
    grid = tool_grid(start / 30, (start + 16) / 30, start, start + 16, 30.0)
    assert (grid["stride_frames"], grid["window_frames"], grid["offset_frames"]) == (4, 16, 8)
    assert grid["actionformer"] == {"fps": 30.0, "feat_stride": 4, "num_frames": 16}
    assert grid["opentad"] == {"fps": 30.0, "feature_stride": 4, "offset_frames": 8}
    assert grid["grid_error_s"] == pytest.approx(0, abs=1e-12) and grid["period_s"] == pytest.approx(4 / 30)


def test_per_frame_rows_put_the_centre_half_a_frame_in_so_opentad_gets_a_doubled_clock():
    t = np.arange(6) / 2.0  # every frame sampled at 2 fps: row i spans [i/2, (i+1)/2)
    grid = tool_grid(t, t + 0.5, np.arange(6) * 12, np.arange(1, 7) * 12, 2.0)
    assert grid["actionformer"] == {"fps": 2.0, "feat_stride": 1, "num_frames": 1}
    assert grid["opentad"] == {"fps": 4.0, "feature_stride": 2, "offset_frames": 1}
    assert (grid["stride_source_frames"], grid["window_source_frames"]) == (12, 12)


@pytest.mark.parametrize("fps,stride,window,first", [(30, 4, 16, 0.0), (25, 16, 16, 0.0), (15, 1, 1, 0.4), (2, 3, 8, 1.0)])
def test_actionformers_formula_with_the_exported_keys_gives_every_rows_centre(fps, stride, window, first):
    start = np.arange(7) * stride
    t_start, t_end = first + start / fps, first + (start + window) / fps
    keys = tool_grid(t_start, t_end, start, start + window, fps)["actionformer"]
    # libs/modeling/meta_archs.py: seconds = (feature index * feat_stride + 0.5 * num_frames) / fps
    centres = (np.arange(7) * keys["feat_stride"] + 0.5 * keys["num_frames"]) / keys["fps"]
    np.testing.assert_allclose(centres, (t_start + t_end) / 2, atol=1e-6)


def test_a_padded_last_clip_shows_as_grid_error():
    start = np.arange(4) * 4
    t_end = (start + 16) / 30
    t_end[-1] = (start[-1] + 10) / 30  # the video ends 6 frames into the last clip
    grid = tool_grid(start / 30, t_end, start, start + 16, 30.0)
    assert grid["grid_error_s"] == pytest.approx(3 / 30)


# -- formats: the tools' readers get the store's rows exactly ---------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_each_format_read_as_its_tool_reads_it_equals_load_sequences_bit_for_bit(tmp_path, dtype):
    h5py = pytest.importorskip("h5py")
    root = make_store(tmp_path / "store", dtype)
    expected = load_sequences(root)
    readers = {
        "npy": lambda out, vid: np.load(out / f"{vid}.npy"),  # ActionFormer: np.load(feat_folder/<id>.npy)
        "csv": lambda out, vid: np.loadtxt(out / f"{vid}.csv", dtype=np.float32, delimiter=",", skiprows=1, ndmin=2),
        "hdf5": lambda out, vid: h5py.File(out / "features.h5", "r")[vid][()],
    }
    for fmt, read in readers.items():
        out = tmp_path / fmt
        export_store(root, out, fmt=fmt, progress=False)
        sidecar = json.loads((out / SIDECAR).read_text())
        assert sorted(sidecar["videos"]) == sorted(expected) == ["a", "c", "sub/b"]  # ok videos only
        for vid, rows in expected.items():
            got = read(out, vid)
            assert got.shape == rows.shape == (sidecar["videos"][vid]["rows"], STORE_DIM)
            assert np.array_equal(got.astype(rows.dtype), rows), (fmt, vid)
            if fmt != "csv":
                assert got.dtype == rows.dtype
        times = pq.read_table(out / TIMES).to_pandas()
        store_times = load_features(root, columns=TIME_COLUMNS).sort_values(["video_id", "step"], ignore_index=True)
        pd.testing.assert_frame_equal(times, store_times)


def test_dtype_converts_and_the_csv_has_bmns_header(tmp_path):
    root = make_store(tmp_path / "store")
    export_store(root, tmp_path / "f32", dtype="float32", progress=False)
    assert np.load(tmp_path / "f32" / "a.npy").dtype == np.float32
    export_store(root, tmp_path / "csv", fmt="csv", progress=False)
    lines = (tmp_path / "csv" / "a.csv").read_text().splitlines()
    assert lines[0] == ",".join(f"f{i}" for i in range(STORE_DIM)) and len(lines) == 1 + 4


def test_hdf5_datasets_carry_their_times_as_attributes(tmp_path):
    h5py = pytest.importorskip("h5py")
    root = make_store(tmp_path / "store")
    export_store(root, tmp_path / "h5", fmt="hdf5", progress=False)
    with h5py.File(tmp_path / "h5" / "features.h5", "r") as file:
        attrs = file["sub/b"].attrs
        np.testing.assert_array_equal(attrs["t_start"], np.arange(5) * 0.5)
        np.testing.assert_array_equal(attrs["frame_end"], np.arange(5) * 12 + 12)
        assert attrs["clock_fps"] == 2.0 and attrs["rows"] == 5
        assert json.loads(file.attrs["featx_config"])["backbone"] == "toy"


def test_the_sidecar_holds_the_config_and_per_video_grid(tmp_path):
    root = make_store(tmp_path / "store")
    export_store(root, tmp_path / "out", progress=False)
    sidecar = json.loads((tmp_path / "out" / SIDECAR).read_text())
    assert sidecar["format_version"] == 1 and sidecar["dtype"] == "float16" and sidecar["feature_dim"] == STORE_DIM
    assert ExtractConfig.from_dict(sidecar["config"]) == read_config(root)
    video = sidecar["videos"]["sub/b"]
    assert video["file"] == "sub/b.npy" and (tmp_path / "out" / "sub" / "b.npy").is_file()
    assert (video["source_fps"], video["fps"], video["frames"], video["duration"]) == (25.0, 2.0, 50, 2.0)
    assert (video["first_t_start"], video["last_t_end"], video["rows"]) == (0.0, 2.5, 5)
    assert sidecar["actionformer"] == {"feat_stride": 1, "num_frames": 1, "default_fps": 2.0, "input_dim": STORE_DIM,
                                       "file_prefix": None, "file_ext": ".npy"}
    assert sidecar["opentad"] == {"feature_stride": 2, "sample_stride": 1, "offset_frames": 1}


def test_flow_feature_of_a_two_stream_store(tmp_path):
    config = toy_config(stream="both")
    with StoreWriter(tmp_path / "store", config) as writer:
        flow = np.full((3, STORE_DIM), 7, np.float32)
        t = np.arange(3) * 0.5
        writer.add_video(toy_record("v"), writer.table("v", t, t + 0.5, t, t + 1, flow * 0, flow))
    export_store(tmp_path / "store", tmp_path / "out", column="flow_feature", progress=False)
    assert (np.load(tmp_path / "out" / "v.npy") == 7).all()
    with pytest.raises(FeatxError, match="no flow_feature column"):
        export_store(make_store(tmp_path / "rgb"), tmp_path / "x", column="flow_feature", progress=False)


# -- annotations for ActionFormer / OpenTAD ---------------------------------------------------------------------
def test_annotations_are_written_with_label_ids_fps_and_frame_counts(tmp_path):
    root = make_store(tmp_path / "store")
    anno = tmp_path / "anno.json"
    anno.write_text(json.dumps({"database": {
        "a": {"subset": "training", "duration": 2.0, "annotations": [{"segment": [0.5, 1.5], "label": "jump"}]},
        "c": {"subset": "Validation", "annotations": [{"segment": [0.0, 1.0], "label": "clap"}]},
        "gone": {"subset": "validation", "duration": 3.0, "annotations": []},
    }}))
    result = runner.invoke(app, ["export", str(root), "--out", str(tmp_path / "out"), "--annotations", str(anno),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "1 annotated videos have no features" in result.stdout
    database = json.loads((tmp_path / "out" / ANNOTATIONS).read_text())["database"]
    assert sorted(database) == ["a", "c"]
    assert database["a"] == {"subset": "training", "duration": 2.0, "fps": 2.0, "frame": 8,
                             "annotations": [{"label": "jump", "label_id": 1, "segment": [0.5, 1.5]}]}
    assert database["c"]["subset"] == "validation" and database["c"]["duration"] == 2.0  # the manifest's
    assert database["c"]["annotations"][0]["label_id"] == 0


def test_tool_annotations_default_a_missing_subset_to_training():
    videos = {"v": {"duration": 4.0, "last_t_end": 4.0, "actionformer": {"fps": 30.0}, "opentad": None}}
    anno = Annotations("x", {"v": VideoAnnotation(None, None, [Segment(1.0, 2.0, "a")])})
    assert tool_annotations(anno, videos)["database"]["v"]["subset"] == "training"
    assert tool_annotations(anno, videos)["database"]["v"]["frame"] == 120


# -- refusals and overwriting -------------------------------------------------------------------------------------
def test_a_non_empty_out_is_refused_unless_overwrite_which_replaces_the_earlier_export(tmp_path):
    root = make_store(tmp_path / "store")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    line = one_error_line(runner.invoke(app, ["export", str(root), "--out", str(out), "--no-progress"]))
    assert "not empty" in line and "--overwrite" in line
    assert runner.invoke(app, ["export", str(root), "--out", str(out), "--overwrite", "--no-progress"]).exit_code == 0
    small = make_store(tmp_path / "small", ids=("z",))
    assert runner.invoke(app, ["export", str(small), "--out", str(out), "--overwrite", "--no-progress"]).exit_code == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        SIDECAR, TIMES, "mine.txt", "z.npy"]  # the earlier export's files are gone, the user's file stays


@pytest.mark.parametrize("args,needle", [
    (["--format", "parquet"], "--format must be one of npy, hdf5, csv"),
    (["--dtype", "float64"], "--dtype must be one of"),
    (["--column", "rgb"], "--column must be one of"),
])
def test_bad_options_are_one_line(tmp_path, args, needle):
    root = make_store(tmp_path / "store")
    line = one_error_line(runner.invoke(app, ["export", str(root), "--out", str(tmp_path / "out"), *args]))
    assert needle in line and not (tmp_path / "out").exists()


def test_out_inside_a_store_and_a_folder_that_is_no_store_are_refused(tmp_path):
    root = make_store(tmp_path / "store")
    assert "inside the store" in one_error_line(runner.invoke(app, ["export", str(root), "--out", str(root / "x")]))
    (tmp_path / "empty").mkdir()
    assert "not a featx store" in one_error_line(runner.invoke(app, ["export", str(tmp_path / "empty"), "--out",
                                                                 str(tmp_path / "out")]))


def test_a_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    root = make_store(tmp_path / "store")
    from featx import export_formats

    def full_disk(target, array):
        raise OSError(28, "No space left on device", str(target))

    monkeypatch.setattr(export_formats.NpyWriter, "save", lambda self, target, array: full_disk(target, array))
    line = one_error_line(runner.invoke(app, ["export", str(root), "--out", str(tmp_path / "out"), "--no-progress"]))
    assert "No space left on device" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no out, no hidden temp folder


def test_a_video_id_that_would_leave_the_folder_is_refused(tmp_path):
    root = make_store(tmp_path / "store", ids=("../escape",))
    with pytest.raises(FeatxError, match="cannot be a video id"):
        export_store(root, tmp_path / "out", progress=False)
    assert not (tmp_path / "escape.npy").exists() and not (tmp_path / "out").exists()


def test_hdf5_cannot_hold_an_id_inside_another_and_says_so(tmp_path):
    pytest.importorskip("h5py")
    root = make_store(tmp_path / "store", ids=("a", "a/b"))
    with pytest.raises(FeatxError, match="cannot be an HDF5 dataset here.*use --format npy"):
        export_store(root, tmp_path / "out", fmt="hdf5", progress=False)
    assert not (tmp_path / "out").exists()
    export_store(root, tmp_path / "npy", progress=False)
    assert (tmp_path / "npy" / "a.npy").is_file() and (tmp_path / "npy" / "a" / "b.npy").is_file()


def test_overwrite_never_replaces_a_file_no_earlier_export_wrote(tmp_path):
    root = make_store(tmp_path / "store")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.npy").write_bytes(b"precious")
    line = one_error_line(runner.invoke(app, ["export", str(root), "--out", str(out), "--overwrite", "--no-progress"]))
    assert "a.npy is not from an earlier featx export" in line
    assert (out / "a.npy").read_bytes() == b"precious" and not list(tmp_path.glob(".out.featx-export-*"))


def test_the_staging_folder_of_a_killed_export_is_removed_by_the_next(tmp_path):
    root = make_store(tmp_path / "store")
    stale = tmp_path / ".out.featx-export-999999999.tmp"
    stale.mkdir()
    (stale / "half.npy").write_bytes(b"x")
    result = runner.invoke(app, ["export", str(root), "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert not stale.exists()


# -- real-world rates and `--for`: what the tools read plugs in without a hand-written config ------------------
NTSC = 30000 / 1001


def _sampled_store(root, lengths=(60.0, 47.3, 75.1), source_fps=NTSC, fps=4.0):
    """Per-frame rows as extraction writes them: 4 fps sampled from 29.97 fps (frames 7 and 8 apart in turn)."""
    from featx.timegrid import row_spans, sample_indices

    with StoreWriter(root, toy_config(fps=fps)) as writer:
        for k, seconds in enumerate(lengths):
            frames = np.arange(int(seconds * source_fps)) / source_fps
            kept = np.asarray(sample_indices(frames, fps))
            frame_end, t_end = row_spans(kept, frames[kept], len(frames), seconds)
            feats = np.random.default_rng(k).normal(size=(len(kept), STORE_DIM)).astype(np.float32)
            record = {**toy_record(f"v{k}"), "fps": source_fps, "frames": len(frames), "duration": seconds}
            writer.add_video(record, writer.table(f"v{k}", frames[kept], t_end, kept, frame_end, feats))
    return root


def test_29_97_fps_sampled_at_4_exports_one_grid_actionformer_maps_within_a_source_frame(tmp_path):
    root = _sampled_store(tmp_path / "store")
    export_store(root, tmp_path / "out", progress=False)
    sidecar = json.loads((tmp_path / "out" / SIDECAR).read_text())
    assert sidecar["actionformer"]["feat_stride"] == 1 and sidecar["actionformer"]["num_frames"] == 1
    assert sidecar["actionformer"]["default_fps"] == 4.0 and sidecar["opentad"] is not None
    times = pd.read_parquet(tmp_path / "out" / TIMES)
    for vid, entry in sidecar["videos"].items():
        rows = times[times.video_id == vid]
        centres = ((rows.t_start + rows.t_end) / 2).to_numpy()
        keys = sidecar["actionformer"]
        mapped = (np.arange(len(centres)) * keys["feat_stride"] + 0.5 * keys["num_frames"]) / keys["default_fps"]
        error = np.abs(mapped - centres)
        assert np.max(error[:-1]) <= 1.5 / NTSC  # the sampling's jitter, never a drift
        assert error[-1] <= 0.125  # the last row ends with the video: its centre moves, by under half a step
        assert entry["grid_error_s"] == pytest.approx(np.max(error), abs=1e-6)


def _thumos_annotations(ids):
    videos = {vid: VideoAnnotation("validation" if k < 2 else "testing", None, [Segment(3.0, 9.5, "Jump" if k % 2 else "Dive")])
              for k, vid in enumerate(ids)}
    return Annotations("thumos14.json", videos)


def test_export_for_actionformer_writes_every_key_the_release_reads(tmp_path):
    import yaml
    root = _sampled_store(tmp_path / "store", lengths=(60.0, 47.3, 160.0, 30.0))
    ids = ["v0", "v1", "v2", "v3"]
    summary = export_store(root, tmp_path / "out", annotations=_thumos_annotations(ids), progress=False,
                           for_tool="actionformer", splits=("validation", "testing"))
    assert "train on validation, evaluate on testing" in "\n".join(summary.lines())
    config = yaml.safe_load((tmp_path / "out" / "actionformer.yaml").read_text())
    assert (config["dataset_name"], config["train_split"], config["val_split"]) == ("thumos", ["validation"], ["testing"])
    data = config["dataset"]
    assert set(data) == {"json_file", "feat_folder", "file_prefix", "file_ext", "num_classes", "input_dim", "feat_stride",
                         "num_frames", "default_fps", "max_seq_len", "trunc_thresh", "crop_ratio"}
    assert (data["num_classes"], data["input_dim"], data["feat_stride"], data["num_frames"]) == (2, STORE_DIM, 1, 1)
    assert data["max_seq_len"] == 1152  # 160 s at 4 fps = 640 rows, rounded up to a multiple of 576
    annotations = json.loads((tmp_path / "out" / ANNOTATIONS).read_text())
    assert Path(data["json_file"]) == (tmp_path / "out" / ANNOTATIONS).resolve()
    assert np.load(Path(data["feat_folder"]) / f"v2{data['file_ext']}").shape == (640, STORE_DIM)
    label_ids = {a["label_id"] for v in annotations["database"].values() for a in v["annotations"]}
    assert label_ids == set(range(data["num_classes"]))  # the release asserts as many label ids as classes
    assert {v["subset"] for v in annotations["database"].values()} == {"validation", "testing"}


def test_export_for_opentad_writes_its_class_map_and_whole_frame_grid(tmp_path):
    import yaml
    root = _sampled_store(tmp_path / "store", lengths=(20.0, 25.0, 30.0))
    export_store(root, tmp_path / "out", annotations=_thumos_annotations(["v0", "v1", "v2"]), progress=False,
                 for_tool="opentad", splits=("validation", "testing"))
    config = yaml.safe_load((tmp_path / "out" / "opentad.yaml").read_text())
    assert (tmp_path / "out" / "category_idx.txt").read_text().split() == ["Dive", "Jump"]
    assert config["dataset"]["feature_stride"] == 2 and config["dataset"]["offset_frames"] == 1  # clock doubled: 8 fps
    assert config["model"]["num_classes"] == 2


def test_export_for_without_annotations_or_a_subset_is_one_error_line(tmp_path):
    root = _sampled_store(tmp_path / "store", lengths=(20.0,))
    result = runner.invoke(app, ["export", str(root), "--out", str(tmp_path / "a"), "--for", "actionformer"])
    one_error_line(result, "--annotations")
    anno = tmp_path / "a.csv"
    anno.write_text("video_id,start,end,label\nv0,1,2,x\n")
    result = runner.invoke(app, ["export", str(root), "--out", str(tmp_path / "b"), "--for", "actionformer",
                                 "--annotations", str(anno)])
    one_error_line(result, "--train-subset")
    result = runner.invoke(app, ["export", str(root), "--out", str(tmp_path / "c"), "--for", "mmaction",
                                 "--annotations", str(anno), "--train-subset", "training", "--eval-subset", "validation"])
    one_error_line(result, "--for must be one of")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_export_for_a_tool_needs_the_npy_layout_it_reads(tmp_path):
    root = _sampled_store(tmp_path / "store", lengths=(20.0,))
    with pytest.raises(FeatxError, match="use --format npy, not hdf5"):
        export_store(root, tmp_path / "out", fmt="hdf5", annotations=_thumos_annotations(["v0"]), progress=False,
                     for_tool="actionformer", splits=("validation", "testing"))
