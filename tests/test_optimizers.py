import keras
import numpy as np
import pytest

from keras_ace import backend_ops
from keras_ace.backend_ops import optimizer_kernels
from keras_ace.optimizers import Adam


def numpy_adam(start, grads, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adam (Kingma and Ba 2015, with Keras' epsilon placement), written out in NumPy."""
    variable, m, v = start.astype(np.float64), np.zeros_like(start, np.float64), np.zeros_like(start, np.float64)
    for t, g in enumerate(grads, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g**2
        lr_t = lr * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        variable = variable - lr_t * m / (np.sqrt(v) + epsilon)
    return variable


def test_adam_matches_the_update_written_out():
    """The in-place update (TensorFlow, PyTorch) and Keras' (JAX) against NumPy."""
    rng = np.random.default_rng(0)
    start = rng.normal(size=(5, 3)).astype(np.float32)
    grads = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(4)]
    optimizer = Adam(learning_rate=0.01)
    variable = keras.Variable(start)
    optimizer.build([variable])
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    result = keras.ops.convert_to_numpy(variable)
    assert np.abs(result - start).max() > 0.01
    np.testing.assert_allclose(result, numpy_adam(start, grads, 0.01), rtol=1e-5, atol=1e-6)


def test_this_keras_keeps_the_adam_moments_where_the_fused_step_reads_them():
    """Fails on a Keras that renames Adam's private moment attributes (the fused step then falls back)."""
    optimizer = Adam(learning_rate=0.01)
    variables = [keras.Variable(np.zeros((2, 3), np.float32)), keras.Variable(np.zeros((4,), np.float32))]
    optimizer.build(variables)
    for variable in variables:
        moments = backend_ops.adam_moments(optimizer, variable)
        assert moments is not None, f"keras {keras.__version__} keeps Adam's moments elsewhere"
        assert all(tuple(m.shape) == tuple(variable.shape) and any(m is o for o in optimizer.variables) for m in moments)


def test_adam_without_the_private_moments_falls_back_to_keras_update(monkeypatch):
    """What a Keras that renames them gets: Keras' own update, the same numbers."""
    monkeypatch.setattr(optimizer_kernels, "adam_moments", lambda optimizer, variable: None)
    test_adam_matches_the_update_written_out()


def test_serialisation():
    optimizer = Adam(learning_rate=0.003)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, Adam) and restored.learning_rate == optimizer.learning_rate


def test_pytorch_update_in_pieces_where_the_fused_kernel_is_missing(monkeypatch):
    """PyTorch: `torch._fused_adam_` above; the in-place passes of a PyTorch without it, the same numbers."""
    if keras.backend.backend() != "torch":
        pytest.skip("PyTorch's own Adam kernel")
    import torch

    assert hasattr(torch, "_fused_adam_"), f"torch {torch.__version__} has no fused Adam kernel"
    monkeypatch.delattr(torch, "_fused_adam_")
    test_adam_matches_the_update_written_out()
