#!/usr/bin/env bash
# The GPU checks of `--decoder nvdec` (featx.nvdec), for a session that is lent a GPU. Run from the repository root
# through the device tool with carry [".whl"] (docs/performance.md, "Running the GPU checks"); about 4-6 minutes.
# .whl/ holds the cp312 wheels the GPU machine lacks: pynvvideocodec 2.2.4 and av (PyAV); featx itself runs from
# this checkout (PYTHONPATH), against the machine's own torch, timm and the rest. Everything lands in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 FEATX_GPU_REPORT=$OUT/nvdec_report.jsonl
step() {  # step NAME SECONDS COMMAND...: one check, its log in $OUT/NAME.log, its exit code in the summary
    local name=$1 limit=$2; shift 2
    echo "=== $name: $*"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    echo "$name exit ${PIPESTATUS[0]}" | tee -a "$OUT/summary.txt"
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, timm, av, PyNvVideoCodec as n; print('torch', torch.__version__, 'timm', timm.__version__, 'av', av.__version__, 'PyNvVideoCodec', n.__version__)" 2>&1 | tail -3 | tee -a "$OUT/gpu.txt"
python3 - <<'PY'
from featx.synth import make_trimmed
make_trimmed("/tmp/probe", videos=1, seconds=1, fps=8, size=96, seed=0)
PY
step probe 60 python3 bench/nvdec_probe.py "$(ls /tmp/probe/*.mp4 | head -1)"
step test_nvdec 150 python3 -m pytest -q -s -p no:cacheprovider tests/test_nvdec.py -k gpu
step resize_device 120 python3 bench/resize_device.py --device cuda --random-init --repeats 1 --out "$OUT/resize_device_cuda.json"
step throughput 240 python3 bench/throughput.py --device cuda --batch-sizes 128 --decoders pyav nvdec \
    --frames 4000 --seconds 8 --out "$OUT/throughput_cuda.json"
cat "$OUT/summary.txt"
