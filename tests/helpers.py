"""Test helpers: gradients on every backend, save/reload round trips."""

import os

import keras
import numpy as np


def gradient(fn, x):
    """d fn(x) / dx for a scalar-valued `fn` of one float32 numpy array, as numpy."""
    x = np.asarray(x, np.float32)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v))(x))
    if backend == "tensorflow":
        import tensorflow as tf

        v = tf.Variable(x)
        with tf.GradientTape() as tape:
            y = fn(v)
        return tape.gradient(y, v).numpy()
    if backend == "torch":
        import torch

        v = torch.tensor(x, requires_grad=True)
        fn(v).backward()
        return v.grad.cpu().numpy()
    raise NotImplementedError(backend)


def cut_short(path, keep=1 / 3, out=None):
    """What an interrupted copy or download leaves: the first part of `path`, written over it or to `out`."""
    data = open(path, "rb").read()
    open(out or path, "wb").write(data[: int(len(data) * keep)])


def numpy(x):
    return keras.ops.convert_to_numpy(x)


def save_and_reload(model, tmp_path, name="model.keras"):
    path = os.path.join(str(tmp_path), name)
    model.save(path)
    return keras.saving.load_model(path)
