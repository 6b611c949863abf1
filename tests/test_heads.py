import re

import pytest
import torch

from featx.errors import FeatxError
from seqmodels.registry import build_head, heads

HEADS = heads("classification")

D, C = 12, 3


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_gives_logits_and_the_same_structure_in_train_and_eval(name):
    torch.manual_seed(0)
    head = build_head(name, D, C)
    x, mask = torch.randn(4, 9, D), torch.ones(4, 9, dtype=torch.bool)
    for mode in (True, False):
        out = head.train(mode)(x, mask)
        assert out.logits.shape == (4, C)
        assert (out.updates is not None) == HEADS[name].skip
        if out.updates is not None:
            assert out.updates.shape == (4, 9)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_padding_with_junk_never_changes_the_result(name):
    torch.manual_seed(0)
    head = build_head(name, D, C).eval()
    seq = torch.randn(1, 7, D)
    padded = torch.cat([seq, 1e3 * torch.randn(1, 5, D)], dim=1)  # junk after the real steps
    mask = torch.tensor([[True] * 7 + [False] * 5])
    with torch.no_grad():
        alone = head(seq, torch.ones(1, 7, dtype=torch.bool)).logits
        with_junk = head(padded, mask).logits
    torch.testing.assert_close(with_junk, alone, rtol=1e-5, atol=1e-5)


def test_unknown_head_and_bad_option_are_clear_errors():
    with pytest.raises(FeatxError, match="did you mean lstm"):
        build_head("lstn", D, C)
    with pytest.raises(FeatxError, match="bad option for head 'avgpool'"):
        build_head("avgpool", D, C, units=3)


@pytest.mark.parametrize("name, options", [("lstm", {"hidden": -5}), ("avgpool", {"dropout": 2}), ("slow-fusion", {"kernel": 2}),
                                           ("transformer", {"heads": 3}), ("skip-gru", {"hidden": 0}), ("lstm", {"layers": 0})])
def test_out_of_range_head_options_are_one_line_errors(name, options):
    with pytest.raises(FeatxError, match=f"bad option for head '{name}'") as err:
        build_head(name, D, C, **options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, options, message", [
    ("lstm", {"bidirectional": "maybe"}, "bidirectional must be true or false, not 'maybe'"),
    ("skip-gru", {"update_bias": float("nan")}, "update_bias must be a finite number, not nan"),
    ("skip-lstm", {"update_bias": True}, "update_bias must be a finite number, not True"),
    ("lstm", {"bogus": 1}, "no option 'bogus' (its options: bidirectional, dropout, hidden, input_norm, layers, readout)"),
])
def test_options_of_the_wrong_type_or_unknown_are_named_not_passed_to_torch(name, options, message):
    with pytest.raises(FeatxError, match=re.escape(message)):
        build_head(name, 8, 3, **options)


def test_each_task_lists_its_own_heads_from_the_one_registry():
    assert list(heads("classification")) == ["lstm", "avgpool", "late-fusion", "maxpool", "skip-gru", "skip-lstm",
                                             "slow-fusion", "transformer"]
    assert list(heads("multilabel")) == ["lstm", "gru", "skip-gru", "skip-lstm"]
    assert list(heads("detection")) == ["actionformer", "linear", "montes-lstm", "skip-gru", "skip-lstm"]
    assert heads("detection")["actionformer"].defaults["lr"] == 2e-4 and heads("multilabel")["gru"].defaults["lr"] == 1e-2
    assert heads("detection")["montes-lstm"].outputs(4) == 5 and heads("detection")["actionformer"].outputs(4) == 4


def test_a_head_registered_at_its_definition_trains_under_its_defaults(monkeypatch):
    from seqmodels import registry
    from seqmodels.heads.pooling import PoolHead
    from seqmodels.runs import TrainConfig

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # registered for this test only

    @registry.register_head("tiny-pool", classification=dict(epochs=3, lr=0.5))
    def tiny_pool(in_dim: int, num_classes: int, dropout: float = 0.0) -> PoolHead:
        return PoolHead(in_dim, num_classes, "avg", hidden=4, dropout=dropout)

    assert build_head("tiny-pool", D, C)(torch.randn(2, 5, D), torch.ones(2, 5, dtype=torch.bool)).logits.shape == (2, C)
    config = TrainConfig.with_defaults("classification", "tiny-pool")
    assert (config.epochs, config.lr, config.batch_size) == (3, 0.5, 32)
    with pytest.raises(FeatxError, match="bad option for head 'tiny-pool': no option 'hidden'"):
        build_head("tiny-pool", D, C, hidden=8)
    with pytest.raises(FeatxError, match="'tiny-pool' is not a detection head"):
        build_head("tiny-pool", D, C, task="detection")


def test_a_detection_head_named_for_classification_says_how_to_train_it():
    with pytest.raises(FeatxError, match="montes-lstm is a detection head: train it with --annotations"):
        build_head("montes-lstm", D, C)
