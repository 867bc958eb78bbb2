"""Bad input gets a clear message, and a non-finite batch never reaches the weights."""

import keras
import numpy as np
import pytest

import keras_ace
from keras_ace.optimizers import Adam
from keras_ace.training import StopOnSkippedStep
from tests.test_model import tiny_ace
from tests.test_model import tiny_data


class Batches(keras.utils.PyDataset):
    """Given batches, in order: a non-NumPy input that `check_data` cannot look into."""

    def __init__(self, batches):
        super().__init__()
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, index):
        return self.batches[index]


def weights_of(model):
    return [np.array(w) for w in model.get_weights()]


def nan_batch(n=8, image_shape=(16, 16, 1)):
    x, y = tiny_data(n, image_shape)
    x[0, 3, 3, 0] = np.nan
    return x, y


class TestNonFiniteSteps:
    def test_a_nan_batch_leaves_the_weights_as_before_it(self):
        good = tiny_data(8)
        # Two identical models (same weights, seeded sampling, no dropout): one sees the
        # good batch, the other the good batch and then a NaN one.
        reference, model = tiny_ace(input_dropout=0.0, hidden_dropout=0.0), tiny_ace(input_dropout=0.0, hidden_dropout=0.0)
        reference.build()
        model.build()
        model.set_weights(reference.get_weights())
        reference.fit(Batches([good]), shuffle=False, epochs=1, verbose=0)
        model.fit(Batches([good, nan_batch()]), shuffle=False, epochs=1, verbose=0)
        final = weights_of(model)
        assert all(np.isfinite(w).all() for w in final)
        for before, after in zip(weights_of(reference), final):
            np.testing.assert_array_equal(before, after)
        assert int(keras.ops.convert_to_numpy(model.optimizer.skipped_steps)) == 1
        assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 1
        # The model is still usable: control on clean images works and is finite.
        x, _ = tiny_data(2)
        assert np.isfinite(model.control(x, translate=(1, 0))).all()

    def test_training_continues_after_a_skipped_step(self):
        model = tiny_ace()
        model.build()
        start = weights_of(model)
        model.fit(Batches([nan_batch(), tiny_data(8)]), shuffle=False, epochs=1, verbose=0)
        assert int(keras.ops.convert_to_numpy(model.optimizer.skipped_steps)) == 1
        assert any(np.abs(a - b).max() > 0 for a, b in zip(start, weights_of(model)))

    def test_stop_on_skipped_step_names_the_batch(self):
        model = tiny_ace()
        stop = StopOnSkippedStep()
        model.fit(Batches([tiny_data(8), nan_batch(), tiny_data(8)]), shuffle=False, epochs=2, verbose=0, callbacks=[stop])
        assert stop.stopped_at == (0, 1)
        assert "epoch 1, batch 2" in stop.message()
        assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 1

    def test_optimizer_skips_and_counts(self):
        variable = keras.Variable(np.ones(3, np.float32))
        optimizer = Adam(learning_rate=0.1)
        optimizer.build([variable])
        for bad in ([np.inf, 0, 1], [np.inf, -np.inf, 1], [np.nan, 0, 1]):
            optimizer.apply([keras.ops.convert_to_tensor(np.array(bad, np.float32))], [variable])
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), np.ones(3))
        optimizer.apply([keras.ops.convert_to_tensor(np.ones(3, np.float32))], [variable])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), np.full(3, 0.9), atol=1e-5)
        assert int(keras.ops.convert_to_numpy(optimizer.skipped_steps)) == 3
        assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 1


