"""Tiny ACEs saved in older layouts, with their outputs, for tests/test_parts.py.

Made once on TensorFlow: `legacy_*` (layout 1, keras_ace 0.1, one flat Model) with the
code of commit ceacc64, the last 0.1 commit; `layout2_*` (keras_ace 0.3, one variable per
class) with commit 4d4f25b, the last of layout 2:

    git worktree add /tmp/v01 ceacc64 && cd /tmp/v01 && python /path/to/tests/data/make_legacy.py /path/to/tests/data legacy
    git worktree add /tmp/v2 4d4f25b && cd /tmp/v2 && python /path/to/tests/data/make_legacy.py /path/to/tests/data layout2
"""
import sys
import numpy as np
import keras
import keras_ace
from keras_ace import ACE

out, prefix = sys.argv[1], sys.argv[2]
TINY = dict(encoder_units=(8, 8), decoder_units=8, classifier_filters=(4, 4, 4), classifier_units=8,
            ssn_filters=(4, 4), ssn_units=8, seed=1)
rng = np.random.default_rng(0)
cases = {
    "dense_spatial": dict(image_shape=(8, 8, 1), symmetry="spatial"),
    "conv_spatial_color": dict(image_shape=(8, 8, 3), symmetry="spatial_color", encoder="conv", conv_filters=(4, 8), latent_dim=2),
}
for name, kw in cases.items():
    model = ACE(**{**TINY, **kw})
    keras_ace.compile_ace(model)
    x = rng.random((32, *kw["image_shape"])).astype(np.float32)
    y = rng.integers(0, 10, 32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(f"{out}/{prefix}_{name}.keras")
    probe = x[:4]
    np.savez(f"{out}/{prefix}_{name}.npz", x=probe, reconstruct=model.reconstruct(probe), classify=model.classify(probe),
             theta=model.symmetry_statistics(probe)["theta"], sample=model.sample(3, 2, seed=5),
             iterations=int(keras.ops.convert_to_numpy(model.optimizer.iterations)))
    print(name, "saved")
