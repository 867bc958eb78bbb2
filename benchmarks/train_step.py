"""Training speed of the paper's presets on the current Keras backend.

For each preset: training images per second, step time (median of timed steps after
warm-up), peak host memory, the model's FLOPs per training step (counted from its
layers) and the fraction of the machine's float32 matmul peak it achieves (the peak
measured in the same run). `--how` names the ways to train that are timed, each on a
fresh model: `train_on_batch` (the default), `fit` and `fit:S` (`fit`'s second epoch,
with `steps_per_execution` S), `eager` (`fit` without XLA). `--compare-decoders` times a preset with per-class decoders
against the same net with one shared decoder.

    KERAS_BACKEND=jax python benchmarks/train_step.py                      # every preset
    KERAS_BACKEND=jax python benchmarks/train_step.py --presets fig2_rts_mnist
    KERAS_BACKEND=jax python benchmarks/train_step.py --how train_on_batch fit fit:10 eager --steps 40 --peak-size 8192
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

import keras
import numpy as np

from keras_ace import runtime
from keras_ace.layers.class_conditional import CAPACITY_DEVIATIONS as DEFAULT_DEVIATIONS

# Steps per epoch without XLA: each takes seconds (every operation dispatched on its own).
EAGER_STEPS = 3


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch of `fit`."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


def step_seconds(name, how, steps, warmup, batch_size, overrides):
    """Median seconds per training step of preset `name`, trained as `how` says.

    `how`: "train_on_batch" (one call per step, what the CPU tables use); "fit" or
    "fit:S" (`fit` over an epoch of `steps` batches with `steps_per_execution` S; the
    second epoch is timed, the first compiles); "eager" (`fit` with `jit_compile=False`).
    """
    import keras_ace
    from keras_ace.layers import class_conditional
    from keras_ace.models.presets import PRESETS

    how, _, variant = how.partition("/")
    if variant not in ("", "every_row"):
        raise ValueError(f"Unknown variant. Expected every_row. Received: {variant!r}")
    # every_row: each per-class layer runs every class on every row, where shapes are fixed
    # when compiled (JAX), instead of one part per class (how JAX ran before issue 21).
    class_conditional.CAPACITY_DEVIATIONS = 1e9 if variant else DEFAULT_DEVIATIONS
    kind, _, spe = how.partition(":")
    config = keras_ace.TrainingConfig.for_dataset(
        PRESETS[name]["dataset"], steps_per_execution=int(spe or 1), jit_compile=kind != "eager")
    model = keras_ace.build_preset(name, training=config, **overrides)
    rng = np.random.default_rng(0)
    if kind == "train_on_batch":
        x = rng.random((batch_size, *model.image_shape), np.float32)
        y = rng.integers(0, model.num_classes, batch_size)
        for _ in range(warmup):
            model.train_on_batch(x, y)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - start)
        return model, float(np.median(times))
    if kind not in ("fit", "eager"):
        raise ValueError(f"Unknown way to train. Expected train_on_batch, fit, fit:S or eager. Received: {how!r}")
    if kind == "eager":
        steps = min(steps, EAGER_STEPS)
    x = rng.random((steps * batch_size, *model.image_shape), np.float32)
    y = rng.integers(0, model.num_classes, steps * batch_size)
    timer = EpochTimer()
    model.fit(x, y, batch_size=batch_size, epochs=2, verbose=0, callbacks=[timer], shuffle=False)
    return model, timer.seconds[1] / steps


def time_preset(name, hows, steps, warmup, batch_size, overrides, peak_size):
    from keras_ace import profiling

    peak = profiling.matmul_peak(size=peak_size)
    runs = []
    for how in hows:
        model, step = step_seconds(name, how, steps, warmup, batch_size, overrides)
        flops = profiling.training_flops(model) * batch_size
        runs.append({
            "preset": name,
            "how": how,
            "backend": keras.backend.backend(),
            "device": device_name(),
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
            # The process settings of keras_ace.runtime, as this run had them.
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
            "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", ""),
        })
    return runs


def device_name():
    if keras.backend.backend() == "jax":
        import jax

        return jax.devices()[0].device_kind
    return "cpu"


def run_isolated(name, args, overrides=None):
    """`time_preset` in a process of its own (so that peak memory is the preset's): one result per way to train."""
    command = [sys.executable, __file__, "--one", name, "--how", *args.how, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch-size", str(args.batch_size), "--peak-size", str(args.peak_size),
               "--overrides", json.dumps(overrides or {})]
    out = subprocess.run(command, capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    from keras_ace.models.presets import PRESETS

    # As the figure scripts run (keras_ace.runtime); `GLIBC_TUNABLES=` (empty) times without.
    runtime.configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=sorted(PRESETS))
    parser.add_argument("--how", nargs="*", default=["train_on_batch"],
                        help="ways to train, each timed: train_on_batch, fit, fit:S (steps_per_execution S), "
                             "eager (fit without XLA)")
    parser.add_argument("--compare-decoders", metavar="PRESET")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (train_on_batch) or steps per epoch (fit)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--peak-size", type=int, default=2048, help="matrix size of the matmul-peak measurement")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print(json.dumps(time_preset(args.one, args.how, args.steps, args.warmup, args.batch_size,
                                     json.loads(args.overrides), args.peak_size)))
        return
    if args.compare_decoders:
        (shared,), (per_class,) = [run_isolated(args.compare_decoders, args, {"per_class_decoders": flag})
                                   for flag in (False, True)]
        runs = [shared, per_class]
        print(f"{args.compare_decoders} [{shared['backend']}] step time: 1 shared decoder {shared['step_s'] * 1e3:.0f} ms, "
              f"10 per-class decoders {per_class['step_s'] * 1e3:.0f} ms, ratio {per_class['step_s'] / shared['step_s']:.2f}")
    else:
        runs = []
        print(f"{'preset':28s} {'backend':10s} {'how':15s} {'img/s':>7s} {'step ms':>8s} {'GFLOP/step':>10s} "
              f"{'GFLOP/s':>8s} {'peak':>7s} {'of peak':>7s} {'RSS GiB':>7s}")
        for name in args.presets:
            for r in run_isolated(name, args):
                runs.append(r)
                print(f"{name:28s} {r['backend']:10s} {r['how']:15s} {r['images_per_s']:7.0f} {r['step_s'] * 1e3:8.1f} "
                      f"{r['step_gflop']:10.1f} {r['achieved_gflop_per_s']:8.1f} {r['matmul_peak_gflop_per_s']:7.0f} "
                      f"{r['fraction_of_peak']:7.1%} {r['peak_rss_gib']:7.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=2)


if __name__ == "__main__":
    main()
