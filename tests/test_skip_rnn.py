"""Skip RNN cells (seqmodels.heads.skip_rnn) against hand-computed steps and torch's own cells, and the
authors' initialisation (github.com/imatge-upc/skiprnn-2017-telecombcn)."""

import math

import pytest
import torch

from featx.errors import FeatxError
from seqmodels.heads import build_head
from seqmodels.heads.skip_rnn import SkipRNNHead, binarize, budget_loss, update_fraction
from seqmodels.protocol import param_groups

D, C = 12, 3
CELLS = [("lstm", "reference"), ("gru", "reference"), ("gru", "torch")]


def _sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_binarize_rounds_forward_and_passes_the_gradient_straight_through():
    x = torch.tensor([0.2, 0.49, 0.51, 0.9], requires_grad=True)
    y = binarize(x)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0]
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]  # d round / dx taken as 1, not 0


def _torch_lstm_cell(layer) -> torch.nn.LSTMCell:
    """torch's LSTMCell holding the layer's weights: ours are ordered [i, f, o, g], torch's [i, f, g, o]."""
    H = layer.hidden
    order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
    ref = torch.nn.LSTMCell(layer.weight_ih.shape[1], H)
    with torch.no_grad():
        ref.weight_ih.copy_(layer.weight_ih[order])
        ref.weight_hh.copy_(layer.weight_hh[order])
        ref.bias_ih.copy_(layer.bias[order])
        ref.bias_hh.zero_()
    return ref


def test_lstm_step_is_torchs_lstm_cell_and_the_gate_reads_the_new_cell_state():
    torch.manual_seed(4)
    head = SkipRNNHead(D, C, cell="lstm", hidden=7)
    x, h, c = torch.randn(5, D), torch.randn(5, 7), torch.randn(5, 7)
    state = {"h": h, "c": c, "prob": torch.ones(5, 1), "cum": torch.zeros(5, 1)}  # ũ = 1: update
    new, u = head.step(head.project(x), state)
    h_ref, c_ref = _torch_lstm_cell(head.layers[0])(x, (h, c))
    assert u.flatten().tolist() == [1.0] * 5
    torch.testing.assert_close(new["h"], h_ref)
    torch.testing.assert_close(new["c"], c_ref)
    torch.testing.assert_close(new["prob"], torch.sigmoid(c_ref @ head.gate.weight.T + head.gate.bias))


def test_gru_torch_step_is_torchs_gru_cell():
    torch.manual_seed(5)
    head = SkipRNNHead(D, C, cell="gru", gru="torch", hidden=7)
    layer = head.layers[0]
    ref = torch.nn.GRUCell(D, 7)
    with torch.no_grad():
        ref.weight_ih.copy_(layer.weight_ih), ref.weight_hh.copy_(layer.weight_hh)
        ref.bias_ih.copy_(layer.bias), ref.bias_hh.copy_(layer.bias_hh)
    x, h = torch.randn(5, D), torch.randn(5, 7)
    new, _ = head.step(head.project(x), {"h": h, "prob": torch.ones(5, 1), "cum": torch.zeros(5, 1)})
    torch.testing.assert_close(new["h"], ref(x, h))


def test_gru_reference_step_by_hand():
    # D = H = 1, the authors' GRUCell: r, u = σ(W_g [x, h] + b_g); c = tanh(W_c [x, r h] + b_c);
    # h' = u h + (1 - u) c; then Δũ = σ(w h' + b).
    head = SkipRNNHead(1, 1, cell="gru", hidden=1, input_norm=False)
    layer = head.layers[0]
    with torch.no_grad():  # rows [r, u, candidate]
        layer.weight_ih.copy_(torch.tensor([[0.5], [-1.0], [2.0]]))
        layer.weight_hh.copy_(torch.tensor([[0.3], [0.7], [-1.5]]))
        layer.bias.copy_(torch.tensor([1.0, 1.0, 0.1]))
        head.gate.weight.fill_(2.0), head.gate.bias.fill_(-0.5)
    x, h = 0.8, -0.4
    r, u = _sig(0.5 * x + 0.3 * h + 1.0), _sig(-1.0 * x + 0.7 * h + 1.0)
    cand = math.tanh(2.0 * x - 1.5 * (r * h) + 0.1)
    h_new = u * h + (1 - u) * cand
    state = {"h": torch.tensor([[h]]), "prob": torch.ones(1, 1), "cum": torch.zeros(1, 1)}
    new, _ = head.step(head.project(torch.tensor([[x]])), state)
    assert new["h"].item() == pytest.approx(h_new, rel=1e-6)
    assert new["prob"].item() == pytest.approx(_sig(2.0 * h_new - 0.5), rel=1e-6)