class TestBadInput:
    """Each case of docs/bad_input.md that the public API must refuse with a clear message."""

    def test_fit_refuses_one_hot_labels_and_empty_data(self):
        model = tiny_ace()
        x, y = tiny_data(8)
        with pytest.raises(ValueError, match="not one-hot"):
            model.fit(x, np.eye(10, dtype=np.float32)[y], verbose=0)
        with pytest.raises(ValueError, match="not one-hot"):
            model.fit(Batches([(x, np.eye(10, dtype=np.float32)[y])]), shuffle=False, verbose=0)
        with pytest.raises(ValueError, match="at least one image"):
            model.fit(np.zeros((0, 16, 16, 1), np.float32), np.zeros((0,), np.int64), verbose=0)

    def test_fit_refuses_integer_images_from_a_dataset(self):
        model = tiny_ace()
        x, y = tiny_data(8)
        # JAX and PyTorch wrap errors of the first (symbolic) call in a RuntimeError.
        with pytest.raises((TypeError, RuntimeError), match="divide uint8 images by 255"):
            model.fit(Batches([((x * 255).astype(np.uint8), y)]), shuffle=False, verbose=0)
        with pytest.raises((ValueError, RuntimeError), match=r"Received: shape=\(\w+, 16, 16, 3\)"):
            model.fit(Batches([(np.zeros((8, 16, 16, 3), np.float32), y)]), shuffle=False, verbose=0)

    @pytest.mark.parametrize(
        "call, error, message",
        [
            (lambda m: m.sample(3, -1), ValueError, r"n must be a positive integer. Received: n=-1"),
            (lambda m: m.sample(3, 2.5), ValueError, r"Received: n=2.5"),
            (lambda m: m.sample("3", 2), TypeError, r"class_id must be an integer. Received: class_id='3'"),
            (lambda m: m.sample(10, 2), ValueError, r"Received: class_id=10"),
            (lambda m: m.sample(1, 2, frames="data"), ValueError, r"Received: frames='data'"),
            (lambda m: m.latent_grid(1, np.zeros((3, 2))), ValueError, r"values.shape=\(3, 2\)"),
            (lambda m: m.latent_grid(1, [np.nan]), ValueError, "NaN"),
            (lambda m: m.control(tiny_data(2)[0], rotate=np.inf), ValueError, "rotate must be a finite number"),
            (lambda m: m.control(tiny_data(2)[0], translate=(1, 2, 3)), ValueError, r"translate must be two numbers"),
            (lambda m: m.control(tiny_data(2)[0], scale=0), ValueError, r"scale must be positive"),
            (lambda m: m.control(tiny_data(2)[0], color=np.eye(3)), ValueError, r"RGB images"),
            (lambda m: m.classify(np.zeros((2, 16, 16))), ValueError, r"Received: shape=\(2, 16, 16\)"),
            (lambda m: m.classify(tiny_data(2)[0], batch_size=0), ValueError, r"batch_size must be a positive"),
            (lambda m: m.draw_frames(0), ValueError, r"Received: n=0"),
        ],
    )
    def test_generation_and_control_arguments(self, call, error, message):
        with pytest.raises(error, match=message):
            call(tiny_ace())

    def test_fitted_frames_need_a_fitted_prior(self):
        with pytest.raises(ValueError, match="needs a fitted frame prior"):
            tiny_ace().sample(1, 2, frames="fitted")


class TestFramePrior:
    def test_fit_fits_the_frames_and_sample_uses_them(self):
        model = tiny_ace()
        x, y = tiny_data(32)
        assert not model.symmetry_net.frame_prior.is_fitted
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert model.symmetry_net.frame_prior.is_fitted
        inferred = keras.ops.convert_to_numpy(model.symmetry_net(x)["loc"])
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model.symmetry_net.frame_prior.mean), inferred.mean(0), atol=1e-5)
        # The default is now the fitted prior; the unit prior is one argument away.
        np.testing.assert_array_equal(model.sample(2, 3, seed=1), model.sample(2, 3, seed=1, frames="fitted"))
        assert np.abs(model.sample(2, 3, seed=1) - model.sample(2, 3, seed=1, frames="prior")).max() > 0

    def test_adapt_recovers_mean_and_covariance(self):
        rng = np.random.default_rng(0)
        covariance = np.array([[2.0, 0.6], [0.6, 0.5]])
        data = rng.multivariate_normal([1.0, -2.0], covariance, 20000)
        prior = keras_ace.layers.FramePrior(2)
        prior.adapt(data)
        draws = keras.ops.convert_to_numpy(prior(rng.normal(size=(20000, 2)).astype(np.float32)))
        np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.05)
        np.testing.assert_allclose(np.cov(draws, rowvar=False), covariance, atol=0.08)
        with pytest.raises(ValueError, match=r"Received: shape=\(5, 3\)"):
            prior.adapt(np.zeros((5, 3)))
