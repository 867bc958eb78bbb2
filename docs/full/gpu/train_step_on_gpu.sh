#!/usr/bin/env bash
# ms per training step and % of the float32 matmul peak on the lent GPU (JAX),
# for Figure 2's, 3's and 4's presets, trained four ways (benchmarks/train_step.py --how):
# train_on_batch, fit, fit with steps_per_execution=10 (also with every class on every row in the
# per-class layers), and fit without XLA (eager).
# Run from the repository root there with device_wheels/ carried (keras, namex, optree for
# Python 3.12). Synthetic images (speed does not depend on them), so no data travels.
# One JSON per preset in $OUT (written as each preset ends), gpu.txt, gpu_use.csv, run.log.
#
# DRY_RUN=1 checks the script on a CPU: no install, 2 steps, one way to train per preset.
set -u
start=$(date +%s)
OUT=${OUT:-/tmp/train_step_out}; mkdir -p "$OUT"
if [ "${DRY_RUN:-0}" = 1 ]; then
    STEPS=2; HOW_MAIN="fit:2 fit:2/every_row"; HOW_REST="fit:2"; PEAK=512
else
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site device_wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
    STEPS=100; HOW_MAIN="train_on_batch fit fit:10 fit:10/every_row eager"; HOW_REST="fit fit:10"; PEAK=8192
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 2 > "$OUT/gpu_use.csv" &
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" 2>&1; } > "$OUT/gpu.txt"
bench() {  # preset, ways to train
    timeout 200 python3 benchmarks/train_step.py --presets "$1" --how $2 --steps $STEPS --peak-size $PEAK \
        --json "$OUT/train_step_$1.json" 2>&1 | grep -v -i warning
    echo "$1 done after $(( $(date +%s) - start )) s"
}
{ for preset in fig2_rts_mnist fig3_cifar10 fig4_cifar10_spatial_color; do bench $preset "$HOW_MAIN"; done
  for preset in fig2_mnist fig2_tc_mnist; do bench $preset "$HOW_REST"; done; } 2>&1 | tee "$OUT/run.log"
