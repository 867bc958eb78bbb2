#!/usr/bin/env bash
# Figures 3 and 4 on the lent GPU machine with JAX, in one call of the device tool, and the
# border and colour-inverse variants beside them.
#
# Run from the repository root there, with two git-ignored folders carried:
#   device_wheels/  keras, namex and optree wheels for Python 3.12 (the machine has JAX, no Keras)
#   device_data/    mnist.npz, cifar10-jpeg.pack and cifar_pack.py (../shared/data, ../shared/tools)
#
# Phase A, all at once, one process each, EXPERIMENT_EPOCHS (3) epochs, seed 0:
#   the four panels of Figures 3 and 4 with the library's defaults (edge-pixel padding, the
#   colour matrix on the observation side), each in a folder of its own;
#   today's layout for comparison: fig3_cifar10_sss with zeros, fig4_cifar10_spatial_color with
#   zeros and the old colour inverse, and with the edge pixel and the old colour inverse;
#   RTS MNIST in quick mode with the edge pixel and with zeros.
#   Each writes its metrics at EXPERIMENT_EPOCHS: the experiment table.
# Phase B: the four panels trained on (the saved model and optimizer go on) to as many epochs
#   as the time left allows, at most EPOCHS, the same count for both panels of a figure.
# Phase C: one plain fig3.py and fig4.py measure and draw each figure in full; zoom_out.py on the
#   symmetry panels. Everything but the models comes back in $OUT (cifar_gpu.tgz, refreshed).
#
# DRY_RUN=1 checks the script on a CPU: no install, tiny data, 1 + 1 epochs, one process at a time.
set -u
EPOCHS=${EPOCHS:-50}
EXPERIMENT_EPOCHS=${EXPERIMENT_EPOCHS:-3}
LIMIT_S=${LIMIT_S:-575}
MEASURE_S=${MEASURE_S:-130}
OUT=${OUT:-/tmp/cifar_gpu_out}
mkdir -p "$OUT"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
if [ "${DRY_RUN:-0}" = 1 ]; then
    TINY=(--train-size 500 --test-size 250 --judge-train-size 500 --judge-epochs 1)
    SAMPLES=10; EPOCHS=2; EXPERIMENT_EPOCHS=1; QUICK_TINY=(--train-size 300 --test-size 100 --judge-train-size 300)
    ZOOM_TINY=(--count 100)
    export KERAS_ACE_DATA=${KERAS_ACE_DATA:-$PWD/../shared/data}
else
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site device_wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
    python3 device_data/cifar_pack.py unpack device_data/cifar10-jpeg.pack device_data/cifar10-jpeg.zip || exit 1
    export KERAS_ACE_DATA=$PWD/device_data
    TINY=(); SAMPLES=1000; QUICK_TINY=(); ZOOM_TINY=()
    nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 5 > "$OUT/gpu_use.csv" &
fi
export KERAS_BACKEND=jax KERAS_ACE_CACHE=/tmp/keras_ace_cache KERAS_ACE_OFFLINE=1
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache XLA_PYTHON_CLIENT_PREALLOCATE=false
R=results/gpu
[ "${DRY_RUN:-0}" = 1 ] && rm -rf "$R" "$OUT/logs"
mkdir -p "$R/judge" "$OUT/logs"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__)" 2>&1; } > "$OUT/gpu.txt"
pack() { tar czf "$OUT/.cifar_gpu.tgz" --exclude='*.keras' --exclude='backup_*' --exclude='*.npz' -C results gpu \
         -C "$OUT" logs && mv "$OUT/.cifar_gpu.tgz" "$OUT/cifar_gpu.tgz"; }

# The decoded CIFAR-10 and its judge, once, before the processes that share them.
python3 - "${TINY[@]}" > "$OUT/logs/prepare.log" 2>&1 <<'EOF'
import argparse, sys
sys.path.insert(0, "reproduce")
from data_tools import load_dataset
from common.config import RunConfig, add_arguments
from common.judge import train_judge
for split in ("train", "test"):
    load_dataset("cifar10", split)
config = RunConfig.from_args("fig3", add_arguments(argparse.ArgumentParser(), "fig3").parse_args(sys.argv[1:] + ["--output-dir", "results/gpu/judge"]))
print("judge test accuracy", train_judge("cifar10", config)[1])
EOF
echo "prepared after $(elapsed) s"; tail -n 2 "$OUT/logs/prepare.log"

train() {  # train FOLDER SCRIPT PANEL EPOCHS [ARGS...]: one panel in its own folder, judged by the shared judge
    local name=$1 script=$2 panel=$3 epochs=$4; shift 4
    local folder=$R/$name log=$OUT/logs/$name.log
    mkdir -p "$folder" && cp -n $R/judge/judge_cifar10.* "$folder"/ 2>/dev/null
    ( timeout $(( LIMIT_S - MEASURE_S - $(elapsed) )) python3 reproduce/$script --panels "$panel" --epochs "$epochs" \
          --output-dir "$folder" --samples-per-class 100 "${TINY[@]}" "$@" >> "$log" 2>&1
      echo "exit status $? after $(elapsed) s" >> "$log" ) &
    [ "${DRY_RUN:-0}" = 1 ] && wait $!  # one at a time: nine at once do not fit 24 GiB
}
LONG="fig3:fig3_cifar10 fig3:fig3_cifar10_sss fig4:fig4_cifar10_spatial fig4:fig4_cifar10_spatial_color"
for figure_panel in $LONG; do
    train "${figure_panel#*:}" "${figure_panel%%:*}.py" "${figure_panel#*:}" "$EXPERIMENT_EPOCHS"
