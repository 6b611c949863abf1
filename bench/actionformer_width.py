"""What ActionFormer's width costs on the CPU: seconds per training batch at `hidden` 256 and 512 (the paper's),
on features as wide as the bundled EfficientNet-Lite0's (1280-d), everything else at the head's defaults.

Each width runs `--warmup` untimed batches, then the median of `--repeats` timed ones (loss, backward, AdamW
step), in one process, one after the other. Prints a table and writes bench/results/actionformer_width.json.
    python bench/actionformer_width.py
    python bench/actionformer_width.py --dim 2048 --steps 576 --threads 2
"""

from __future__ import annotations

import numpy as np
import torch
from _common import Column, add_out, make_parser, markdown_table, timed, write_results

from seqmodels.data import pad
from seqmodels.detection.actionformer import ActionFormerHead


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--steps", type=int, default=160, help="rows per video (40 s at 4 fps)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    add_out(parser, "actionformer_width.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x, mask = pad([rng.standard_normal((args.steps, args.dim), dtype=np.float32) for _ in range(args.batch_size)])
    segments = [np.array([[0.1 * args.steps, 0.4 * args.steps, 0], [0.6 * args.steps, 0.8 * args.steps, 1]])] * args.batch_size
    rows = []
    for width in args.widths:
        torch.manual_seed(0)
        model = ActionFormerHead(args.dim, 2, hidden=width)
        optimiser = torch.optim.AdamW(model.parameters(), 1e-4)

        def step():
            loss = model.loss(x, mask, segments)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

        timing = timed(step, args.repeats, args.warmup)
        rows.append({"hidden": width, "seconds_per_batch": timing.median,
                     "parameters": sum(p.numel() for p in model.parameters())})
    base = rows[0]["seconds_per_batch"]
    print(f"ActionFormer training batch: {args.batch_size} x {args.steps} steps x {args.dim}-d, {args.threads} thread(s), "
          f"median of {args.repeats}")
    columns = [Column("hidden", ">"), Column("parameters", ">"), Column("s / batch", ">"), Column(f"x hidden {args.widths[0]}", ">")]
    print(markdown_table(columns, [[r["hidden"], f"{r['parameters']:,}", f"{r['seconds_per_batch']:.3f}",
                                    f"{r['seconds_per_batch'] / base:.2f}"] for r in rows]))
    write_results(args.out, {"args": vars(args), "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
