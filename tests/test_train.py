import numpy as np
import pytest
import torch

from seqmodels.data import SequenceSet
from seqmodels.classifier import TrainConfig, load_run, predict_scores, save_run, train

D = 16
CLASSES = ["a_then_b", "b_then_a", "c_then_d", "d_then_c"]


def order_pairs(n: int, seed: int) -> SequenceSet:
    """Classes that differ only in order: the first half of the steps near one prototype, the second half
    near another; variable lengths (padding in every batch)."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(99).normal(size=(4, D))
    halves = {0: (0, 1), 1: (1, 0), 2: (2, 3), 3: (3, 2)}
    seqs, labels = [], []
    for i in range(n):
        label = i % 4
        half = int(rng.integers(4, 9))
        first, second = halves[label]
        steps = np.concatenate([np.repeat(protos[first][None], half, 0), np.repeat(protos[second][None], half, 0)])
        seqs.append((steps + 0.3 * rng.normal(size=steps.shape)).astype(np.float32))
        labels.append(label)
    return SequenceSet([f"v{i}" for i in range(n)], seqs, np.array(labels))


def accuracies(run, data) -> tuple[float, float]:
    """(accuracy, accuracy at telling the pairs apart): classes 0, 1 form one pair, 2, 3 the other."""
    predicted = predict_scores(run.model, data)[0].argmax(1)
    return float((predicted == data.labels).mean()), float((predicted // 2 == data.labels // 2).mean())


@pytest.fixture(scope="module")
def order_data():
    return order_pairs(160, 0), order_pairs(80, 1)


@pytest.mark.slow
@pytest.mark.parametrize("head, options", [("lstm", {"hidden": 32}), ("transformer", {"width": 32, "heads": 2})])
def test_order_aware_heads_read_order_that_pooling_cannot(order_data, head, options):
    train_set, val_set = order_data
    cfg = dict(epochs=25, patience=25, batch_size=16)
    aware = train(train_set, val_set, CLASSES, TrainConfig(head=head, head_options=options, **cfg), progress=False)
    pool = train(train_set, val_set, CLASSES, TrainConfig(head="avgpool", head_options={"hidden": 32}, **cfg), progress=False)
    aware_acc, _ = accuracies(aware, val_set)
    pool_acc, pool_pairs = accuracies(pool, val_set)
    assert aware_acc >= 0.95
    assert pool_pairs >= 0.95 and pool_acc <= 0.60  # pooling tells the pairs apart, never the order inside



@pytest.mark.slow
def test_training_is_seeded_and_deterministic(order_data):
    train_set, val_set = order_data
    cfg = TrainConfig(head="skip-gru", epochs=3, head_options={"hidden": 8}, budget=0.01)
    a = train(train_set, val_set, CLASSES, cfg, progress=False)
    b = train(train_set, val_set, CLASSES, cfg, progress=False)
    assert a.history[-1]["val_loss"] == b.history[-1]["val_loss"]
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key])


@pytest.mark.slow
def test_a_reloaded_checkpoint_predicts_identically(order_data, tmp_path):
    train_set, val_set = order_data
    run = train(train_set, val_set, CLASSES, TrainConfig(head="slow-fusion", epochs=2), progress=False)
    save_run(run, tmp_path / "run")
    again = load_run(tmp_path / "run")
    assert again.classes == CLASSES and again.config == run.config and again.in_dim == D
    np.testing.assert_array_equal(predict_scores(again.model, val_set)[0], predict_scores(run.model, val_set)[0])


@pytest.mark.slow
def test_the_budget_loss_makes_skip_heads_update_less(order_data):
    train_set, val_set = order_data
    base = dict(head="skip-lstm", epochs=6, batch_size=8, head_options={"hidden": 16})
    free = train(train_set, val_set, CLASSES, TrainConfig(**base, budget=0.0), progress=False)
    costly = train(train_set, val_set, CLASSES, TrainConfig(**base, budget=0.05), progress=False)
    assert costly.history[-1]["val_update_fraction"] < free.history[-1]["val_update_fraction"]
