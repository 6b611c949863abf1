"""The Python interface: featx.extract / featx.embed take the CLI's options as keywords and give what the CLI
gives (the CLI calls exactly them)."""

import numpy as np
import pytest

import featx
from featx.errors import FeatxError

TINY = dict(backbone="test_efficientnet", weights="random-init", workers=0, device="cpu", progress=False)


def test_extract_writes_a_store_and_embed_gives_the_same_rows_in_memory(tiny_videos, tmp_path):
    summary = featx.extract(tiny_videos, tmp_path / "store", fps=4, **TINY)
    assert (summary.ok, summary.failed) == (4, 0)
    store = featx.open_store(tmp_path / "store")
    assert store.config.fps == 4 and store.config.backbone == "test_efficientnet"
    video = sorted(tiny_videos.glob("*.mp4"))[0]
    times, features = featx.embed(video, fps=4, **TINY)
    stored = store.rows(ids=[video.stem]).sort_values("step")
    np.testing.assert_array_equal(features, np.stack(stored.feature.to_numpy()).astype(np.float32))
    np.testing.assert_array_equal(times.t_start, stored.t_start)
    assert list(times.columns) == ["t_start", "t_end", "frame_start", "frame_end"] and features.dtype == np.float32
    again = featx.extract([str(video)], tmp_path / "store", fps=4, **TINY)
    assert (again.ok, again.skipped) == (0, 1)  # resumed, as the CLI


def test_unknown_options_and_bad_values_are_one_error_line(tiny_videos, tmp_path):
    with pytest.raises(FeatxError, match="unknown option.*fsp"):
        featx.extract(tiny_videos, tmp_path / "s", fsp=2)
    with pytest.raises(FeatxError, match="--part-mb must be a positive number"):
        featx.extract(tiny_videos, tmp_path / "s", part_mb=float("nan"), **TINY)
    assert not (tmp_path / "s").exists()


def test_embed_of_a_file_that_is_not_a_video_says_why(tmp_path):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(FeatxError, match="fake.mp4: "):
        featx.embed(fake, **TINY)
    with pytest.raises(FeatxError, match="no such video file"):
        featx.embed(tmp_path / "missing.mp4", **TINY)
