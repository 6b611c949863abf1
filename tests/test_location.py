"""Stores on pyarrow filesystems: a file:// URI goes through pyarrow.fs exactly as s3:// or gs:// would."""

import numpy as np
import pytest
from typer.testing import CliRunner

from cli import app
from featx.store.location import RemotePath, store_path
from featx.store import load_features, load_sequences, read_config, read_manifest, store_info
from tests.conftest import TINY_ARGS

runner = CliRunner()


def test_uris_become_remote_paths_and_plain_paths_stay_local(tmp_path):
    remote = store_path(f"file://{tmp_path}/s")
    assert isinstance(remote, RemotePath) and remote.name == "s" and str(remote / "x") == f"file://{tmp_path}/s/x"
    assert not isinstance(store_path(str(tmp_path / "s")), RemotePath)


@pytest.mark.slow
def test_extract_to_a_uri_gives_the_same_store_as_a_local_path(tiny_videos, tmp_path):
    uri = f"file://{tmp_path}/remote"
    for out in (uri, str(tmp_path / "local")):
        result = runner.invoke(app, ["extract", str(tiny_videos), "--out", out, *TINY_ARGS, "--no-progress"])
        assert result.exit_code == 0, result.output
    remote, local = load_sequences(uri), load_sequences(tmp_path / "local")
    assert sorted(remote) == sorted(local) and len(remote) == 4
    for vid in local:
        np.testing.assert_array_equal(remote[vid], local[vid])
    assert read_config(uri).differences(read_config(tmp_path / "local")) == []
    assert store_info(uri)["videos_ok"] == 4 and len(read_manifest(uri)) == 4
    assert list(load_features(uri, columns=["video_id"]).columns) == ["video_id"]
    assert not list((tmp_path / "remote").rglob("*.tmp"))  # written straight to final names
    again = runner.invoke(app, ["extract", str(tiny_videos), "--out", uri, *TINY_ARGS, "--no-progress"])
    assert "skipped 4" in again.output  # resumes like a local store
    info = runner.invoke(app, ["info", uri])
    assert info.exit_code == 0 and "4" in info.output
