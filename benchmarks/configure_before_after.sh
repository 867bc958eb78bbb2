#!/bin/bash
# The train-step benchmark on the code at BEFORE (a commit) and on the working tree, one
# run, the backends in turn: e.g. the process settings made at import against the explicit
# keras_ace.runtime.configure() call.
#   BEFORE=<commit> OUT=docs/full/configure_before_after_cpu bash benchmarks/configure_before_after.sh
set -e
: "${BEFORE:?name the commit to compare with: BEFORE=<commit>}"
OUT=${OUT:-docs/full/configure_before_after_cpu}
ROOT=$(git rev-parse --show-toplevel)
WORKTREE=$(mktemp -d)/before
git -C "$ROOT" worktree add --detach "$WORKTREE" "$BEFORE" > /dev/null
trap 'git -C "$ROOT" worktree remove --force "$WORKTREE"' EXIT
for backend in tensorflow jax torch; do
  for version in before after; do
    tree=$ROOT; [ $version = before ] && tree=$WORKTREE
    (cd "$tree" && PYTHONPATH="$tree" KERAS_BACKEND=$backend python benchmarks/train_step.py \
      --presets fig2_rts_mnist fig3_cifar10 fig4_cifar10_spatial_color --steps 5 --warmup 2 \
      --json "$ROOT/$OUT/${backend}_${version}.json" > /dev/null 2>&1)
    echo "$backend $version done"
  done
done
