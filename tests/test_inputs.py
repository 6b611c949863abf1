"""INPUT arguments become (path, video_id) pairs: folders, symlinks, lists."""

import os

import pytest

from featx.errors import FeatxError
from featx.inputs import collect_inputs
from featx.video import probe


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_videos_inside_a_symlinked_sub_folder_are_found_with_ids_under_the_link(tmp_path):
    outside = tmp_path / "elsewhere"
    touch(outside / "clip.mp4")
    data = tmp_path / "data"
    touch(data / "own.mp4")
    os.symlink(outside, data / "linked")
    os.symlink(data, data / "linked" / "loop")  # a link back up the tree is followed once, never in circles
    assert sorted(v.video_id for v in collect_inputs([data])) == ["linked/clip", "own"]


def test_hidden_files_and_folders_are_skipped(tmp_path):
    touch(tmp_path / ".cache" / "a.mp4")
    touch(tmp_path / ".b.mp4")
    touch(tmp_path / "c.mp4")
    assert [v.video_id for v in collect_inputs([tmp_path])] == ["c"]


def test_a_folder_or_fifo_named_in_a_list_is_reported_as_what_it_is(tmp_path):
    (tmp_path / "sub").mkdir()
    os.mkfifo(tmp_path / "pipe.mp4")
    with pytest.raises(FeatxError, match="a folder, not a video file"):
        probe(tmp_path / "sub")
    with pytest.raises(FeatxError, match="not a regular file"):
        probe(tmp_path / "pipe.mp4")
    with pytest.raises(FeatxError, match="no such file"):
        probe(tmp_path / "gone.mp4")


def test_symlinks_named_in_a_list_keep_their_own_names_as_ids(tmp_path):
    target = touch(tmp_path / "v" / "clip.mp4")
    links = tmp_path / "L"
    links.mkdir()
    os.symlink(target, links / "a.mp4")
    os.symlink(target, links / "b.mp4")
    (links / "list.txt").write_text("a.mp4\nb.mp4\n")
    found = collect_inputs([links / "list.txt"])
    assert [v.video_id for v in found] == ["a", "b"] and {v.path for v in found} == {target.resolve()}


def test_a_dangling_link_in_a_folder_is_kept_so_it_becomes_a_failed_row(tmp_path):
    touch(tmp_path / "ok.mp4")
    os.symlink(tmp_path / "gone.mp4", tmp_path / "dangling.mp4")
    assert [v.video_id for v in collect_inputs([tmp_path])] == ["dangling", "ok"]


@pytest.mark.parametrize("video_id", ["../../escaped", "/abs/evil"])
def test_list_ids_that_would_escape_a_folder_are_refused(tmp_path, video_id):
    touch(tmp_path / "v.mp4")
    (tmp_path / "l.csv").write_text(f"path,video_id\nv.mp4,{video_id}\n")
    with pytest.raises(FeatxError, match="cannot be a video id"):
        collect_inputs([tmp_path / "l.csv"])
