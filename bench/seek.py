"""Decoding at a low --fps: featx's choice (seek to keyframes or decode everything) vs always decoding
everything, for several keyframe spacings (GOPs) and sampling rates. Checks the frames are identical.

Prints a table and writes JSON to bench/results/seek.json.
    python bench/seek.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from _common import Column, add_out, make_parser, make_videos, markdown_table, timed, write_results

from featx.seek import packet_index
from featx.video import FrameChunk, Preprocess, stream_frames


def _decode(path: Path, fps: float, pre: Preprocess, seek: bool, repeats: int):
    """Best-of-`repeats` seconds, frame numbers and pixels of sampling `path` at `fps`."""
    timing = timed(lambda: [c for c in stream_frames(path, fps, pre, seek=seek, threads=1) if isinstance(c, FrameChunk)],
                   repeats)
    chunks = timing.result
    return timing.best, np.concatenate([c.index for c in chunks]), np.concatenate([c.pixels for c in chunks])


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--gops", type=int, nargs="+", default=[250, 50, 12])
    parser.add_argument("--fps", type=float, nargs="+", default=[0.5, 1, 5])
    parser.add_argument("--repeats", type=int, default=3, help="best of")
    add_out(parser, "seek.json")
    args = parser.parse_args()
    pre = Preprocess(256, (224, 224), "bicubic")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for gop in args.gops:
            path = make_videos(Path(tmp) / f"gop{gop}", 1, args.seconds, 25, (340, 256), gop, 1)[0]
            keyframes = int(packet_index(path).keyframe.sum())
            for fps in args.fps:
                full = _decode(path, fps, pre, False, args.repeats)
                auto = _decode(path, fps, pre, True, args.repeats)
                same = bool((full[1] == auto[1]).all() and (full[2] == auto[2]).all())
                rows.append({"gop": gop, "keyframes": keyframes, "fps": fps, "frames": len(full[1]),
                             "full_decode_s": full[0], "featx_s": auto[0], "ratio": auto[0] / full[0], "identical": same})
    print(f"\n{args.seconds:.0f} s of 340x256 h264 at 25 fps, one decoder thread, best of {args.repeats}")
    columns = [*(Column(h) for h in ("GOP", "--fps", "sampled", "full decode s", "featx s", "featx / full")),
               Column("identical", "^")]
    print(markdown_table(columns, [[r["gop"], f"{r['fps']:g}", r["frames"], f"{r['full_decode_s']:.2f}", f"{r['featx_s']:.2f}",
                                    f"{r['ratio']:.2f}", "yes" if r["identical"] else "NO"] for r in rows]))
    out = write_results(args.out, {"seconds": args.seconds, "rows": rows})
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
