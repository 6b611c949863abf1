import numpy as np
import pytest

from featx.errors import FeatxError
from seqmodels.data import SequenceSet, load_labelled, pad, read_labels, train_val_split, uniform_steps
from tests.helpers import add_toy_video as add
from tests.helpers import toy_config as config
from featx.store import open_store, StoreWriter


@pytest.fixture()
def store(tmp_path):
    root = tmp_path / "store"
    with StoreWriter(root, config()) as w:
        for k, vid in enumerate(["a", "b", "c", "d"]):
            add(w, vid, 3 + k, k)
    return root


def write(tmp_path, text: str):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_uniform_steps_spreads_over_the_sequence():
    assert uniform_steps(5, None).tolist() == [0, 1, 2, 3, 4]
    assert uniform_steps(5, 8).tolist() == [0, 1, 2, 3, 4]
    assert uniform_steps(10, 5).tolist() == [1, 3, 5, 7, 9]  # bin centres: floor((i + 0.5) * 2)


def test_pad_marks_real_steps():
    x, mask = pad([np.ones((2, 3)), np.ones((4, 3))])
    assert x.shape == (2, 4, 3) and mask.tolist() == [[True, True, False, False], [True] * 4]
    assert float(x[0, 2:].abs().sum()) == 0


def test_labels_join_the_store_and_split_by_column(store, tmp_path):
    labels = read_labels(write(tmp_path, "video_id,label,split\na,x,train\nb,y,train\nc,x,val\nd,y,validation\n"))
    data, classes, split = load_labelled(open_store(store), labels)
    assert classes == ["x", "y"] and data.labels.tolist() == [0, 1, 0, 1]
    assert [len(s) for s in data.sequences] == [3, 4, 5, 6]
    train, val = train_val_split(data, split)
    assert train.ids == ["a", "b"] and val.ids == ["c", "d"]


def test_random_split_is_stratified_and_seeded(tmp_path):
    n = 40
    data = SequenceSet([f"v{i}" for i in range(n)], [np.zeros((2, 3))] * n, np.array([0, 1] * (n // 2)))
    a = train_val_split(data, None, 0.25, seed=3)
    b = train_val_split(data, None, 0.25, seed=3)
    assert a[1].ids == b[1].ids and len(a[1]) == 10
    assert sorted(np.bincount(a[1].labels)) == [5, 5]


@pytest.mark.parametrize("fraction", [0.2, 0.99, 0.01])
def test_a_split_too_small_to_stratify_still_gives_both_sides(fraction):
    """12 videos of 4 classes at 0.2 asks for 2.4 validation videos: fewer than the classes."""
    data = SequenceSet([f"v{i}" for i in range(12)], [np.zeros((2, 3))] * 12, np.repeat(np.arange(4), 3))
    train, val = train_val_split(data, None, fraction, seed=0)
    assert len(train) >= 1 and len(val) >= 1 and len(train) + len(val) == 12
    assert not set(train.ids) & set(val.ids)


def test_max_steps_samples_uniformly(store, tmp_path):
    labels = read_labels(write(tmp_path, "video_id,label\na,x\nb,y\nc,x\nd,y\n"))
    data, _, _ = load_labelled(open_store(store), labels, max_steps=4)
    assert [len(s) for s in data.sequences] == [3, 4, 4, 4]


@pytest.mark.parametrize(
    "text, message",
    [
        ("video_id,label\na,x\nb,y\nc,x\nd,y\nzz,x\n", "not in the store: 'zz'"),
        ("video_id,label\na,x\nb,y\n", "store videos without a label: 'c', 'd'"),
        ("video,label\na,x\n", r"missing \['video_id'\]"),
        ("video_id,label\na,x\na,y\n", "appears more than once"),
        ("video_id,label,split\na,x,holdout\n", "unknown split values"),
        ("video_id,label\na,\n", "line 2 has no video_id or label"),
        ("video_id,label\na,x\nb,NaN\n", "line 3 has no video_id or label"),
        ("video_id,label\na,x\nb,NA\n", "line 3 has no video_id or label"),
    ],
)
def test_bad_labels_are_one_line_errors(store, tmp_path, text, message):
    with pytest.raises(FeatxError, match=message) as err:
        load_labelled(open_store(store), read_labels(write(tmp_path, text)))
    assert "\n" not in str(err.value)


def test_labels_and_ids_with_spaces_around_them_are_the_same_as_without(store, tmp_path):
    labels = read_labels(write(tmp_path, "video_id,label\na , x\nb,y \nc,x\nd, y\n"))
    data, classes, _ = load_labelled(open_store(store), labels)
    assert classes == ["x", "y"] and data.ids == ["a", "b", "c", "d"]


def test_ignore_missing_leaves_out_both_sides(store, tmp_path):
    labels = read_labels(write(tmp_path, "video_id,label\na,x\nb,y\nzz,x\n"))
    data, _, _ = load_labelled(open_store(store), labels, ignore_missing=True)
    assert data.ids == ["a", "b"]
