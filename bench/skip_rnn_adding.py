"""The adding task of Campos et al. (ICLR 2018, Table 1) with featx's Skip RNN heads, as the authors ran it
(github.com/imatge-upc/skiprnn-2017-telecombcn, src/01_adding_task.py).

Each input step is (value, marker): values U(-0.5, 0.5), two markers, the first within the first 10% of the
steps, the second in the last half; the target is the sum of the two marked values. Solved when the MSE falls
below 1/600, two orders of magnitude below the output variance (1/6). The authors' settings: length 50, 110
units, Adam lr 1e-4, batch 256, gradient clipping 1 (global norm), λ = 1e-5 or 0 per updated step, a linear
read-out of the last state. Their loss is tf.nn.l2_loss / batch = MSE / 2, plus λ Σ_t u_t averaged over the
batch; followed here (it sets how λ weighs against the error). They validate every 300 iterations on 15 fresh
batches of 256 and train until stopped by hand: the paper gives no iteration count, so `--iterations` caps
each run and the numbers reported are those of the last evaluation. The baselines `lstm` and `gru` are the
same cells (learned initial state, same initialisation) updating at every step.

Writes bench/results/skip_rnn_adding.json after every evaluation: finished runs, and the one under way with
"finished": false (an interrupted run keeps its results; the summary covers finished runs only).
    python bench/skip_rnn_adding.py --seeds 3 --iterations 20000             # both skip cells, λ 1e-5 and 0
    python bench/skip_rnn_adding.py --models skip-gru --budgets 1e-5 --seeds 1 --iterations 600 --gru torch
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import torch
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, write_results
from torch import nn

from seqmodels.heads import build_head
from seqmodels.heads.common import HeadOutput
from seqmodels.heads.skip_rnn import SkipRNNHead, budget_loss

SOLVED_MSE = 1 / 600
# Campos et al. 2018, Table 1 (mean ± std over four runs): state updates in %, by (model, λ). All solved.
PAPER = {
    ("lstm", 0.0): (100.0, 0.0),
    ("skip-lstm", 0.0): (81.1, 3.6),
    ("skip-lstm", 1e-5): (53.9, 2.1),
    ("gru", 0.0): (100.0, 0.0),
    ("skip-gru", 0.0): (97.9, 3.2),
    ("skip-gru", 1e-5): (50.7, 2.6),
}
FIRST, SECOND = 0.1, 0.5  # markers: one in the first 10% of the steps, one in the last 50%


def adding_batch(generator: torch.Generator, batch: int, length: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, T, 2) = (value, marker), y (B,) = sum of the two marked values."""
    values = torch.rand(batch, length, generator=generator) - 0.5
    first = torch.randint(0, max(1, int(length * FIRST)), (batch,), generator=generator)
    second = torch.randint(int(length * SECOND), length, (batch,), generator=generator)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return torch.stack([values, markers], dim=-1), values[rows, first] + values[rows, second]


class PlainRNN(nn.Module):
    """The skip head's cells updating at every step: the LSTM / GRU baselines of Table 1."""

    def __init__(self, head: SkipRNNHead):
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        head = self.head
        state = head.initial_state(x.shape[0], x)
        keys = head._keys
        for gx in head.project(x).unbind(1):  # T x (B, G)
            below = None
            for i, (layer, (hk, ck)) in enumerate(zip(head.layers, keys)):
                h, c = layer.candidate(gx if i == 0 else layer.project(below), state[hk], state.get(ck))
                state[hk], below = h, h
                if c is not None:
                    state[ck] = c
        return HeadOutput(head.classifier(state["h"]))


def build(name: str, args) -> nn.Module:
    cell = name.removeprefix("skip-")
    options = {"gru": args.gru} if cell == "gru" else {}
    head = build_head(f"skip-{cell}", 2, 1, hidden=args.hidden, layers=args.layers, input_norm=False,
                      dropout=0.0, **options)
    readout = head.classifier[-1]  # theirs: a TF linear layer, Glorot-uniform weights and zero bias
    nn.init.xavier_uniform_(readout.weight)
    nn.init.zeros_(readout.bias)
    return head if name.startswith("skip-") else PlainRNN(head)


def evaluate(model: nn.Module, generator: torch.Generator, args) -> tuple[float, float]:
    """MSE and share of updated steps over `validation_batches` fresh batches (the authors' validation)."""
    squared, updated = 0.0, 0.0
    mask = torch.ones(args.batch_size, args.length, dtype=torch.bool, device=args.device)
    with torch.no_grad():
        for _ in range(args.validation_batches):
            x, y = (t.to(args.device) for t in adding_batch(generator, args.batch_size, args.length))
            out = model(x, mask)
            squared += float(((out.logits[:, 0] - y) ** 2).mean())
            updated += float(out.updates.mean()) if out.updates is not None else 1.0
    return squared / args.validation_batches, updated / args.validation_batches


