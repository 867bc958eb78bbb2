#!/bin/bash
# Issue 21: benchmarks/train_step.py before (commit 4d4f25b, /tmp/v2) and after (/work/main), same run, each backend in turn.
source /work/venv/bin/activate
OUT=${OUT:-/work/runs/ab}
PRESETS=${PRESETS:-"fig2_rts_mnist fig3_cifar10 fig4_cifar10_spatial_color"}
for b in ${BACKENDS:-tensorflow jax torch}; do
  for tree in before:/tmp/v2 after:/work/main; do
    name=${tree%%:*}; dir=${tree#*:}
    echo "== $name $b"
    (cd $dir && PYTHONPATH=$dir KERAS_BACKEND=$b python benchmarks/train_step.py --presets $PRESETS --steps 5 --warmup 2 --json $OUT/${name}_$b.json 2>/dev/null)
  done
done
echo AB DONE
