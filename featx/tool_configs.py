"""`featx export --for actionformer|tridet|opentad`: the config fragment a detection tool needs to train on an
export, written beside the arrays as DIR/<tool>.yaml, so nobody copies grid values by hand.

ActionFormer and TriDet (a fork of ActionFormer's code) read a YAML config whose `dataset:` block is passed as
keyword arguments to their THUMOS14 dataset (libs/datasets/thumos14.py; an unknown key is a TypeError there), so
the fragment holds exactly those keys: json_file, feat_folder, file_prefix, file_ext, num_classes, input_dim,
feat_stride, num_frames, default_fps, max_seq_len, trunc_thresh, crop_ratio; plus dataset_name, train_split and
val_split at the top. Checked against the ActionFormer release by bench/reference_actionformer.py, which trains
it on this fragment.
- max_seq_len: the longest video's rows rounded up to a multiple of 576. The release asserts that max_seq_len is
  divisible by every pyramid level's stride x its attention window (libs/modeling/meta_archs.py: 2^5 x 18 for
  THUMOS's 6 levels and window 19); it also pads every training batch to it, so it is kept no longer than needed.
- default_fps: the clock of the grid when every video shares it (the sampling rate), else null: the tool then
  reads each video's `fps` from the annotations JSON, which the export writes.
- train_split / val_split: the annotation subsets, lower case as the tools compare them.

OpenTAD (mmengine Python configs) gets the values its padding datasets take (feature_stride, sample_stride,
offset_frames, the class map file, subsets, paths) as YAML to paste into a Python config; not checked against a
running OpenTAD.
"""

from __future__ import annotations

import math
from pathlib import Path

from featx.errors import FeatxError

TOOLS = ("actionformer", "tridet", "opentad")
SEQ_LEN_MULTIPLE = 576  # 2^5 levels x (19 // 2) x 2: ActionFormer's THUMOS configuration (6 levels, window 19)
CLASS_MAP = "category_idx.txt"  # OpenTAD's class map: one class name per line, in label_id order


def fragment(tool: str, out: Path, sidecar: dict, annotations: dict, splits: tuple[str, str]) -> dict:
    """The config fragment of `tool` for the export in `out` (sidecar: featx_export.json; annotations: the
    written annotations.json; splits: the train and evaluation subset names)."""
    if tool not in TOOLS:
        raise FeatxError(f"--for must be one of {', '.join(TOOLS)}, not {tool!r}")
    classes = _classes(annotations)
    longest = max(v["rows"] for v in sidecar["videos"].values())
    max_seq_len = max(1, math.ceil(longest / SEQ_LEN_MULTIPLE)) * SEQ_LEN_MULTIPLE
    json_file, folder = str((out / "annotations.json").resolve()), str(out.resolve())
    if tool == "opentad":
        grid = sidecar["opentad"]
        if grid is None:
            raise FeatxError("the videos' grids differ or are not whole frames of one clock, which OpenTAD's padding "
                             "datasets need; export per group of videos sampled alike")
        return {"dataset": {"type": "ThumosPaddingDataset", "ann_file": json_file, "data_path": folder,
                            "class_map": str((out / CLASS_MAP).resolve()), "train_subset_name": splits[0],
                            "val_subset_name": splits[1], "feature_stride": grid["feature_stride"],
                            "sample_stride": grid["sample_stride"], "offset_frames": grid["offset_frames"],
                            "file_ext": sidecar["actionformer"]["file_ext"] if sidecar["actionformer"] else ".npy"},
                "model": {"num_classes": len(classes), "in_channels": sidecar["feature_dim"]},
                "max_seq_len": max_seq_len}
    grid = sidecar["actionformer"]
    if grid is None:
        raise FeatxError(f"the videos' time grids differ (feat_stride / num_frames), which {tool} cannot express in "
                         "one config; export per group of videos extracted alike")
    return {
        "dataset_name": "thumos",  # the release's dataset that reads each video's fps from the JSON
        "train_split": [splits[0]],
        "val_split": [splits[1]],
        "dataset": {
            "json_file": json_file, "feat_folder": folder, "file_prefix": grid["file_prefix"],
            "file_ext": grid["file_ext"], "num_classes": len(classes), "input_dim": grid["input_dim"],
            "feat_stride": grid["feat_stride"], "num_frames": grid["num_frames"], "default_fps": grid["default_fps"],
            "max_seq_len": max_seq_len, "trunc_thresh": 0.5, "crop_ratio": [0.9, 1.0],
        },
    }


def class_map_lines(annotations: dict) -> list[str]:
    """Class names in label_id order (OpenTAD's category_idx.txt; the fragment's num_classes counts them)."""
    return _classes(annotations)


def _classes(annotations: dict) -> list[str]:
    ids = {a["label_id"]: a["label"] for v in annotations["database"].values() for a in v["annotations"]}
    if not ids:
        raise FeatxError("the annotations have no segments of the exported videos: nothing for a detector to learn")
    return [ids[k] for k in sorted(ids)]
