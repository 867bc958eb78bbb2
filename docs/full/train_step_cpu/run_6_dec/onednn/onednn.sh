# TensorFlow's oneDNN graph rewrites (off by default on a CPU without AVX-512/VNNI, as this one) on the after tree.
source /work/venv/bin/activate
for r in $(seq 1 ${ROUNDS:-3}); do
  for v in default onednn; do
    case $v in default) env="";; onednn) env="TF_ENABLE_ONEDNN_OPTS=1";; esac
    (cd /tmp/after && env $env PYTHONPATH=/tmp/after KERAS_BACKEND=tensorflow python benchmarks/train_step.py --presets ${PRESETS:-fig3_cifar10} --steps 6 --warmup 2 --json /tmp/w/onednn/${v}_r$r.json 2>/dev/null | grep "^fig" | sed "s/^/$v r$r /")
  done
done
echo ONEDNN DONE
