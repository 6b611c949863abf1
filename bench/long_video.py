"""Memory and time of long videos: peak RSS (main process + decoding workers) and wall time extracting long
low-resolution synthetic videos vs a 1-minute one. (Throughput: bench/throughput.py.)

Prints a table and writes JSON to bench/results/long_video.json.
    python bench/long_video.py                         # the README's table: 1, 10, 30 and 60 minutes
    python bench/long_video.py --minutes 1 5           # quicker
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import Column, add_out, make_parser, markdown_table, write_results

from featx.backbones import resolve_device
from featx.synth import make_untrimmed


_RSS_SCRIPT = """
import sys, threading, time, psutil
from featx.config import ExtractConfig
from featx.pipeline import RunOptions, extract
from featx.inputs import collect_inputs
peak, stop = [0], []
def watch():
    me = psutil.Process()
    while not stop:
        try:
            peak[0] = max(peak[0], sum(p.memory_info().rss for p in [me] + me.children(recursive=True)))
        except psutil.Error:
            pass
        time.sleep(0.05)
threading.Thread(target=watch, daemon=True).start()
t = time.perf_counter()
s = extract(collect_inputs([sys.argv[1]]), sys.argv[2], ExtractConfig(fps=float(sys.argv[3])), RunOptions(progress=False))
stop.append(1)
print(peak[0], time.perf_counter() - t, s.frames)
"""


def long_video(minutes: int, fps: float, tmp: Path) -> dict:
    folder = tmp / f"long{minutes}"
    make_untrimmed(folder, videos=1, seconds=minutes * 60, fps=10, size=64, seed=minutes)
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(folder / "untrimmed_000.mp4"), str(tmp / f"s{minutes}"), str(fps)],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    return {"minutes": minutes, "peak_rss_mb": int(out[0]) / 2**20, "seconds": float(out[1]), "frames": int(out[2])}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--minutes", type=int, nargs="+", default=[1, 10, 30, 60], help="video lengths; the first is the reference")
    parser.add_argument("--fps", type=float, default=1.0, help="sampling rate (the videos are 10 fps)")
    add_out(parser, "long_video.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            rows.append(long_video(minutes, args.fps, Path(tmp)))
            print(rows[-1], flush=True)
    ref = rows[0]
    print(f"\nlong video (64x64, 10 fps, sampled at {args.fps:g} fps)")
    for r in rows:
        r["rss_vs_first"] = r["peak_rss_mb"] / ref["peak_rss_mb"]
    columns = [Column(h) for h in ("minutes", "frames", "peak RSS MB", "RSS vs first", "seconds", "seconds per minute")]
    print(markdown_table(columns, [[r["minutes"], r["frames"], f"{r['peak_rss_mb']:.0f}", f"{r['rss_vs_first']:.2f}",
                                    f"{r['seconds']:.1f}", f"{r['seconds'] / r['minutes']:.2f}"] for r in rows]))
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "fps": args.fps, "rows": rows}
    out = write_results(args.out, result, resolve_device("auto").type)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
