"""The shared training protocol against hand-computed cases: weight-decay groups, warm-up + cosine, the weight
EMA, and model selection that only ever looks at held-out training videos."""

import math

import numpy as np
import pytest
import torch

from featx.errors import FeatxError
from seqmodels.protocol import Protocol, WeightEMA, fit, lr_factor, param_groups, split_holdout


def test_weight_decay_goes_to_weight_matrices_and_kernels_only():
    model = torch.nn.Sequential(torch.nn.Conv1d(3, 4, 3), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    decay, plain = param_groups(model, 0.05)
    assert {tuple(p.shape) for p in decay["params"]} == {(4, 3, 3), (2, 4)}
    assert {tuple(p.shape) for p in plain["params"]} == {(4,), (2,)} and len(plain["params"]) == 4  # biases, norm
    assert decay["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0


def test_learning_rate_warms_up_linearly_then_follows_a_cosine_to_zero():
    assert [lr_factor(s, 4, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(4, 4, 14) == 1.0
    assert lr_factor(9, 4, 14) == pytest.approx(0.5)  # half-way through the cosine
    assert lr_factor(14, 4, 14) == pytest.approx(0.0)
    assert lr_factor(6, 4, 14) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 10)))


def test_weight_ema_uses_the_warm_decay_min_of_decay_and_1_plus_n_over_10_plus_n():
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(0.0)
    ema = WeightEMA(model, decay=0.999)
    model.weight.data.fill_(1.0)
    ema.update(model)  # n = 1: decay 2 / 11
    assert float(ema.model.weight) == pytest.approx(1 - 2 / 11)
    ema.update(model)  # n = 2: decay 3 / 12, from 9 / 11
    assert float(ema.model.weight) == pytest.approx((9 / 11) * 3 / 12 + 9 / 12)


def test_holdout_is_a_seeded_share_of_the_training_items():
    train, held = split_holdout(list(range(20)), 0.25, seed=3)
    assert len(held) == 5 and sorted(train + held) == list(range(20))
    assert split_holdout(list(range(20)), 0.25, seed=3) == (train, held)
    assert split_holdout(list(range(20)), 0.0, seed=3) == (list(range(20)), [])


def _pull(targets: np.ndarray):
    """A one-parameter model and a loss pulling it towards each item's target."""
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(0.0)

    def loss(model, items, rng, train):
        return ((model.weight[0, 0] - torch.as_tensor(targets[items], dtype=torch.float32)) ** 2).mean()

    return model, loss


def test_early_stopping_keeps_the_epoch_of_lowest_held_out_loss():
    items = list(range(20))
    _, held = split_holdout(items, 0.25, seed=0)
    targets = np.full(20, 5.0)
    targets[held] = 0.0  # the held-out videos disagree: their loss only grows as the weight moves to 5
    model, loss = _pull(targets)
    protocol = Protocol(epochs=30, batch_size=5, lr=0.05, weight_decay=0.0, warmup_epochs=0, holdout=0.25, patience=3)
    best, history = fit(model, items, loss, protocol, report=lambda m: {"w": float(m.weight)})
    losses = [row["holdout_loss"] for row in history]
    chosen = int(np.argmin(losses))
    assert len(history) == chosen + 1 + 3  # stopped `patience` epochs after the best one
    assert float(best.weight) == pytest.approx(history[chosen]["w"])
    assert float(best.weight) < history[-1]["w"]


def test_without_holdout_every_epoch_runs_and_the_ema_is_returned():
    model, loss = _pull(np.full(8, 2.0))
    protocol = Protocol(epochs=12, batch_size=4, lr=0.1, weight_decay=0.0, warmup_epochs=1)
    best, history = fit(model, list(range(8)), loss, protocol, report=lambda m: {"w": float(m.weight)})
    assert len(history) == 12 and "holdout_loss" not in history[0]
    assert float(best.weight) == pytest.approx(history[-1]["w"])
    assert float(best.weight) != pytest.approx(float(model.weight.detach()))  # the average, not the last weights


@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(lr=float("nan")), dict(epochs=0), dict(holdout=1.0),
                                 dict(ema_decay=1.0), dict(warmup_epochs=-1)])
def test_bad_protocol_values_are_one_line_errors(bad):
    with pytest.raises(FeatxError):
        Protocol(**{"epochs": 10, "batch_size": 2, "lr": 1e-3, **bad})


def test_a_diverging_loss_stops_with_an_error_not_nan_weights():
    model, _ = _pull(np.zeros(4))
    with pytest.raises(FeatxError, match="diverged"):
        fit(model, list(range(4)), lambda m, items, rng, train: m.weight.sum() * float("nan"),
            Protocol(epochs=2, batch_size=2, lr=1e-3, warmup_epochs=0))
