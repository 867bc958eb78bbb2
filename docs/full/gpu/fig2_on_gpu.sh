#!/usr/bin/env bash
# Figure 2 at the paper's length on the lent GPU machine, with JAX, in one call of the device tool.
#
# Run from the repository root there, with two git-ignored folders carried:
#   device_wheels/  keras, namex and optree wheels for Python 3.12 (the machine has JAX, no Keras)
#   device_data/    mnist.npz and the CPU runs' judges (results/fig2/judge_*.keras), so that
#                   the GPU figure is judged by the same CNNs as the CPU figures
# First times one training step of each Figure 2 net (benchmarks/train_step.py), then trains all
# three panels for as many epochs as fit in BUDGET_S (50, the paper's length, when they do) and
# draws the figure. Everything but the models comes back in $OUT: gpu.txt, train_step.json,
# fig2.log and fig2_gpu.tgz (results/gpu/fig2, refreshed every 15 s while training).
#
# DRY_RUN=1 checks the script on a CPU in minutes: no install, tiny data, 1 epoch.
set -u
BUDGET_S=${BUDGET_S:-520}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
if [ "${DRY_RUN:-0}" = 1 ]; then
    BENCH="--steps 1 --warmup 1"; TINY="--train-size 500 --test-size 250 --samples-per-class 20"; MAX_EPOCHS=1
else
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site device_wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
    BENCH="--steps 30 --warmup 3"; TINY=""; MAX_EPOCHS=50
fi
export KERAS_BACKEND=jax KERAS_ACE_DATA=$PWD/device_data KERAS_ACE_CACHE=/tmp/keras_ace_cache KERAS_ACE_OFFLINE=1
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache
RUN=results/gpu/fig2
mkdir -p "$RUN" && cp device_data/judge_*.keras "$RUN"/

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" 2>&1; } > "$OUT/gpu.txt"
python3 benchmarks/train_step.py --presets fig2_mnist fig2_rts_mnist fig2_tc_mnist $BENCH --json "$OUT/train_step.json" 2>&1 | grep -v Warning
echo "benchmark done after $(elapsed) s"

# Epochs that fit: an epoch of a panel costs about 0.65 x (240 training steps + 40 validation
# batches at a third of a step) of train_on_batch's step time: on the H200 fit's steps took half
# of train_on_batch's (run 1 used 1.3 here and chose 6 epochs where about 30 would have fitted); 150 s are kept
# for building the data, compiling and the measurements.
EPOCHS=$(python3 -c "
import json, math
steps = sum(r['step_s'] for r in json.load(open('$OUT/train_step.json')))
print(max(1, min($MAX_EPOCHS, math.floor(($BUDGET_S - $(elapsed) - 150) / (0.65 * 253 * steps)))))")
echo "training every panel for $EPOCHS epochs"

pack() { tar czf "$OUT/.fig2_gpu.tgz" --exclude='*.keras' --exclude='backup_*' -C results/gpu fig2 && mv "$OUT/.fig2_gpu.tgz" "$OUT/fig2_gpu.tgz"; }
( timeout $(( BUDGET_S - $(elapsed) - 5 )) python3 reproduce/fig2.py --epochs "$EPOCHS" --output-dir "$RUN" $TINY > "$OUT/fig2.log" 2>&1
  echo "fig2.py exit status $?" >> "$OUT/fig2.log" ) &
while kill -0 $! 2>/dev/null; do sleep 15; pack; done
pack
grep -v Warning "$OUT/fig2.log" | tail -25
echo "done after $(elapsed) s"