def test_two_stacked_lstm_layers_chain_candidates_and_the_gate_reads_the_top_layer():
    torch.manual_seed(6)
    head = SkipRNNHead(D, C, cell="lstm", hidden=5, layers=2)
    x = torch.randn(3, D)
    state = head.initial_state(3, x)
    h1, c1 = _torch_lstm_cell(head.layers[0])(x, (state["h0"], state["c0"]))
    h2, c2 = _torch_lstm_cell(head.layers[1])(h1, (state["h"], state["c"]))  # layer 2 reads layer 1's output
    new, u = head.step(head.project(x), state)  # step 1: ũ_1 = 1
    assert u.flatten().tolist() == [1.0] * 3
    for key, ref in (("h0", h1), ("c0", c1), ("h", h2), ("c", c2)):
        torch.testing.assert_close(new[key], ref)
    torch.testing.assert_close(new["prob"], torch.sigmoid(c2 @ head.gate.weight.T + head.gate.bias))


def test_initial_state_is_learned():
    torch.manual_seed(7)
    head = SkipRNNHead(D, C, cell="lstm", hidden=6, layers=2)
    state = head.initial_state(4, torch.zeros(1))
    torch.testing.assert_close(state["h"], head.layers[1].h0.expand(4, -1))
    torch.testing.assert_close(state["c0"], head.layers[0].c0.expand(4, -1))
    assert state["prob"].flatten().tolist() == [1.0] * 4 and state["cum"].flatten().tolist() == [0.0] * 4
    out = head(torch.randn(4, 3, D), torch.ones(4, 3, dtype=torch.bool))
    out.logits.sum().backward()
    for layer in head.layers:
        assert layer.h0.grad.abs().sum() > 0 and layer.c0.grad.abs().sum() > 0
    # 1-D, like biases: the protocol's weight decay (matrices only) leaves it alone
    plain = param_groups(head, 0.1)[1]["params"]
    assert any(p is head.layers[0].h0 for p in plain)


def test_initialisation_is_the_authors():
    torch.manual_seed(8)
    H = 10
    lstm = SkipRNNHead(D, C, cell="lstm", hidden=H).layers[0]
    # forget gate (ours: block 2 of [i, f, o, g]) at 1, the rest at 0; Glorot over the [x, h] matrix
    assert lstm.bias[H : 2 * H].tolist() == [1.0] * H
    assert lstm.bias[:H].abs().sum() == 0 and lstm.bias[2 * H :].abs().sum() == 0
    bound = math.sqrt(6 / (D + H + 4 * H))
    for w in (lstm.weight_ih, lstm.weight_hh):
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    gru = SkipRNNHead(D, C, cell="gru", hidden=H).layers[0]
    assert gru.bias[: 2 * H].tolist() == [1.0] * (2 * H)  # reset and update gates start at 1
    assert gru.bias[2 * H :].abs().sum() == 0
    assert gru.weight_hh[2 * H :].abs().max() <= math.sqrt(6 / (D + H + H))  # the candidate's own matrix
    assert gru.h0.std() > 0.5  # s_0 ~ N(0, 1), as theirs


