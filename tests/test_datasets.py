"""A data set is one record (`keras_ace.datasets`): the library reads it, never a loader."""

import subprocess
import sys

import numpy as np
import pytest

import keras_ace
from keras_ace.datasets import DATASETS
from keras_ace.datasets import Dataset
from tests.test_model import TINY


@pytest.fixture
def stripes():
    """A toy data set of three classes of 8x8 stripes, registered for one test."""
    keras_ace.register_dataset(Dataset("stripes", image_shape=(8, 8, 1), train_size=40, num_classes=3, learning_rate=0.002))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    x = np.zeros((40, 8, 8, 1), np.float32)
    for i, label in enumerate(y):
        x[i, :, 2 * label : 2 * label + 3] = 0.9  # a vertical stripe whose place is the class
    yield x, y
    del DATASETS["stripes"]


def test_a_registered_data_set_builds_trains_and_samples(stripes):
    x, y = stripes
    model = keras_ace.build_ace("stripes", **TINY)
    assert model.image_shape == (8, 8, 1) and model.num_classes == 3
    training = keras_ace.TrainingConfig.for_dataset("stripes")
    assert training.learning_rate == 0.002 and training.steps_per_epoch == 1  # 40 images, batch 250
    history = model.fit(x, y, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.sample(class_id=2, n=3, seed=0).shape == (3, 8, 8, 1)


def test_unknown_and_malformed_data_sets():
    with pytest.raises(ValueError, match=r"Unknown dataset. Expected one of \('mnist', 'rts_mnist', 'tc_mnist', 'cifar10'"):
        keras_ace.build_ace("svhn")
    with pytest.raises(ValueError, match="at least two classes"):
        Dataset("one_class", (8, 8, 1), train_size=10, num_classes=1)


def test_the_records_agree_with_the_loaders():
    from data_tools import IMAGE_SHAPES

    assert {name: DATASETS[name].image_shape for name in IMAGE_SHAPES} == {k: tuple(v) for k, v in IMAGE_SHAPES.items()}


def test_the_library_imports_no_loader():
    code = "import sys, keras_ace; print(sorted(m for m in sys.modules if m.split('.')[0] == 'data_tools'))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]
