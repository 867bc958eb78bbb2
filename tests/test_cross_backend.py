"""A `.keras` file saved under one backend loads under the others with the same outputs."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.test_model import tiny_ace
from tests.test_model import tiny_data

BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
LOAD = """
import sys
import keras, numpy as np
import keras_ace
assert keras.backend.backend() == sys.argv[4], keras.backend.backend()
model = keras.saving.load_model(sys.argv[1])
x = np.load(sys.argv[2])
np.savez(sys.argv[3], reconstruct=model.reconstruct(x), classify=model.classify(x))
"""


@pytest.mark.slow
@pytest.mark.every_backend
@pytest.mark.parametrize("other", sorted(BACKEND_MODULES))
def test_saved_model_loads_under_another_backend(other, tmp_path):
    if other == keras.backend.backend():
        pytest.skip("same backend: covered by the save/reload test")
    if importlib.util.find_spec(BACKEND_MODULES[other]) is None:
        pytest.skip(f"{other} is not installed")
    # Every kind of symmetry: spatial, the mirror (discrete) and colour.
    model = tiny_ace((16, 16, 3), symmetry="spatial_mirror_color", encoder="conv", conv_filters=(4, 8), sampling="laplacian")
    x, y = tiny_data(8, (16, 16, 3))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    # A clear preference of orientation, so that no backend's rounding flips a tie.
    score = model.symmetry_net.state_score.kernel
    score.assign(np.random.default_rng(0).normal(0, 1, score.shape).astype("float32"))
    path = str(tmp_path / "ace.keras")
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    result = subprocess.run(
        [sys.executable, "-c", LOAD, path, str(tmp_path / "x.npy"), str(out), other],
        capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": other},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = np.load(out)
    np.testing.assert_allclose(loaded["reconstruct"], model.reconstruct(x), atol=1e-4)
    np.testing.assert_allclose(loaded["classify"], model.classify(x), atol=1e-4)
