"""Optical flow speed on this machine: frame pairs per second of `featx.flow.optical_flow` (Farneback) at the
backbones' input sizes, on a panning synthetic clip. Prints a table and writes bench/results/flow.json.
    python bench/flow.py
"""

from __future__ import annotations

import numpy as np
from _common import Column, add_out, colour_field, make_parser, markdown_table, panned, timed, write_results

from featx.flow import flow_stacks, optical_flow


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 224], help="square frame sides, in pixels")
    add_out(parser, "flow.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        field = colour_field(rng, size, size, 8)
        frames = np.stack([panned(field, k, size, size) for k in range(17)])
        optical_flow(frames[0], frames[1])  # warm-up
        pairs = 16 / timed(lambda: [optical_flow(frames[k], frames[k + 1]) for k in range(16)]).best
        stacks = len(frames) / timed(lambda: flow_stacks(frames, 5)).best
        rows.append({"size": size, "farneback_pairs_per_s": pairs, "stacks_L5_per_s": stacks})
    columns = [Column("input", "<"), Column("Farneback frame pairs/s"), Column("stacks of L=5 per s")]
    print(markdown_table(columns, [[f"{r['size']}x{r['size']}", f"{r['farneback_pairs_per_s']:.1f}",
                                    f"{r['stacks_L5_per_s']:.1f}"] for r in rows]))
    out = write_results(args.out, {"rows": rows})  # was a bare list of rows before the machine facts came along
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
