"""Training speed of the paper's presets on the current Keras backend.

For each preset: training images per second, step time (median of timed steps after
warm-up), peak host memory, the model's FLOPs per training step (counted from its
layers) and the fraction of the machine's float32 matmul peak it achieves (the peak
measured in the same run). `--compare-decoders` times a preset with per-class decoders
against the same net with one shared decoder.

    KERAS_BACKEND=jax python benchmarks/train_step.py                      # every preset
    KERAS_BACKEND=jax python benchmarks/train_step.py --presets fig2_rts_mnist
    KERAS_BACKEND=tensorflow python benchmarks/train_step.py --compare-decoders fig2_rts_mnist

Each preset runs in its own process, so that peak memory is its own.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def time_preset(name, steps, warmup, batch_size, overrides):
    import keras

    import keras_ace
    from keras_ace import profiling

    model = keras_ace.from_preset(name, **overrides)
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *model.image_shape), np.float32)
    y = rng.integers(0, model.num_classes, batch_size)
    model.build()
    for _ in range(warmup):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    step = float(np.median(times))
    flops = profiling.training_flops(model) * batch_size
    peak = profiling.matmul_peak()
    return {
        "preset": name,
        "backend": keras.backend.backend(),
        "overrides": overrides,
        "batch_size": batch_size,
        "parameters": model.count_params(),
        "step_s": step,
        "images_per_s": batch_size / step,
        "step_gflop": flops / 1e9,
        "achieved_gflop_per_s": flops / step / 1e9,
        "matmul_peak_gflop_per_s": peak / 1e9,
        "fraction_of_peak": flops / step / peak,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def run_isolated(name, args, overrides=None):
    command = [sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--batch-size", str(args.batch_size), "--overrides", json.dumps(overrides or {})]
    out = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    from keras_ace.models.presets import PRESETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=sorted(PRESETS))
    parser.add_argument("--compare-decoders", metavar="PRESET")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print(json.dumps(time_preset(args.one, args.steps, args.warmup, args.batch_size, json.loads(args.overrides))))
        return
    if args.compare_decoders:
        runs = [run_isolated(args.compare_decoders, args, {"per_class_decoders": flag}) for flag in (False, True)]
        shared, per_class = runs
        print(f"{args.compare_decoders} [{shared['backend']}] step time: 1 shared decoder {shared['step_s'] * 1e3:.0f} ms, "
              f"10 per-class decoders {per_class['step_s'] * 1e3:.0f} ms, ratio {per_class['step_s'] / shared['step_s']:.2f}")
    else:
        runs = []
        header = f"{'preset':28s} {'backend':10s} {'img/s':>7s} {'step ms':>8s} {'GFLOP/step':>10s} {'GFLOP/s':>8s} {'peak':>7s} {'of peak':>7s} {'RSS GiB':>7s}"
        print(header)
        for name in args.presets:
            r = run_isolated(name, args)
            runs.append(r)
            print(f"{name:28s} {r['backend']:10s} {r['images_per_s']:7.0f} {r['step_s'] * 1e3:8.0f} {r['step_gflop']:10.1f} "
                  f"{r['achieved_gflop_per_s']:8.1f} {r['matmul_peak_gflop_per_s']:7.0f} {r['fraction_of_peak']:7.1%} {r['peak_rss_gib']:7.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=2)


if __name__ == "__main__":
    main()
