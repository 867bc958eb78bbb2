"""One process, one model: blocks of 3 steps alternate glibc mapping large blocks afresh ("mmap", its default) with keeping them in the heap ("heap": mmap_max=0, high trim threshold), set with mallopt between blocks. arena_max=1 is set first thing (before any thread), in both arms.

KERAS_BACKEND=jax GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python ab_malloc.py fig3_cifar10 6 arena1"""

import ctypes, sys, time, resource
libc = ctypes.CDLL("libc.so.6")
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
if sys.argv[3] == "arena1":
    libc.mallopt(M_ARENA_MAX, 1)
import numpy as np
import keras_ace
from keras_ace.models.presets import PRESETS
name, blocks = sys.argv[1], int(sys.argv[2])
config = keras_ace.TrainingConfig.for_dataset(PRESETS[name]["dataset"])
m = keras_ace.from_preset(name, training=config)
rng = np.random.default_rng(0)
x = rng.random((250, *m.image_shape), np.float32); y = rng.integers(0, m.num_classes, 250)
for _ in range(3): m.train_on_batch(x, y)
def arm(heap):
    if heap:
        libc.mallopt(M_MMAP_MAX, 0); libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    else:
        libc.mallopt(M_MMAP_MAX, 65536); libc.mallopt(M_TRIM_THRESHOLD, 128 * 1024)
t = {"mmap": [], "heap": []}; f = {"mmap": 0, "heap": 0}
for b in range(blocks):
    for a in (("mmap", "heap") if b % 2 == 0 else ("heap", "mmap")):
        arm(a == "heap"); m.train_on_batch(x, y)  # one step to settle
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            s = time.perf_counter(); m.train_on_batch(x, y); t[a].append(1000 * (time.perf_counter() - s))
        f[a] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
for a in t:
    print(f"{name} {sys.argv[3]} {a}: median {np.median(t[a]):.0f} ms, faults/step {f[a] / len(t[a]):.0f}", flush=True)
