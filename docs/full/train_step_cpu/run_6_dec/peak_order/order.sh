# Does measuring the matmul peak before training slow TF's fig3 step? Alternating, fresh processes.
# after_peaklast: /tmp/w/train_step_peaklast.py is benchmarks/train_step.py of 264ce32 with profiling.matmul_peak
# called after step_seconds (as 4d4f25b's benchmark does) instead of before it.
source /work/venv/bin/activate
for r in $(seq 1 ${ROUNDS:-5}); do
  for v in before_own after_own after_peaklast; do
    case $v in
      before_own) dir=/tmp/v2; script=benchmarks/train_step.py;;
      after_own) dir=/tmp/after; script=benchmarks/train_step.py;;
      after_peaklast) dir=/tmp/after; script=/tmp/w/train_step_peaklast.py;;
    esac
    s=$(date +%s)
    (cd $dir && PYTHONPATH=$dir KERAS_BACKEND=tensorflow python $script --presets fig3_cifar10 --steps 6 --warmup 2 --json /tmp/w/order/${v}_r$r.json 2>/dev/null | grep "^fig3" | sed "s/^/$v r$r /")
    echo "  $(( $(date +%s) - s )) s"
  done
done
echo ORDER DONE
