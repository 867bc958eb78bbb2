"""Shared test set-up: real data from ../shared/data, a private cache, never the network."""

import os
import platform
import sys
import tempfile

import pytest

# The reproduce/ scripts import their shared code as `common` (reproduce/common/), the
# folder of the running script being first on the path; the tests import it the same way.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reproduce"))

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
os.environ["KERAS_ACE_OFFLINE"] = "1"
os.environ.setdefault("KERAS_ACE_CACHE", os.path.join(tempfile.gettempdir(), "keras_ace_test_cache"))
if os.path.isdir(SHARED_DATA):
    os.environ.setdefault("KERAS_ACE_DATA", SHARED_DATA)

# The kernels the figure scripts train with (`keras_ace.runtime.configure`), without starting
# pytest again: TensorFlow's oneDNN kernels, read when Keras first imports TensorFlow.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# On JAX most of the quick suite's time is XLA compiling tiny models, many of them the same
# from test to test: a compilation cache shared by the tests (and by later runs) reuses them.
if os.environ.get("KERAS_BACKEND") == "jax":
    import jax

    jax.config.update("jax_compilation_cache_dir", os.path.join(tempfile.gettempdir(), "keras_ace_test_jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _has(file):
    folder = os.environ.get("KERAS_ACE_DATA")
    return bool(folder) and os.path.isfile(os.path.join(folder, file))


requires_mnist = pytest.mark.skipif(
    not _has("mnist.npz"), reason=f"mnist.npz not found in KERAS_ACE_DATA or {SHARED_DATA}"
)
requires_cifar10 = pytest.mark.skipif(
    not _has("cifar10-jpeg.zip"), reason=f"cifar10-jpeg.zip not found in KERAS_ACE_DATA or {SHARED_DATA}"
)


@pytest.fixture(scope="session")
def trained_ace(tmp_path_factory):
    """One tiny RTS MNIST ACE with spatial symmetry statistics, trained one epoch and saved, once per run.

    Shared by the CLI, control, frames and reload tests. `folder` holds `ace.keras` and
    `images.npz` (its first 4 training images, key `x`); `model` is the trained model,
    `x` and `y` its training data.
    """
    import types

    import numpy as np

    import keras_ace
    from tests.test_model import TINY
    from tests.test_model import tiny_data

    folder = tmp_path_factory.mktemp("trained_ace")
    model = keras_ace.build_ace("rts_mnist", symmetry="spatial", seed=1, **TINY)
    x, y = tiny_data(32, (42, 42, 1))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(folder / "ace.keras")
    np.savez(folder / "images.npz", x=x[:4])
    return types.SimpleNamespace(folder=folder, path=folder / "ace.keras", model=model, x=x, y=y)
