"""Annotation and label files in the layouts the datasets publish (written here, byte for byte in that layout),
and the two evaluator rules that come with them: ActionFormer's duplicate removal, THUMOS14's ignore regions."""

import json

import numpy as np
import pytest

from featx.errors import FeatxError
from featx.store import open_store, StoreWriter
from seqmodels.data import load_labelled, match_store_ids, read_labels
from seqmodels.detection.annotations import Segment, load_annotations
from seqmodels.detection.map import Detection, average_precision, detection_map, remove_duplicates
from tests.helpers import add_toy_video, toy_config


def D(video, start, end, label="a", score=1.0):
    return Detection(video, start, end, label, score)


# ---------------------------------------------------------------- detection annotations


def test_actionformer_thumos_json_reads_capitalised_subsets_and_fps(tmp_path):
    path = tmp_path / "thumos14.json"
    path.write_text(json.dumps({"version": "Thumos14-30fps", "database": {
        "video_validation_0000051": {"subset": "Validation", "duration": 169.79, "fps": 30.0, "annotations": [
            {"label": "Billiards", "segment": [2.1, 5.4], "segment(frames)": [63.0, 162.0], "label_id": 2},
            {"label": "Billiards", "segment": [160.0, 171.0], "segment(frames)": [4800.0, 5130.0], "label_id": 2}]},
        "video_test_0000004": {"subset": "Test", "duration": 33.5, "fps": 25.0, "annotations": [
            {"label": "CliffDiving", "segment": [1.0, 2.0], "segment(frames)": [25.0, 50.0], "label_id": 4}]},
    }}))
    anno = load_annotations(path)
    val, test = anno.videos["video_validation_0000051"], anno.videos["video_test_0000004"]
    assert anno.format == "ActionFormer JSON"
    assert (val.subset, val.fps, test.subset, test.fps) == ("validation", 30.0, "testing", 25.0)
    # the second segment ends after the duration: clipped to it, and said so
    assert val.segments == [Segment(2.1, 5.4, "Billiards"), Segment(160.0, 169.79, "Billiards")]
    assert len(anno.notes) == 1 and "clipped to the duration 169.79" in anno.notes[0]
    assert anno.classes == ["Billiards", "CliffDiving"]


def _thumos_folder(tmp_path):
    folder = tmp_path / "annotation"
    folder.mkdir()
    (folder / "BaseballPitch_val.txt").write_text(
        "video_validation_0000266 72.8 76.4 \nvideo_validation_0000266 85.1 87.0 \n\n")
    (folder / "Diving_val.txt").write_text("video_validation_0000051 10.0 12.5\n")
    (folder / "Ambiguous_val.txt").write_text("video_validation_0000266 80.0 85.0 \n")
    (folder / "BaseballPitch_test.txt").write_text("video_test_0000004 1.5 3.0\n")
    return folder


def test_thumos_text_folder_reads_classes_subsets_and_ambiguous_as_ignore(tmp_path):
    anno = load_annotations(_thumos_folder(tmp_path))
    v266 = anno.videos["video_validation_0000266"]
    assert anno.format == "THUMOS14 text files"
    assert anno.classes == ["BaseballPitch", "Diving"]  # Ambiguous is no class
    assert v266.segments == [Segment(72.8, 76.4, "BaseballPitch"), Segment(85.1, 87.0, "BaseballPitch")]
    assert v266.ignore == [Segment(80.0, 85.0, "Ambiguous")]
    assert (v266.subset, v266.duration, anno.videos["video_test_0000004"].subset) == ("validation", None, "testing")
    assert anno.ignore_regions(["video_validation_0000266", "video_test_0000004"]) == [
        Detection("video_validation_0000266", 80.0, 85.0, "Ambiguous")]


