"""A kind of symmetry statistics is one class and one registration (`keras_ace.models.symmetries`)."""

import numpy as np
import pytest
from keras import ops

import keras_ace
from keras_ace import ACE
from keras_ace.models.symmetries import Symmetry
from keras_ace.models.symmetries import register_symmetry
from keras_ace.models.symmetries import symmetry_kinds
from tests.helpers import save_and_reload
from tests.test_model import TINY
from tests.test_model import tiny_data


@register_symmetry
class Brightness(Symmetry):
    """A toy: one statistic, the image's brightness factor exp(0.1 u)."""

    kind, key, num_statistics, default_gain = "brightness", "brightness", 1, 0.1
    transform_shape = (1,)

    def transform(self, u):
        return ops.exp(self.gain * u)  # (B, 1)

    def canonicalize(self, x, factor):
        return x * factor[:, :, None, None]

    def to_observation(self, x, factor):
        return ops.clip(x / factor[:, :, None, None], 0.0, 1.0)


def test_a_registered_symmetry_trains_saves_and_loads(tmp_path):
    model = ACE((16, 16, 1), symmetry=("spatial", "brightness"), **{**TINY, "seed": 1})
    keras_ace.compile_ace(model)
    x, y = tiny_data(32)
    model.fit(x, y, epochs=1, verbose=0)
    assert model.symmetry_net.num_statistics == 7
    frames = model.symmetry_statistics(x[:4])
    assert set(frames) == {"theta", "brightness"} and frames["brightness"].shape == (4, 1)
    reloaded = save_and_reload(model, tmp_path)
    assert reloaded.symmetry == ("spatial", "brightness")
    np.testing.assert_allclose(reloaded.reconstruct(x[:4]), model.reconstruct(x[:4]), atol=1e-5)


def test_box_04_applies_the_symmetries_in_order_and_undoes_them_in_reverse():
    model = ACE((16, 16, 1), symmetry=("spatial", "brightness"), **{**TINY, "seed": 1})
    x, _ = tiny_data(2)
    frame = {"theta": np.tile(np.float32([1, 0, 0, 0, 1, 0]), (2, 1)), "brightness": np.float32([[0.5], [0.8]])}
    canonical = ops.convert_to_numpy(model.canonicalize(x, frame))
    np.testing.assert_allclose(canonical, x * np.float32([0.5, 0.8])[:, None, None, None], atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(model.to_observation(canonical, frame)), x, atol=1e-5)


def test_the_paper_combinations_and_unknown_names():
    assert symmetry_kinds("spatial_color") == ("spatial", "color") and symmetry_kinds(None) == ()
    for bad in ("colour", ("spatial", "spatial"), ("spatial", "mirror")):
        with pytest.raises(ValueError, match="Unknown symmetry"):
            symmetry_kinds(bad)
