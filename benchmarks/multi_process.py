"""Training over two processes against one, on this machine (JAX, localhost, one CPU device each).

Per preset: `fit`'s step time with one process (global batch 250) and with two
(`keras_ace.distributed`, 125 rows each, the same global batch), and the cost of the
gradient exchange alone: an all-reduce of as many float32 values as the model has
weights, between the two processes, timed on its own. On one shared CPU the two
processes split the same cores, so this checks correctness and overhead, not speed-up.

    python benchmarks/multi_process.py --presets fig2_mnist fig2_rts_mnist --steps 6
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import numpy as np


def worker(preset, count, index, port, steps):
    import keras

    import keras_ace
    from train_step import EpochTimer  # the benchmark beside this one (this folder is on the path)

    if count > 1:
        keras_ace.distributed.initialize(f"localhost:{port}", count, index)
    keras.utils.set_random_seed(0)
    model = keras_ace.build_preset(preset, distribution="data_parallel" if count > 1 else None)
    rng = np.random.default_rng(0)
    x = rng.random((steps * 250, *model.image_shape), np.float32)
    y = rng.integers(0, 10, steps * 250)
    timer = EpochTimer()
    model.fit(x, y, epochs=2, shuffle=False, verbose=0, callbacks=[timer])
    result = {"preset": preset, "processes": count, "parameters": model.count_params(), "step_s": timer.seconds[1] / steps}
    if count > 1:
        result["all_reduce_s"] = all_reduce_seconds(model.count_params())
    return result


def all_reduce_seconds(size, repeats=5):
    """Median seconds of summing `size` float32 values over all processes (each process's row of a global array)."""
    import jax
    from jax.sharding import Mesh
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec

    mesh = Mesh(np.array(jax.devices()), ("processes",))
    rows = NamedSharding(mesh, PartitionSpec("processes"))
    local = np.ones((1, size), np.float32)
    values = jax.make_array_from_process_local_data(rows, local)
    total = jax.jit(lambda v: v.sum(axis=0), out_shardings=NamedSharding(mesh, PartitionSpec()))
    total(values).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        total(values).block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run(preset, count, steps):
    port = free_port()
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    processes = [subprocess.Popen([sys.executable, __file__, "--worker", preset, str(count), str(i), str(port), str(steps)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(count)]
    results = []
    for p in processes:
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(err[-3000:])
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["fig2_mnist"])
    parser.add_argument("--steps", type=int, default=6, help="steps per timed epoch")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        preset, count, index, port, steps = args.worker
        print(json.dumps(worker(preset, int(count), int(index), port, int(steps))))
        return
    rows = []
    print(f"{'preset':22s} {'weights':>10s} {'1 process ms':>13s} {'2 processes ms':>15s} {'ratio':>6s} {'all-reduce ms':>14s}")
    for preset in args.presets:
        one, two = run(preset, 1, args.steps), run(preset, 2, args.steps)
        rows += [one, two]
        print(f"{preset:22s} {one['parameters']:10d} {one['step_s'] * 1e3:13.0f} {two['step_s'] * 1e3:15.0f} "
              f"{two['step_s'] / one['step_s']:6.2f} {two['all_reduce_s'] * 1e3:14.0f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
