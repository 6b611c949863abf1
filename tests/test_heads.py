import re

import pytest
import torch

from featx.errors import FeatxError
from seqmodels.heads import HEADS, SKIP_HEADS, build_head
from seqmodels.heads.skip_rnn import SkipRNNHead, binarize, budget_loss, update_fraction

D, C = 12, 3


@pytest.mark.parametrize("name", sorted(HEADS))
def test_every_head_gives_logits_and_the_same_structure_in_train_and_eval(name):
    torch.manual_seed(0)
    head = build_head(name, D, C)
    x, mask = torch.randn(4, 9, D), torch.ones(4, 9, dtype=torch.bool)
    for mode in (True, False):
        out = head.train(mode)(x, mask)
        assert out.logits.shape == (4, C)
        assert (out.updates is not None) == (name in SKIP_HEADS)
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


def test_binarize_rounds_forward_and_passes_the_gradient_straight_through():
    x = torch.tensor([0.2, 0.49, 0.51, 0.9], requires_grad=True)
    y = binarize(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0]
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]  # d round / dx taken as 1, not 0


def test_gate_gradient_matches_the_straight_through_definition():
    # T = 2: u_1 = 1 always; u_2 = round(ũ_2), ũ_2 = Δũ_1 = sigmoid(w · c_1 + b). With the straight-through
    # estimator d u_2 / d b = sigmoid'(z) = s (1 - s), with z computed independently from torch's LSTMCell.
    torch.manual_seed(1)
    head = SkipRNNHead(D, C, cell="lstm", hidden=5)
    x = torch.randn(1, 2, D)
    out = head(x, torch.ones(1, 2, dtype=torch.bool))
    out.updates[0, 1].backward()
    with torch.no_grad():
        _, c1 = head.cell(head.norm(x)[:, 0])
        s = torch.sigmoid(head.gate(c1))[0, 0]
    assert head.gate.bias.grad.item() == pytest.approx(float(s * (1 - s)), rel=1e-5)


def _forced_gate(cell: str, delta_logit: float) -> SkipRNNHead:
    torch.manual_seed(2)
    head = SkipRNNHead(D, C, cell=cell, hidden=6)
    with torch.no_grad():
        head.gate.weight.zero_()
        head.gate.bias.fill_(delta_logit)  # Δũ = sigmoid(delta_logit) at every update
    return head.eval()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_accumulated_update_probability_gives_the_hand_computed_pattern(cell):
    # Δũ = 0.3: ũ = 1 (update), 0.3 (skip), 0.6 (update), 0.3 (skip), 0.6 (update), ...
    head = _forced_gate(cell, torch.logit(torch.tensor(0.3)).item())
    out = head(torch.randn(2, 7, D), torch.ones(2, 7, dtype=torch.bool))
    assert out.updates[0].tolist() == [1, 0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_skipped_steps_copy_the_state_exactly(cell):
    head = _forced_gate(cell, -12.0)  # Δũ ~ 6e-6: after the first step every step is skipped
    x = torch.randn(1, 6, D)
    state = head.initial_state(1, x)
    states = []
    with torch.no_grad():
        for t in range(6):
            state, u = head.step(head.project(head.norm(x)[:, t]), state)
            states.append({k: v.clone() for k, v in state.items() if k in ("h", "c")})
    for later in states[1:]:
        for key in later:
            assert torch.equal(later[key], states[0][key])


@pytest.mark.slow
def test_the_gate_for_a_step_depends_only_on_earlier_steps():
    torch.manual_seed(3)
    head = SkipRNNHead(D, C, cell="gru", hidden=6)
    with torch.no_grad():
        head.gate.bias.fill_(-0.2)  # mixed updates and skips
    x = torch.randn(3, 10, D)
    mask = torch.ones(3, 10, dtype=torch.bool)
    base = head.eval()(x, mask).updates
    for k in range(10):
        changed = x.clone()
        changed[:, k:] = torch.randn(3, 10 - k, D) * 5
        assert torch.equal(head(changed, mask).updates[:, : k + 1], base[:, : k + 1])


def test_budget_loss_and_update_fraction():
    updates = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    assert budget_loss(updates, 0.5).item() == pytest.approx(0.5 * (2 + 2) / 2)
    assert update_fraction(updates, mask) == pytest.approx(4 / 7)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_cell_equations_match_torchs_own_cells(cell):
    torch.manual_seed(4)
    head = SkipRNNHead(D, C, cell=cell, hidden=7)
    x = torch.randn(5, D)
    state = head.initial_state(5, x)
    state["h"] = torch.randn(5, 7)
    if cell == "lstm":
        state["c"] = torch.randn(5, 7)
        h_ref, c_ref = head.cell(x, (state["h"], state["c"]))
        h, c = head._cell(head.project(x), state)
        torch.testing.assert_close(c, c_ref)
    else:
        h_ref = head.cell(x, state["h"])
        h, _ = head._cell(head.project(x), state)
    torch.testing.assert_close(h, h_ref)


@pytest.mark.parametrize("name, options, message", [
    ("lstm", {"bidirectional": "maybe"}, "bidirectional must be true or false, not 'maybe'"),
    ("skip-gru", {"update_bias": float("nan")}, "update_bias must be a finite number, not nan"),
    ("skip-lstm", {"update_bias": True}, "update_bias must be a finite number, not True"),
    ("lstm", {"bogus": 1}, "no option 'bogus' (its options: bidirectional, dropout, hidden, input_norm, layers, readout)"),
])
def test_options_of_the_wrong_type_or_unknown_are_named_not_passed_to_torch(name, options, message):
    with pytest.raises(FeatxError, match=re.escape(message)):
        build_head(name, 8, 3, **options)
