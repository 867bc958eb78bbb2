#!/usr/bin/env bash
# Figure 1 or 2 (FIGURE=fig1|fig2, default fig2) at the paper's length on the lent GPU machine, with
# JAX, in one call of the device tool.
#
# Run from the repository root there, with two git-ignored folders carried:
#   device_wheels/  keras, namex and optree wheels for Python 3.12 (the machine has JAX, no Keras)
#   device_data/    mnist.npz and the CPU runs' judges (results/fig2/judge_*.keras, the
#                   same for both figures), so that the GPU figure is judged by the same CNNs as the CPU figures
# One panel alone leaves the card mostly idle (its steps wait on dispatch, not on the GPU), so
# the three panels train at once, one process each (`$FIGURE.py --panels`, few samples judged);
# then one plain `$FIGURE.py` in the same folder loads the three models, measures them in full
# and draws the figure. Everything but the models comes back in $OUT: gpu.txt, gpu_use.csv
# (utilisation every 5 s), one log per process and $FIGURE_gpu.tgz (refreshed every 15 s).
# The trainings stop at LIMIT_S - 110 s at the latest; their backups stay for a second call.
#
# DRY_RUN=1 checks the script on a CPU in minutes: no install, tiny data, 1 epoch.
set -u
FIGURE=${FIGURE:-fig2}
EPOCHS=${EPOCHS:-50}
LIMIT_S=${LIMIT_S:-580}
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
if [ "${DRY_RUN:-0}" = 1 ]; then
    TINY="--train-size 500 --test-size 250"; SAMPLES=20; EPOCHS=1
else
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site device_wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
    TINY=""; SAMPLES=1000
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu_use.csv" &
fi
export KERAS_BACKEND=jax KERAS_ACE_DATA=$PWD/device_data KERAS_ACE_CACHE=/tmp/keras_ace_cache KERAS_ACE_OFFLINE=1
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache XLA_PYTHON_CLIENT_MEM_FRACTION=0.3
RUN=results/gpu/${FIGURE}_${EPOCHS}_epochs
mkdir -p "$RUN" && cp device_data/judge_*.keras "$RUN"/

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" 2>&1; } > "$OUT/gpu.txt"

pack() { tar czf "$OUT/.${FIGURE}_gpu.tgz" --exclude='*.keras' --exclude='backup_*' -C results/gpu "$(basename "$RUN")" && mv "$OUT/.${FIGURE}_gpu.tgz" "$OUT/${FIGURE}_gpu.tgz"; }
for panel in ${FIGURE}_mnist ${FIGURE}_rts_mnist ${FIGURE}_tc_mnist; do
    ( timeout $(( LIMIT_S - 110 - $(elapsed) )) python3 reproduce/$FIGURE.py --panels $panel --epochs "$EPOCHS" \
          --output-dir "$RUN" --samples-per-class 10 $TINY > "$OUT/$panel.log" 2>&1
      echo "exit status $? after $(elapsed) s" >> "$OUT/$panel.log" ) &
done
while pgrep -f "$FIGURE.py --panels" >/dev/null; do sleep 15; pack; done
echo "trainings done after $(elapsed) s"; tail -n 3 "$OUT"/${FIGURE}_*.log
python3 reproduce/$FIGURE.py --epochs "$EPOCHS" --output-dir "$RUN" --samples-per-class $SAMPLES $TINY > "$OUT/$FIGURE.log" 2>&1
echo "$FIGURE.py exit status $?" >> "$OUT/$FIGURE.log"
pack
grep -v Warning "$OUT/$FIGURE.log" | tail -8
echo "done after $(elapsed) s"