done
train exp_zeros_fig3_cifar10_sss fig3.py fig3_cifar10_sss "$EXPERIMENT_EPOCHS" --overrides '{"padding": "zeros"}'
train exp_zeros_old_colour fig4.py fig4_cifar10_spatial_color "$EXPERIMENT_EPOCHS" \
    --overrides '{"padding": "zeros", "color_inverse": "to_observation"}'
train exp_border_old_colour fig4.py fig4_cifar10_spatial_color "$EXPERIMENT_EPOCHS" --overrides '{"color_inverse": "to_observation"}'
for padding in border zeros; do
    ( python3 reproduce/fig2.py --quick --panels fig2_rts_mnist --output-dir "$R/exp_rts_$padding" \
          --overrides "{\"padding\": \"$padding\"}" "${QUICK_TINY[@]}" > "$OUT/logs/exp_rts_$padding.log" 2>&1
      echo "exit status $? after $(elapsed) s" >> "$OUT/logs/exp_rts_$padding.log" ) &
done
while pgrep -f "reproduce/fig" >/dev/null; do sleep 10; pack; done
echo "phase A done after $(elapsed) s"
for panel in fig3_cifar10 fig3_cifar10_sss fig4_cifar10_spatial fig4_cifar10_spatial_color; do
    cp "$R/$panel/metrics.json" "$R/$panel/metrics_${EXPERIMENT_EPOCHS}_epochs.json" 2>/dev/null
done
# The zoom-out experiment on the two symmetry panels of Figure 3 at EXPERIMENT_EPOCHS (zeros, edge pixel).
mkdir -p "$R/exp_border_fig3_cifar10_sss" && cp "$R/fig3_cifar10_sss/fig3_cifar10_sss.keras" "$R/exp_border_fig3_cifar10_sss/"
zoom_out() { [ -f "$R/$1.keras" ] && python3 reproduce/zoom_out.py --model "$R/$1.keras" --output-dir "$R/$(dirname $1)" \
                 "${ZOOM_TINY[@]}" >> "$OUT/logs/zoom_out.log" 2>&1; }
( for model in exp_zeros_fig3_cifar10_sss/fig3_cifar10_sss exp_border_fig3_cifar10_sss/fig3_cifar10_sss \
               exp_zeros_old_colour/fig4_cifar10_spatial_color exp_border_old_colour/fig4_cifar10_spatial_color; do
      zoom_out $model; done ) &
ZOOM_PID=$!

# Phase B: epochs per figure from the slower panel's epoch time (epochs after the first).
epochs_for() {
    python3 - "$R" "$EXPERIMENT_EPOCHS" "$EPOCHS" $(( LIMIT_S - MEASURE_S - $(elapsed) - 20 )) "$@" <<'EOF' || echo "$EXPERIMENT_EPOCHS"
import json, sys
folder, done, most, left, panels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
times = []
for p in panels:
    t = json.load(open(f"{folder}/{p}/{p}.training.json"))["epoch_wall_times_s"]
    times.append(sum(t[1:]) / max(1, len(t) - 1))
print(max(done, min(most, done + int(left / max(times)))))
EOF
}
E3=$(epochs_for fig3_cifar10 fig3_cifar10_sss); E4=$(epochs_for fig4_cifar10_spatial fig4_cifar10_spatial_color)
echo "phase B: Figure 3 to $E3 epochs, Figure 4 to $E4 (after $(elapsed) s)"
for figure_panel in $LONG; do
    figure=${figure_panel%%:*}; [ "$figure" = fig3 ] && epochs=$E3 || epochs=$E4
    train "${figure_panel#*:}" "$figure.py" "${figure_panel#*:}" "$epochs"
done
while pgrep -f "reproduce/fig" >/dev/null; do sleep 10; pack; done
wait $ZOOM_PID  # the zoom-out jobs of phase A
echo "phase B done after $(elapsed) s"

# Phase C: both panels of a figure in one folder, measured in full and drawn.
for figure in fig3 fig4; do
    [ "$figure" = fig3 ] && epochs=$E3 || epochs=$E4
    mkdir -p "$R/$figure"
    for panel in $(echo $LONG | tr ' ' '\n' | grep "^$figure:" | cut -d: -f2); do
        cp "$R/$panel"/$panel.* "$R/$panel"/history_$panel.csv "$R/$figure"/
    done
    cp $R/judge/judge_cifar10.* "$R/$figure"/
    ( python3 reproduce/$figure.py --epochs "$epochs" --output-dir "$R/$figure" --samples-per-class $SAMPLES "${TINY[@]}" \
          > "$OUT/logs/$figure.log" 2>&1; echo "exit status $? after $(elapsed) s" >> "$OUT/logs/$figure.log" ) &
done
zoom_out fig3/fig3_cifar10_sss
while pgrep -f "reproduce/(fig|zoom)" >/dev/null; do sleep 5; done
pkill nvidia-smi
pack
for log in "$OUT"/logs/*.log; do echo "== $(basename $log)"; grep -v -i warning "$log" | tail -n 3; done
echo "done after $(elapsed) s"