def test_gate_gradient_matches_the_straight_through_definition():
    # T = 2: u_1 = 1 always; u_2 = round(ũ_2), ũ_2 = Δũ_1 = sigmoid(w · c_1 + b). With the straight-through
    # estimator d u_2 / d b = sigmoid'(z) = s (1 - s), with c_1 from torch's LSTMCell.
    torch.manual_seed(1)
    head = SkipRNNHead(D, C, cell="lstm", hidden=5)
    x = torch.randn(1, 2, D)
    out = head(x, torch.ones(1, 2, dtype=torch.bool))
    out.updates[0, 1].backward()
    with torch.no_grad():
        state = head.initial_state(1, x)
        _, c1 = _torch_lstm_cell(head.layers[0])(head.norm(x)[:, 0], (state["h"], state["c"]))
        s = torch.sigmoid(head.gate(c1))[0, 0]
    assert head.gate.bias.grad.item() == pytest.approx(float(s * (1 - s)), rel=1e-5)


def _forced_gate(cell: str, gru: str, delta_logit: float, layers: int = 1) -> SkipRNNHead:
    torch.manual_seed(2)
    head = SkipRNNHead(D, C, cell=cell, gru=gru, hidden=6, layers=layers)
    with torch.no_grad():
        head.gate.weight.zero_()
        head.gate.bias.fill_(delta_logit)  # Δũ = sigmoid(delta_logit) at every update
    return head.eval()