def run(name: str, budget: float, seed: int, args, progress=None) -> dict:
    """One training run; `progress(row)` gets the run so far after every evaluation."""
    torch.manual_seed(seed)
    model = build(name, args).to(args.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)  # β and ε: Adam's defaults, as theirs
    train_gen = torch.Generator().manual_seed(seed)
    valid_gen = torch.Generator().manual_seed(1_000_000 + seed)
    mask = torch.ones(args.batch_size, args.length, dtype=torch.bool, device=args.device)
    history, solved_at, watch = [], None, Stopwatch()
    for it in range(1, args.iterations + 1):
        x, y = (t.to(args.device) for t in adding_batch(train_gen, args.batch_size, args.length))  # same data on any device
        out = model(x, mask)
        loss = 0.5 * ((out.logits[:, 0] - y) ** 2).mean()  # tf.nn.l2_loss / batch
        if out.updates is not None and budget > 0:
            loss = loss + budget_loss(out.updates, budget)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        if it % args.eval_every == 0 or it == args.iterations:
            mse, fraction = evaluate(model, valid_gen, args)
            history.append({"iteration": it, "mse": mse, "update_fraction": fraction})
            if solved_at is None and mse < SOLVED_MSE:
                solved_at = it
            print(f"  {name:<9} λ {budget:g} seed {seed} it {it:>6} MSE {mse:.6f} updates {fraction:6.1%} "
                  f"({watch.seconds / it:.3f} s/it)", flush=True)
            row = {"model": name, "budget": budget, "seed": seed, "mse": mse, "solved": mse < SOLVED_MSE,
                   "solved_at": solved_at, "iterations": it, "finished": it == args.iterations,
                   "update_fraction": fraction, "seconds": watch.seconds,
                   "seconds_per_iteration": watch.seconds / it, "history": history}
            if progress is not None:
                progress(row)
    return row


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def summarise(rows: list[dict]) -> list[dict]:
    """One entry per (model, λ): mean and sample standard deviation over seeds, beside the paper's."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["budget"]), []).append(r)
    out = []
    for (model, budget), rs in groups.items():
        upd_mean, upd_std = _mean_std([100 * r["update_fraction"] for r in rs])
        mse_mean, mse_std = _mean_std([r["mse"] for r in rs])
        paper = PAPER.get((model, budget))
        within = None if paper is None else abs(upd_mean - paper[0]) <= 2 * paper[1] + 1e-9
        out.append({"model": model, "budget": budget, "seeds": len(rs), "solved": sum(r["solved"] for r in rs),
                    "updates_mean": upd_mean, "updates_std": upd_std, "mse_mean": mse_mean, "mse_std": mse_std,
                    "paper_updates": paper, "within_2_paper_std": within})
    return out


def _cells(s: dict) -> list[str]:
    paper = "" if s["paper_updates"] is None else f"{s['paper_updates'][0]:.1f} ± {s['paper_updates'][1]:.1f}"
    within = {None: "", True: "yes", False: "no"}[s["within_2_paper_std"]]
    return [s["model"], f"{s['budget']:g}", f"{s['solved']}/{s['seeds']}", f"{s['mse_mean']:.2e} ± {s['mse_std']:.1e}",
            f"{s['updates_mean']:.1f} ± {s['updates_std']:.1f}", paper, within]


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=["skip-lstm", "skip-gru"],
                        choices=["lstm", "skip-lstm", "gru", "skip-gru"])
    parser.add_argument("--budgets", nargs="+", type=float, default=[1e-5, 0.0], help="λ per updated step (skip models)")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1 (split runs over processes)")
    parser.add_argument("--iterations", type=int, default=20_000, help="per run (the paper trains until stopped by hand)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--hidden", type=int, default=110)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--gru", default="reference", choices=["reference", "torch"], help="GRU formulation")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=300)
    parser.add_argument("--validation-batches", type=int, default=15)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (batches are drawn on the CPU either way)")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="print the table of these runs' JSON files "
                        "(finished or cut short: the last evaluation of each) and write them together to --out")
    add_out(parser, "skip_rnn_adding.json")
    args = parser.parse_args()
    if args.merge:
        merged = [json.loads(Path(f).read_text()) for f in args.merge]
        rows = [r for m in merged for r in m["rows"]]
        print_table(rows, f"{len(args.merge)} file(s); " + ", ".join(sorted({f"{r['iterations']} it" for r in rows})))
        write_results(args.out, {"args": vars(args), "summary": summarise(rows), "rows": rows,
                                 "ran_on": [m.get("host") for m in merged]})  # host: where they were merged
        print(f"wrote {args.out}")
        return
    # λ matters to skip models only; the baselines run once per seed, with λ 0
    plan = [(m, b if m.startswith("skip-") else 0.0, s) for b in args.budgets for s in range(args.first_seed, args.first_seed + args.seeds) for m in args.models]
    plan = list(dict.fromkeys(plan))  # the order of the first appearance: λ first, so early results cover it
    rows = []

    def save(partial: dict | None = None) -> None:
        """The finished runs (the summary covers only these) and the one under way, if any."""
        shown = rows + ([partial] if partial else [])
        write_results(args.out, {"args": vars(args), "summary": summarise(rows), "rows": shown}, device=args.device)

    for name, budget, seed in plan:
        rows.append(run(name, budget, seed, args, progress=save))
        save()
    print_table(rows, f"length {args.length}, {args.hidden} units, lr {args.lr}, batch {args.batch_size}, "
                      f"{args.iterations} iterations, {args.seeds} seed(s), GRU {args.gru}")
    print(f"wrote {args.out}")


def print_table(rows: list[dict], setting: str) -> None:
    print(f"\nadding task, {setting}; updates in %, mean ± std over seeds")
    columns = [Column("model", "<"), Column("λ", ">"), Column("solved", ">"), Column("MSE", ">"),
               Column("updates", ">"), Column("paper updates", ">"), Column("within 2 paper std", "<")]
    print(markdown_table(columns, [_cells(s) for s in summarise(rows)]))


if __name__ == "__main__":
    main()
