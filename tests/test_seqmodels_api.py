"""The Python interface to stage 2: seqmodels.train / load_run give what `featx train-head`, `evaluate` and
`predict` give (the commands call exactly them)."""

import json

import pandas as pd
import pytest

import featx
import seqmodels
from featx.errors import FeatxError


@pytest.mark.slow
def test_train_then_load_run_evaluates_and_predicts_as_the_commands_do(labelled_store, tmp_path):
    store, labels = labelled_store
    epochs = []
    run = seqmodels.train(store, tmp_path / "run", labels=labels, head="avgpool", epochs=2, show=epochs.append)
    assert (run.task, run.head) == ("classification", "avgpool") and len(run.classes) == 4
    assert len(epochs) == 2 and epochs[0].startswith("epoch | train loss")
    assert run.report[0].startswith("trained 2 epochs on rgb features") and str(tmp_path / "run") in run.report[-1]
    assert run.metrics == json.loads((tmp_path / "run" / "metrics.json").read_text())
    loaded = seqmodels.load_run(tmp_path / "run")
    metrics = loaded.evaluate(store, labels=labels)
    assert metrics["videos"] == run.metrics["videos"] == 4 and metrics["accuracy"] == run.metrics["accuracy"]
    table = loaded.predict(store, top_k=2)
    assert isinstance(table, pd.DataFrame) and len(table) == 16
    assert list(table.columns) == ["video_id", "label_1", "score_1", "label_2", "score_2"]
    with pytest.raises(FeatxError, match="holds a run already"):
        seqmodels.train(store, tmp_path / "run", labels=labels, epochs=1)
    handle = featx.open_store(store)  # a Store goes where a store's path does
    other = seqmodels.train(handle, tmp_path / "run2", labels=labels, head="avgpool", epochs=2)
    assert other.metrics["accuracy"] == run.metrics["accuracy"]  # same data, same seed: the same run
    assert len(other.predict(handle)) == 16


def test_unknown_settings_and_folders_that_are_not_runs_are_one_error_line(tmp_path):
    with pytest.raises(FeatxError, match="unknown setting.*epoch"):
        seqmodels.train(tmp_path / "s", tmp_path / "r", labels=tmp_path / "l.csv", epoch=3)
    with pytest.raises(FeatxError, match="not a training run"):
        seqmodels.load_run(tmp_path)