def test_thumos_folder_errors_name_the_file_line_and_the_format(tmp_path):
    folder = _thumos_folder(tmp_path)
    (folder / "Diving_test.txt").write_text("video_validation_0000051 1 2\n")
    with pytest.raises(FeatxError, match=r"Diving_val.txt: line 1: video 'video_validation_0000051' is in both"):
        load_annotations(folder)
    (folder / "Diving_test.txt").write_text("video_test_0000004 1.0\n")
    with pytest.raises(FeatxError, match=r"Diving_test.txt: line 1: expected `video_id start end` \(THUMOS14\)"):
        load_annotations(folder)
    with pytest.raises(FeatxError, match="one THUMOS14 class file; pass the folder"):
        load_annotations(folder / "Diving_val.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FeatxError, match="not a THUMOS14 annotation folder"):
        load_annotations(empty)


CHARADES_HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"


def test_charades_csv_reads_actions_lengths_and_the_subset_from_the_name(tmp_path):
    path = tmp_path / "Charades_v1_train.csv"
    path.write_text(CHARADES_HEADER
                    + '46GP8,HR43,Kitchen,6,7,Yes,"A person cooks, then eats.",food;dish,"A person, cooking.",'
                      '"c092 11.90 21.20;c147 0.00 12.60",24.83\n'
                    + "N11GT,0KZ7,Stairs,6,7,Yes,A person walks.,stairs,A person walks.,,14.10\n"
                    + 'ZZXQF,OKZ7,Bedroom,5,6,Yes,Sits.,bed,Sits.,"c059 8.60 32.00;c011 3.00 3.00",30.17\n')
    anno = load_annotations(path)
    assert anno.format == "Charades CSV"
    assert anno.videos["46GP8"].segments == [Segment(11.9, 21.2, "c092"), Segment(0.0, 12.6, "c147")]
    assert (anno.videos["46GP8"].subset, anno.videos["46GP8"].duration) == ("training", 24.83)
    assert anno.videos["N11GT"].segments == [] and anno.videos["N11GT"].duration == 14.1
    # past the length: clipped; zero length: left out; both recorded
    assert anno.videos["ZZXQF"].segments == [Segment(8.6, 30.17, "c059")]
    assert len(anno.notes) == 2
    test_file = tmp_path / "Charades_v1_test.csv"
    test_file.write_text(CHARADES_HEADER + "N11GT,0KZ7,Stairs,6,7,Yes,A.,stairs,A.,c001 1 2,14.10\n")
    assert load_annotations(test_file).videos["N11GT"].subset == "testing"


@pytest.mark.parametrize(("name", "text", "message"), [
    ("a.json", '{"results": {}}', r"not ActivityNet / ActionFormer JSON: no 'database' object"),
    ("Charades_v1_train.csv", "id,actions\nX,c001 1 2\n", r"not a Charades CSV: missing columns \['length'\]"),
    ("Charades_v1_train.csv", CHARADES_HEADER + "X,s,k,1,1,Yes,a,b,c,c001 1,5\n", r"line 2 \(X\): action 'c001 1' must be `class start end`"),
    ("a.xml", "<x/>", r"annotations must be ActivityNet JSON, ActionFormer JSON, a THUMOS14 folder"),
])
def test_a_file_in_the_wrong_format_is_one_line_naming_the_expected_format(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FeatxError, match=message) as err:
        load_annotations(path)
    assert "\n" not in str(err.value)


def test_activitynet_json_stays_strict_and_records_no_fps(tmp_path):
    path = tmp_path / "anet.json"
    path.write_text(json.dumps({"database": {"v": {"subset": "training", "duration": 10,
                                                   "annotations": [{"segment": [1, 2], "label": "a"}]}}}))
    anno = load_annotations(path)
    assert (anno.format, anno.videos["v"].fps, anno.videos["v"].ignore) == ("ActivityNet JSON", None, [])


# ---------------------------------------------------------------- evaluator


def test_duplicates_and_too_short_ground_truth_are_removed_as_actionformer_does():
    gt = [D("v1", 0, 10), D("v1", 0.0005, 10.0008), D("v1", 0, 10, "b"), D("v2", 0, 10),
          D("v1", 20, 20.0005), D("v1", 30, 40), D("v1", 0.0, 10.002)]
    # kept: the first [0, 10] of a in v1, the same times for class b and for video v2, [30, 40], and
    # [0, 10.002] (its end is 0.002 > 1e-3 away); dropped: the near copy and the 0.5 ms segment
    assert remove_duplicates(gt) == [D("v1", 0, 10), D("v1", 0, 10, "b"), D("v2", 0, 10), D("v1", 30, 40),
                                      D("v1", 0.0, 10.002)]


def test_duplicate_ground_truth_no_longer_lowers_recall():
    gt = [D("v1", 0, 10), D("v1", 0, 10), D("v1", 30, 40), D("v1", 30, 40)]
    preds = [D("v1", 0, 10, score=0.9), D("v1", 30, 40, score=0.8)]
    # deduplicated: 2 ground truth, 2 hits -> AP 1; kept: recall reaches 2/4 at precision 1 -> AP 0.5
    assert detection_map(gt, preds, [0.5]).map[0] == pytest.approx(1.0)
    assert detection_map(gt, preds, [0.5], deduplicate=False).map[0] == pytest.approx(0.5)


def test_a_false_positive_overlapping_an_ignore_region_is_left_out():
    gt = [D("v1", 0, 10), D("v1", 50, 60), D("v1", 40, 45, "b")]
    preds = [D("v1", 0, 10, score=0.9),     # TP
             D("v1", 22, 28, score=0.8),    # FP inside the region [20, 30]: left out
             D("v1", 30, 34, score=0.75),   # FP touching the region's end: zero overlap, stays a FP
             D("v1", 35, 45, score=0.7),    # FP
             D("v1", 50, 60, score=0.6),    # TP
             D("v1", 21, 29, "b", 0.9),     # FP of class b inside the region: left out too (any class)
             D("v1", 40, 45, "b", 0.5)]     # TP
    ignore = [D("v1", 20, 30, "Ambiguous"), D("v2", 0, 100, "Ambiguous")]
    # a without ignore: TP FP FP FP TP -> precision 1 at recall .5, 2/5 at recall 1 -> AP .5 + .5 * .4 = .7
    # a with ignore:    TP FP FP TP    -> precision 1 at recall .5, 2/4 at recall 1 -> AP .5 + .5 * .5 = .75
    # b: FP TP -> .5 without; TP -> 1 with
    without = detection_map(gt, preds, [0.5])
    with_ignore = detection_map(gt, preds, [0.5], ignore=ignore)
    np.testing.assert_allclose(without.ap[:, 0], [0.7, 0.5], atol=1e-12)
    np.testing.assert_allclose(with_ignore.ap[:, 0], [0.75, 1.0], atol=1e-12)


def test_ignoring_depends_on_the_threshold_and_never_removes_a_true_positive():
    gt = [D("v1", 0, 10)]
    ignore = [D("v1", 8, 12, "Ambiguous")]
    preds = [D("v1", 4, 10, score=0.9),  # tIoU 0.6: TP at 0.5; at 0.7 a FP overlapping the region: left out
             D("v2", 0, 5, score=0.8),   # no ground truth in v2 (and no region there): FP
             D("v1", 0, 10, score=0.5)]  # TP at 0.7 (at 0.5 the ground truth is taken: FP)
    # 0.5: TP FP FP -> AP 1. 0.7: (left out) FP TP -> precision 1/2 at recall 1 -> AP .5; without ignore FP FP TP -> 1/3
    np.testing.assert_allclose(average_precision(gt, preds, [0.5, 0.7], ignore), [1.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(average_precision(gt, preds, [0.5, 0.7]), [1.0, 1 / 3], atol=1e-12)


def test_thumos_ambiguous_segments_reach_the_evaluator_through_ignore_regions(tmp_path):
    anno = load_annotations(_thumos_folder(tmp_path))
    ids = anno.subset("validation")
    gt = [D(v, s.start, s.end, s.label) for v in ids for s in anno.videos[v].segments]
    preds = [D("video_validation_0000266", 81, 84, "BaseballPitch", 0.9)] + [
        D(g.video_id, g.start, g.end, g.label, 0.5) for g in gt]
    # BaseballPitch: FP (inside Ambiguous [80, 85]) then two TPs: precision 1/2, 2/3 at recall 1/2, 1, made
    # monotone 2/3 -> AP 2/3 without ignore, 1 with; Diving: 1
    assert detection_map(gt, preds, [0.5]).map[0] == pytest.approx((2 / 3 + 1) / 2)
    assert detection_map(gt, preds, [0.5], ignore=anno.ignore_regions(ids)).map[0] == pytest.approx(1.0)


# ---------------------------------------------------------------- classification labels


def _ucf_folder(tmp_path):
    folder = tmp_path / "ucfTrainTestlist"
    folder.mkdir()
    (folder / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 HandstandPushups\r\n")
    (folder / "trainlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nHandstandPushups/v_HandStandPushups_g08_c01.avi 2\r\n")
    (folder / "testlist01.txt").write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n")
    (folder / "trainlist02.txt").write_bytes(b"ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\r\n")
    (folder / "testlist02.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\r\nHandstandPushups/v_HandStandPushups_g08_c01.avi\r\n")
    return folder


def test_ucf101_folder_reads_split_1_with_ids_as_the_dataset_ships_them(tmp_path):
    table = read_labels(_ucf_folder(tmp_path))
    assert table.to_dict("records") == [
        {"video_id": "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", "label": "ApplyEyeMakeup", "split": "train"},
        {"video_id": "HandstandPushups/v_HandStandPushups_g08_c01", "label": "HandstandPushups", "split": "train"},
        {"video_id": "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", "label": "ApplyEyeMakeup", "split": "val"},
    ]


def test_ucf101_other_split_is_chosen_by_passing_its_list_file(tmp_path):
    table = read_labels(_ucf_folder(tmp_path) / "trainlist02.txt")
    assert dict(zip(table.video_id, table.split)) == {
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01": "train", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01": "val",
        "HandstandPushups/v_HandStandPushups_g08_c01": "val"}


def test_ucf101_index_that_disagrees_with_classind_names_the_line(tmp_path):
    folder = _ucf_folder(tmp_path)
    (folder / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 2\n")
    with pytest.raises(FeatxError, match=r"trainlist01.txt: line 1: expected .* \(UCF101\)"):
        read_labels(folder)


def _hmdb_folder(tmp_path):
    folder = tmp_path / "testTrainMulti_7030_splits"
    folder.mkdir()
    (folder / "brush_hair_test_split1.txt").write_text(
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nApril_09_brush_hair_u_nm_np1_ba_goo_1.avi 2 \n"
        "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0 \n")
    (folder / "cartwheel_test_split1.txt").write_text("Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi 2 \n")
    (folder / "brush_hair_test_split2.txt").write_text("April_09_brush_hair_u_nm_np1_ba_goo_0.avi 2 \n")
    (folder / "cartwheel_test_split2.txt").write_text("Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8.avi 0 \n")
    return folder


def test_hmdb51_folder_reads_split_1_and_leaves_unused_videos_out(tmp_path):
    table = read_labels(_hmdb_folder(tmp_path))
    assert table.to_dict("records") == [
        {"video_id": "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0", "label": "brush_hair", "split": "train"},
        {"video_id": "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_1", "label": "brush_hair", "split": "val"},
        {"video_id": "cartwheel/Acrobacias_de_un_fenomeno_cartwheel_f_cm_np1_ba_bad_8", "label": "cartwheel", "split": "val"},
    ]
    two = read_labels(tmp_path / "testTrainMulti_7030_splits" / "cartwheel_test_split2.txt")
    assert two.to_dict("records") == [
        {"video_id": "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0", "label": "brush_hair", "split": "val"}]


def test_kinetics_csv_names_clips_as_the_crawler_saves_them(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('label,youtube_id,time_start,time_end,split\nabseiling,---QUuC4vJs,3,13,train\n'
                    '"playing guitar",-2Ua_bSrNnw,120,130,val\ntesting,zzz,0,10,test\n')
    table = read_labels(path)
    assert table.to_dict("records") == [
        {"video_id": "---QUuC4vJs_000003_000013", "label": "abseiling", "split": "train"},
        {"video_id": "-2Ua_bSrNnw_000120_000130", "label": "playing guitar", "split": "val"},
        {"video_id": "zzz_000000_000010", "label": "testing", "split": "test"},
    ]


@pytest.mark.parametrize(("text", "message"), [
    ("youtube_id,time_start,time_end,split\nabc,1,11,test\n", r"a Kinetics CSV needs columns .*missing \['label'\]"),
    ("label,youtube_id,time_start,time_end\nx,abc,1.5,11,\n", r"line 2: time_start and time_end must be whole seconds"),
    ("name,class\na,b\n", r"needs columns video_id,label\[,split\]; missing .*Kinetics CSV"),
])
def test_a_labels_file_in_the_wrong_format_is_one_line_naming_the_expected_format(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(FeatxError, match=message) as err:
        read_labels(path)
    assert "\n" not in str(err.value)


def test_a_folder_that_is_neither_ucf101_nor_hmdb51_names_both(tmp_path):
    with pytest.raises(FeatxError, match="UCF101's ucfTrainTestlist .* HMDB51's splits"):
        read_labels(tmp_path)


def test_store_ids_are_matched_by_file_name_and_by_youtube_id():
    labels = _labels_frame(["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", "abc_000003_000013", "def_000001_000011",
                                "gone/v_x"])
    store = ["UCF-101/v_ApplyEyeMakeup_g08_c01", "train/abseiling/abc_000003_000013", "def", "other"]
    assert match_store_ids(labels, store).video_id.tolist() == [
        "UCF-101/v_ApplyEyeMakeup_g08_c01", "train/abseiling/abc_000003_000013", "def", "gone/v_x"]
    with pytest.raises(FeatxError, match=r"video 'abc_000003_000013' matches several store videos"):
        match_store_ids(labels, store + ["val/abc_000003_000013"])


def _labels_frame(ids):
    import pandas as pd

    return pd.DataFrame({"video_id": ids, "label": ["x"] * len(ids)})


def test_ucf101_labels_train_on_a_store_of_a_flat_folder(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, toy_config()) as w:
        for k, vid in enumerate(["v_ApplyEyeMakeup_g08_c01", "v_HandStandPushups_g08_c01", "v_ApplyEyeMakeup_g01_c01"]):
            add_toy_video(w, vid, 3 + k, k)
    labels = match_store_ids(read_labels(_ucf_folder(tmp_path)), ["v_ApplyEyeMakeup_g08_c01",
                                                                   "v_HandStandPushups_g08_c01", "v_ApplyEyeMakeup_g01_c01"])
    data, classes, split = load_labelled(open_store(root), labels)
    assert classes == ["ApplyEyeMakeup", "HandstandPushups"]
    assert dict(zip(data.ids, split)) == {"v_ApplyEyeMakeup_g08_c01": "train", "v_HandStandPushups_g08_c01": "train",
                                          "v_ApplyEyeMakeup_g01_c01": "val"}
