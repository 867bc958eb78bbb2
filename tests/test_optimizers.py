import keras
import numpy as np

from keras_ace.optimizers import Adam


def test_fused_adam_matches_keras_adam():
    rng = np.random.default_rng(0)
    start = rng.normal(size=(5, 3)).astype(np.float32)
    grads = [rng.normal(size=(5, 3)).astype(np.float32) for _ in range(4)]
    results = []
    for optimizer in (Adam(learning_rate=0.01), keras.optimizers.Adam(learning_rate=0.01)):
        variable = keras.Variable(start)
        optimizer.build([variable])
        for g in grads:
            optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
        results.append(keras.ops.convert_to_numpy(variable))
    assert np.abs(results[0] - start).max() > 0.01
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_serialisation():
    optimizer = Adam(learning_rate=0.003)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(restored, Adam) and restored.learning_rate == optimizer.learning_rate
