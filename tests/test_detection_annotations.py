"""Annotations in (ActivityNet JSON, CSV), one-line errors, and per-step targets with the half-step rule."""

import json

import numpy as np
import pytest

from featx.errors import FeatxError
from featx.synth import make_untrimmed
from seqmodels.detection.annotations import Segment, check_videos, load_annotations, step_targets


def _json(tmp_path, database):
    path = tmp_path / "anno.json"
    path.write_text(json.dumps({"version": "test", "database": database}))
    return path


def test_activitynet_json_written_by_synth_loads(tmp_path):
    data = make_untrimmed(tmp_path / "u", videos=2, seconds=20, fps=4, size=32)
    anno = load_annotations(data.labels)
    assert set(anno.videos) == {"untrimmed_000", "untrimmed_001"}
    assert anno.videos["untrimmed_001"].subset in ("training", "validation")
    assert anno.videos["untrimmed_000"].duration == pytest.approx(20)
    assert anno.classes == sorted({s.label for v in anno.videos.values() for s in v.segments})


def test_csv_loads_and_groups_segments_by_video(tmp_path):
    path = tmp_path / "anno.csv"
    path.write_text("video_id,start,end,label\nv1,0,2.5,jump\nv1,4,6,run\nv2,1,3,jump\n")
    anno = load_annotations(path)
    assert anno.videos["v1"].segments == [Segment(0, 2.5, "jump"), Segment(4, 6, "run")]
    assert anno.classes == ["jump", "run"] and anno.videos["v2"].subset is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"duration": 10, "annotations": [{"segment": [2, 12], "label": "a"}]}, r"database\['v'\].annotations\[0\]: segment \[2.0, 12.0\] ends after the video's duration 10"),
        ({"duration": 10, "annotations": [{"segment": [5, 5], "label": "a"}]}, r"annotations\[0\]: start 5.0 >= end 5.0"),
        ({"duration": 10, "annotations": [{"segment": [1, 2], "label": " "}]}, r"annotations\[0\]: empty label"),
        ({"duration": 10, "annotations": [{"segment": [1], "label": "a"}]}, r"'segment' must be \[start, end\]"),
    ],
)
def test_bad_json_entries_name_the_file_and_the_entry(tmp_path, entry, message):
    path = _json(tmp_path, {"v": entry})
    with pytest.raises(FeatxError, match=f"anno.json: .*{message}"):
        load_annotations(path)


def test_bad_csv_rows_name_the_line(tmp_path):
    path = tmp_path / "anno.csv"
    path.write_text("video_id,start,end,label\nv1,0,2,a\nv2,3,1,b\n")
    with pytest.raises(FeatxError, match=r"anno.csv: line 3 \(v2\): start 3.0 >= end 1.0"):
        load_annotations(path)
    path.write_text("video_id,start,label\nv1,0,a\n")
    with pytest.raises(FeatxError, match=r"missing columns \['end'\]"):
        load_annotations(path)


def test_an_annotated_video_missing_from_the_store_is_named(tmp_path):
    anno = load_annotations(_json(tmp_path, {"v1": {"annotations": []}, "v2": {"annotations": []}}))
    with pytest.raises(FeatxError, match="video 'v2' is not in the store"):
        check_videos(anno, {"v1"})
    assert check_videos(anno, {"v1"}, ignore_missing=True) == ["v1"]


def test_a_step_takes_the_label_when_half_of_it_lies_inside():
    # steps of 1 s; segment a [1.5, 3.4): step 1 half inside (0.5) -> a; step 2 fully; step 3 0.4 -> background
    # segment b [3.6, 6): step 3 has 0.4 of b too -> background; steps 4, 5 -> b
    t = np.arange(7.0)
    got = step_targets(t, t + 1, [Segment(1.5, 3.4, "a"), Segment(3.6, 6, "b")], ["a", "b"])
    np.testing.assert_array_equal(got, [0, 1, 1, 0, 2, 2, 0])


def test_overlapping_segments_give_the_step_to_the_larger_cover():
    t = np.array([0.0])
    got = step_targets(t, t + 1, [Segment(0, 0.6, "a"), Segment(0.2, 1, "b")], ["a", "b"])
    assert got.tolist() == [2]  # b covers 0.8 of the step, a 0.6


def test_subset_names_are_read_whatever_their_case_and_unknown_ones_refused(tmp_path):
    anno = load_annotations(_json(tmp_path, {"a": {"subset": "Training", "annotations": []},
                                             "b": {"subset": " VALIDATION ", "annotations": []},
                                             "c": {"subset": "val", "annotations": []}}))
    assert [anno.videos[v].subset for v in "abc"] == ["training", "validation", "validation"]
    with pytest.raises(FeatxError, match="subset must be training, validation or testing"):
        load_annotations(_json(tmp_path, {"a": {"subset": "holdout", "annotations": []}}))
