"""One store extracted on the CPU (float32) and on CUDA (float32, float16 and bfloat16 autocast), compared.

    python bench/cuda_check.py        # needs a CUDA device; prints relative errors per video
"""

import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import make_parser

from featx.config import ExtractConfig
from featx.pipeline import RunOptions, extract
from featx.inputs import collect_inputs
from featx.store import load_sequences, read_config
from featx.synth import make_trimmed


def main() -> None:
    make_parser(__doc__).parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_trimmed(tmp / "v", videos=8, seconds=2, fps=25, size=128, seed=0, progress=False)
        stores = {}
        for name, device, precision in [("cpu", "cpu", "float32"), ("cuda32", "cuda", "float32"), ("cuda16", "cuda", "float16"),
                                        ("cudabf16", "cuda", "bfloat16")]:
            summary = extract(collect_inputs([data.folder]), tmp / name, ExtractConfig(precision=precision),
                              RunOptions(batch_size=16, device=device, progress=False))
            stores[name] = load_sequences(tmp / name)
            print(f"{name}: {summary.ok} ok, precision {read_config(tmp / name).precision}, {summary.frames} frames")
        worst = {}
        for name in ("cuda32", "cuda16", "cudabf16"):
            errs = [np.linalg.norm(stores[name][v].astype(np.float32) - stores["cpu"][v].astype(np.float32))
                    / np.linalg.norm(stores["cpu"][v].astype(np.float32)) for v in stores["cpu"]]
            worst[name] = max(errs)
            print(f"{name} vs cpu float32: max relative error {worst[name]:.2e} over {len(errs)} videos")
        sys.exit(0 if worst["cuda32"] < 1e-3 else 1)


if __name__ == "__main__":
    main()
