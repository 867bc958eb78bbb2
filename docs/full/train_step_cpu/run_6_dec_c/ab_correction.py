"""In-process A/B on JAX, one model per variant, blocks of 3 steps alternating: apply_by_class, correct_if and matmul_parts of d174479 ("old") against this tree's ("new").

Run from the repository root: KERAS_BACKEND=jax GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python docs/full/train_step_cpu/run_6_dec_c/ab_correction.py fig3_cifar10 old,new 8"""
import sys, time, re, subprocess, types, contextlib, numpy as np
import keras_ace, keras
from keras import ops
from keras_ace import backend_ops
from keras_ace.layers import class_conditional as cc
from keras_ace.models import auto_encoder as ae
from keras_ace.models.presets import PRESETS
rev = "d174479"  # the tree before this session
bo_src = subprocess.check_output(["git", "show", f"{rev}:keras_ace/backend_ops.py"], text=True)
ns = {}; exec(compile(bo_src, "old_backend_ops", "exec"), ns); old_bo = types.SimpleNamespace(**ns)
cc_src = subprocess.check_output(["git", "show", f"{rev}:keras_ace/layers/class_conditional.py"], text=True)
fn_src = cc_src[cc_src.index("def apply_by_class"):cc_src.index("class ClassConditional(")]
ns2 = {"ops": ops, "backend_ops": old_bo, "static_capacity": cc.static_capacity}; exec(fn_src, ns2)
VARIANTS = {"new": (cc.apply_by_class, backend_ops.matmul_parts), "old": (ns2["apply_by_class"], old_bo.matmul_parts)}
@contextlib.contextmanager
def patched(v):
    keep = (cc.apply_by_class, backend_ops.matmul_parts)
    cc.apply_by_class = ae.apply_by_class = VARIANTS[v][0]; backend_ops.matmul_parts = VARIANTS[v][1]
    try: yield
    finally: cc.apply_by_class = ae.apply_by_class = keep[0]; backend_ops.matmul_parts = keep[1]
name = sys.argv[1]; names = sys.argv[2].split(","); blocks = int(sys.argv[3])
rng = np.random.default_rng(0)
models = {}
for n in names:
    config = keras_ace.TrainingConfig.for_dataset(PRESETS[name]["dataset"])
    m = keras_ace.from_preset(name, training=config)
    x = rng.random((250, *m.image_shape), np.float32); y = rng.integers(0, m.num_classes, 250)
    with patched(n):
        m.train_on_batch(x, y)
    m.train_on_batch(x, y)
    models[n] = m
t = {n: [] for n in names}
for b in range(blocks):
    for n in (names if b % 2 == 0 else names[::-1]):
        for _ in range(3):
            s = time.perf_counter(); models[n].train_on_batch(x, y); t[n].append(1000 * (time.perf_counter() - s))
for n in names:
    print(f"{name} {n:6s} median {np.median(t[n]):6.0f} ms  (n={len(t[n])}, q25 {np.percentile(t[n],25):.0f}, q75 {np.percentile(t[n],75):.0f})", flush=True)
print("ratio new/old of block medians:", np.round([np.median(t['new'][i:i+3]) / np.median(t['old'][i:i+3]) for i in range(0, len(t['new']), 3)], 2))
