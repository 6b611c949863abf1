#!/usr/bin/env bash
# Skip RNN Table 1 (the adding task at the paper's settings) on a lent GPU: the 12 runs (skip-lstm / skip-gru,
# λ 1e-5 and 0, seeds 0-2) at once, one process each, each stopped after SECONDS_PER_RUN; every run writes its
# JSON after each evaluation (every 300 iterations), so a run cut short still reports where it got to.
# Run through the device tool from the repo root (see docs/performance.md, "Skip RNN adding task"):
#   bash bench/gpu_table1.sh            # outputs: $OUT/table1.tar.gz (the 12 JSONs) and $OUT/table1.txt
# Then, here: tar xzf <files_at>/table1.tar.gz -C /tmp && python bench/skip_rnn_adding_merge.py /tmp/table1/*.json
set -u
SECONDS_PER_RUN=${SECONDS_PER_RUN:-420}
ITERATIONS=${ITERATIONS:-60000}
OUT=${OUT:-/tmp/out}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT" /tmp/table1
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD:${PYTHONPATH:-}
{ nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no nvidia-smi"; } | tee "$OUT/table1.txt"
for model in skip-lstm skip-gru; do
  for budget in 1e-5 0; do
    for seed in 0 1 2; do
      timeout "$SECONDS_PER_RUN" python bench/skip_rnn_adding.py --device "$DEVICE" --models "$model" --budgets "$budget" \
        --seeds 1 --first-seed "$seed" --iterations "$ITERATIONS" --out "/tmp/table1/$model-$budget-$seed.json" \
        > "/tmp/table1/$model-$budget-$seed.log" 2>&1 &
    done
  done
done
wait
tail -n 3 /tmp/table1/*.log >> "$OUT/table1.txt"
tar czf "$OUT/table1.tar.gz" -C /tmp table1
