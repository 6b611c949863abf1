"""The adding task of Campos et al. (ICLR 2018, Table 1) with featx's Skip RNN heads.

Each input step is (value, marker): values U(-0.5, 0.5), two markers, the first within the first 10% of the
steps, the second in the last half; the target is the sum of the two marked values. Solved when the test
MSE falls below 1/600, 100x below the output variance (1/6). Paper setup: length 50, 110 units, Adam,
lr 1e-4, batch 256, gradient clipping 1, λ = 1e-5 per updated step for the skip models.

Prints our table beside the paper's and writes bench/results/skip_rnn_adding.json.
    python bench/skip_rnn_adding.py                        # paper settings, capped iterations
    python bench/skip_rnn_adding.py --lr 1e-3 --iterations 3000
"""

from __future__ import annotations

import torch
from _common import Column, Stopwatch, add_out, make_parser, markdown_table, write_results
from torch import nn

from seqmodels.heads import build_head
from seqmodels.heads.common import HeadOutput
from seqmodels.heads.skip_rnn import budget_loss

SOLVED_MSE = 1 / 600
PAPER = {  # Campos et al. 2018, Table 1, adding task: (accuracy, state updates)
    "lstm": ("solved", "100.0% ± 0.0%"),
    "skip-lstm": ("solved", "53.9% ± 2.1% (λ=1e-5)"),
    "gru": ("solved", "100.0% ± 0.0%"),
    "skip-gru": ("solved", "50.7% ± 2.6% (λ=1e-5)"),
}


def adding_batch(generator: torch.Generator, batch: int, length: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, T, 2) = (value, marker), y (B,) = sum of the two marked values."""
    values = torch.rand(batch, length, generator=generator) - 0.5
    first = torch.randint(0, max(1, length // 10), (batch,), generator=generator)
    second = torch.randint(length // 2, length, (batch,), generator=generator)
    markers = torch.zeros(batch, length)
    rows = torch.arange(batch)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    return torch.stack([values, markers], dim=-1), values[rows, first] + values[rows, second]


class GRUBaseline(nn.Module):
    """A plain GRU with a linear read-out of its last state (the non-skipping reference)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.gru = nn.GRU(2, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> HeadOutput:
        _, h = self.gru(x)
        return HeadOutput(self.out(h[-1]))


def build(name: str, hidden: int) -> nn.Module:
    if name == "gru":
        return GRUBaseline(hidden)
    return build_head(name, 2, 1, hidden=hidden, input_norm=False, dropout=0.0)


def run(name: str, args, seed: int) -> dict:
    torch.manual_seed(seed)
    model = build(name, args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(seed)
    test_x, test_y = adding_batch(torch.Generator().manual_seed(10_000 + seed), 2000, args.length)
    test_mask = torch.ones(test_x.shape[:2], dtype=torch.bool)
    mask = torch.ones(args.batch_size, args.length, dtype=torch.bool)
    solved_at, mse, fraction, watch = None, float("nan"), 1.0, Stopwatch()
    for it in range(1, args.iterations + 1):
        x, y = adding_batch(gen, args.batch_size, args.length)
        out = model(x, mask)
        loss = ((out.logits[:, 0] - y) ** 2).mean()
        if out.updates is not None:
            loss = loss + budget_loss(out.updates, args.budget)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if it % args.eval_every == 0 or it == args.iterations:
            with torch.no_grad():
                test = model(test_x, test_mask)
            mse = float(((test.logits[:, 0] - test_y) ** 2).mean())
            fraction = float(test.updates.mean()) if test.updates is not None else 1.0
            if solved_at is None and mse < SOLVED_MSE:
                solved_at = it
            print(f"  {name:<9} seed {seed} it {it:>6} test MSE {mse:.5f} updates {fraction:.1%}", flush=True)
            if solved_at is not None and args.stop_when_solved:
                break
    return {"model": name, "seed": seed, "test_mse": mse, "solved": mse < SOLVED_MSE, "solved_at": solved_at,
            "iterations": it, "update_fraction": fraction, "seconds": watch.seconds}


def _cells(r: dict) -> list[str]:
    """A row of our table with the paper's numbers for the same model beside it."""
    solved = f"yes, at it {r['solved_at']}" if r["solved"] else f"no ({r['iterations']} it)"
    paper_acc, paper_upd = PAPER.get(r["model"], ("", ""))
    return [r["model"], f"{r['test_mse']:.5f}", solved, f"{r['update_fraction']:.1%}", paper_acc, paper_upd]


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--models", nargs="+", default=["lstm", "skip-lstm", "gru", "skip-gru"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=6000, help="cap per model and seed")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--budget", type=float, default=1e-5, help="λ per updated step")
    parser.add_argument("--hidden", type=int, default=110)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--length", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--stop-when-solved", action="store_true", help="stop a run at the first solved evaluation")
    add_out(parser, "skip_rnn_adding.json")
    args = parser.parse_args()
    rows = [run(name, args, seed) for name in args.models for seed in range(args.seeds)]
    print(f"\nadding task, length {args.length}, lr {args.lr}, batch {args.batch_size}, at most {args.iterations} "
          f"iterations, {args.seeds} seed(s), λ {args.budget}")
    columns = [Column("model", "<", 9), Column("test MSE", ">", 8), Column("solved (<1/600)", "<", 18),
               Column("updates", ">", 8), Column("paper", "<", 8), Column("paper updates", "<", 22)]
    print(markdown_table(columns, [_cells(r) for r in rows]))
    out = write_results(args.out, {"args": vars(args), "rows": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
