"""Data-parallel training on 2 virtual CPU devices matches one device."""

import json
import os
import subprocess
import sys

import keras
import pytest

SCRIPT = """
import json, sys
import numpy as np
import keras
if keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras_ace

rng = np.random.default_rng(0)
x = rng.random((64, 16, 16, 1)).astype("float32")
y = rng.integers(0, 10, 64)
tiny = dict(encoder_units=(32, 32), decoder_units=32, classifier_filters=(4, 4, 4), classifier_units=16,
            ssn_filters=(4, 4), ssn_units=8, input_dropout=0.0, hidden_dropout=0.0, image_shape=(16, 16, 1), seed=0)
result = {}
for distribution in (None, "data_parallel"):
    keras.utils.set_random_seed(0)
    model = keras_ace.build_ace("mnist", symmetry="spatial", distribution=distribution, **tiny)
    history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    result[str(distribution)] = history.history["loss"]
# The devices the data-parallel model actually trained on.
if keras.backend.backend() == "jax":
    result["devices"] = int(np.size(keras.distribution.distribution().device_mesh.devices))
else:
    result["devices"] = int(model.distribute_strategy.num_replicas_in_sync)
print(json.dumps(result))
"""


@pytest.mark.slow
@pytest.mark.every_backend
def test_two_devices_match_one():
    backend = keras.backend.backend()
    if backend == "torch":
        pytest.skip("Keras has no multi-device training for PyTorch")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 2
    one, two = result["None"], result["data_parallel"]
    # JAX draws the same noise for the global batch; TensorFlow's replicas draw their
    # own, so their losses agree up to the Monte-Carlo noise of the latent sample.
    tolerance = 1e-3 if backend == "jax" else 2e-2
    for a, b in zip(one, two):
        assert abs(a - b) <= tolerance * abs(a), (one, two)


def test_torch_refuses_with_a_clear_error():
    if keras.backend.backend() != "torch":
        pytest.skip("PyTorch only")
    import keras_ace

    with pytest.raises(ValueError, match="needs the JAX or TensorFlow backend"):
        keras_ace.build_ace("mnist", distribution="data_parallel")
    with pytest.raises(ValueError, match="Received: distribution='ddp'"):
        keras_ace.build_ace("mnist", distribution="ddp")
