#!/bin/bash
# Issue 21: benchmarks/train_step.py before (commit 4d4f25b, a worktree at $BEFORE) and after (this
# checkout), one backend after the other, ROUNDS times over, in one run. "after" runs as a user gets
# it: its benchmark (like the figure scripts) starts again with glibc's huge pages and heap settings and, on x86,
# TensorFlow's oneDNN kernels (keras_ace.runtime) unless GLIBC_TUNABLES is set; "before" has no such thing.
source /work/venv/bin/activate
OUT=${OUT:-/work/runs/ab}
BEFORE=${BEFORE:-/tmp/v2}
AFTER=$(cd "$(dirname "$0")/../../.." && pwd)
PRESETS=${PRESETS:-"fig2_rts_mnist fig3_cifar10 fig4_cifar10_spatial_color"}
mkdir -p $OUT
for r in $(seq 1 ${ROUNDS:-1}); do
  for b in ${BACKENDS:-tensorflow jax torch}; do
    for tree in before:$BEFORE after:$AFTER; do
      name=${tree%%:*}; dir=${tree#*:}
      echo "== round $r $name $b"
      (cd $dir && PYTHONPATH=$dir KERAS_BACKEND=$b python benchmarks/train_step.py --presets $PRESETS \
        --steps ${STEPS:-5} --warmup 2 --json $OUT/${name}_${b}_r$r.json 2>/dev/null | grep -v "^preset")
    done
  done
done
echo AB DONE