@pytest.mark.parametrize("cell, gru", CELLS)
def test_accumulated_update_probability_gives_the_hand_computed_pattern(cell, gru):
    # Δũ = 0.3: ũ = 1 (update), 0.3 (skip), 0.6 (update), 0.3 (skip), 0.6 (update), ...
    head = _forced_gate(cell, gru, torch.logit(torch.tensor(0.3)).item())
    out = head(torch.randn(2, 7, D), torch.ones(2, 7, dtype=torch.bool))
    assert out.updates[0].tolist() == [1, 0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("cell, gru", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_skipped_steps_copy_the_state_exactly(cell, gru, layers):
    head = _forced_gate(cell, gru, -12.0, layers)  # Δũ ~ 6e-6: after the first step every step is skipped
    x = torch.randn(1, 6, D)
    state = head.initial_state(1, x)
    states = []
    with torch.no_grad():
        for t in range(6):
            state, u = head.step(head.project(head.norm(x)[:, t]), state)
            states.append({k: v.clone() for k, v in state.items() if k not in ("prob", "cum")})
    assert len(states[0]) == (2 if cell == "lstm" else 1) * layers
    for later in states[1:]:
        for key in later:
            assert torch.equal(later[key], states[0][key])


@pytest.mark.parametrize("options", [{"layers": 2}, {"gru": "torch"}])
def test_padding_with_junk_never_changes_the_result_of_stacked_and_torch_cells(options):
    torch.manual_seed(0)
    head = build_head("skip-gru", D, C, **options).eval()
    seq = torch.randn(1, 7, D)
    padded = torch.cat([seq, 1e3 * torch.randn(1, 5, D)], dim=1)
    mask = torch.tensor([[True] * 7 + [False] * 5])
    with torch.no_grad():
        alone = head(seq, torch.ones(1, 7, dtype=torch.bool))
        with_junk = head(padded, mask)
    torch.testing.assert_close(with_junk.logits, alone.logits, rtol=1e-5, atol=1e-5)
    assert with_junk.updates[0, 7:].abs().sum() == 0


def test_unroll_gives_the_output_after_every_step():
    torch.manual_seed(9)
    head = _forced_gate("gru", "reference", torch.logit(torch.tensor(0.3)).item())
    x = torch.randn(2, 5, D)
    outputs, updates, state = head.unroll(x, torch.ones(2, 5, dtype=torch.bool))
    assert len(outputs) == 5 and torch.equal(outputs[-1], state["h"])
    assert torch.equal(outputs[1], outputs[0])  # step 2 skipped: its output is step 1's


@pytest.mark.slow
def test_the_gate_for_a_step_depends_only_on_earlier_steps():
    torch.manual_seed(3)
    head = SkipRNNHead(D, C, cell="gru", hidden=6)
    with torch.no_grad():
        head.gate.bias.fill_(-0.2)  # mixed updates and skips
    x = torch.randn(3, 10, D)
    mask = torch.ones(3, 10, dtype=torch.bool)
    base = head.eval()(x, mask).updates
    assert 0 < base.sum() < base.numel()
    for k in range(10):
        changed = x.clone()
        changed[:, k:] = torch.randn(3, 10 - k, D) * 5
        assert torch.equal(head(changed, mask).updates[:, : k + 1], base[:, : k + 1])


def test_budget_loss_and_update_fraction():
    updates = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    assert budget_loss(updates, 0.5).item() == pytest.approx(0.5 * (2 + 2) / 2)
    assert update_fraction(updates, mask) == pytest.approx(4 / 7)


@pytest.mark.parametrize("name, options, message", [
    ("skip-gru", {"gru": "keras"}, "gru must be reference or torch, not 'keras'"),
    ("skip-lstm", {"gru": "torch"}, "gru applies to skip-gru only"),
    ("skip-lstm", {"layers": 0}, "layers=0 must be a positive integer"),
    ("skip-lstm", {"forget_bias": "1"}, "forget_bias must be a finite number"),
    ("skip-gru", {"forget_bias": 0.0}, "forget_bias applies to skip-lstm only"),
])
def test_bad_skip_options_are_one_line_errors(name, options, message):
    with pytest.raises(FeatxError, match=f"bad option for head '{name}'.*{message}"):
        build_head(name, D, C, **options)


def test_open_gates_update_every_step_and_released_gates_skip_again():
    torch.manual_seed(0)
    head = SkipRNNHead(D, C, cell="gru", hidden=8, update_bias=-20.0)  # Δũ ≈ 0: only step 1 would update
    x, mask = torch.randn(2, 9, D), torch.ones(2, 9, dtype=torch.bool)
    assert head(x, mask).updates.sum(1).tolist() == [1.0, 1.0]
    head.gates_open = True
    assert head(x, mask).updates.tolist() == [[1.0] * 9] * 2
    head.gates_open = False
    assert head(x, mask).updates.sum(1).tolist() == [1.0, 1.0]


def test_gate_warmup_holds_the_gates_open_for_its_first_epochs_then_releases_them():
    from seqmodels.protocol import Protocol, fit

    torch.manual_seed(0)
    model = build_head("skip-gru", D, C, task="multilabel", update_bias=-20.0)
    x, mask = torch.randn(4, 10, D), torch.ones(4, 10, dtype=torch.bool)
    targets = (torch.rand(4, 10, C) > 0.5).float()

    def loss(m, items, rng, train):
        out = m(x[items], mask[items])
        return torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets[items])

    seen = []

    def report(ema_model):
        with torch.no_grad():
            seen.append(update_fraction(ema_model(x, mask).updates, mask))
        return {}

    trained, history = fit(model, [0, 1, 2, 3], loss, Protocol(epochs=4, batch_size=2, lr=1e-3, gate_warmup=2), report)
    assert seen[:2] == [1.0, 1.0]  # the EMA model reported with open gates during the warm-up
    assert seen[2] < 0.5 and seen[3] < 0.5  # released: the closed gate (bias -20) skips again
    assert not any(getattr(m, "gates_open", False) for m in trained.modules())


@pytest.mark.parametrize("share", [-0.1, 1.0, float("nan")])
def test_gate_warmup_outside_zero_to_one_is_a_one_line_error(share):
    from seqmodels.runs import TrainConfig

    with pytest.raises(FeatxError, match="--gate-warmup"):
        TrainConfig.with_defaults("multilabel", "skip-gru", gate_warmup=share)


def test_gate_warmup_leaves_the_last_epoch_to_the_gates():
    from seqmodels.runs import TrainConfig

    assert TrainConfig.with_defaults("multilabel", "skip-gru", epochs=40).protocol.gate_warmup == 10
    assert TrainConfig.with_defaults("multilabel", "skip-gru", epochs=1, gate_warmup=0.9).protocol.gate_warmup == 0
    assert TrainConfig.with_defaults("multilabel", "skip-gru", epochs=4, gate_warmup=0.99).protocol.gate_warmup == 3
