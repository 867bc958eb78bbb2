import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_ace
from keras_ace import ACE
from keras_ace import PRESETS
from data_tools.moments import centre_of_mass
from data_tools.moments import orientation
from data_tools.moments import spread
from tests.conftest import requires_mnist
from tests.helpers import cut_short

TINY = dict(
    encoder_units=(32, 32),
    decoder_units=32,
    classifier_filters=(4, 4, 4),
    classifier_units=16,
    ssn_filters=(4, 4),
    ssn_units=8,
)
RNG = np.random.default_rng(0)


def tiny_ace(image_shape=(16, 16, 1), symmetry="spatial", **overrides):
    model = ACE(image_shape, symmetry=symmetry, **{**TINY, "seed": 1, **overrides})
    keras_ace.compile_ace(model)
    return model


def tiny_data(n=64, image_shape=(16, 16, 1)):
    return RNG.random((n, *image_shape)).astype(np.float32), RNG.integers(0, 10, n)


class ArrayBatches(keras.utils.PyDataset):
    """Arrays as a `PyDataset` of `batch_size` rows: a training input that is not arrays."""

    def __init__(self, x, y, batch_size):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[rows], self.y[rows]


# ------------------------------------------------------------------ parameter counts


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def dense(i, o):
    return i * o + o


def classifier(h, w, c):
    # conv 32-64-128 3x3, each followed by 2x2 max-pooling, dense 700, 10 logits.
    return conv(3, c, 32) + conv(3, 32, 64) + conv(3, 64, 128) + dense((h // 8) * (w // 8) * 128, 700) + dense(700, 10)


def ssn(h, w, c, filters, k, units, statistics):
    # conv-pool, conv-pool, dense; location and log-scale heads of the statistics.
    return conv(k, c, filters[0]) + conv(k, filters[0], filters[1]) + dense((h // 4) * (w // 4) * filters[1], units) + 2 * dense(units, statistics)


def dense_ae(pixels, latent, hidden=2048, classes=10):
    # pixels-2048-2048-(latent x 10)-(2048 x 10)-(pixels x 10); loc and log-scale heads.
    encoder = dense(pixels, hidden) + dense(hidden, hidden) + 2 * dense(hidden, classes * latent)
    return encoder + classes * (dense(latent, hidden) + dense(hidden, pixels))


def conv_ae(h, w, c, latent, hidden=1500, classes=10):
    # conv 32, 64 (5x5, stride 2) replace the encoder's dense layers; each decoder:
    # latent-1500-features, then transposed convs 64->32 and 32->c (5x5, stride 2).
    features = (h // 4) * (w // 4) * 64
    encoder = conv(5, c, 32) + conv(5, 32, 64) + 2 * dense(features, classes * latent)
    decoder = dense(latent, hidden) + dense(hidden, features) + conv(5, 64, 32) + conv(5, 32, c)
    return encoder + classes * decoder


MNIST_SSN = ((20, 20), 5, 50)
CIFAR10_SSN = ((32, 64), 3, 128)


def panel(h, w, c, latent, auto_encoder, ssn_settings=None, statistics=6, mirror=False):
    """Each part's parameters: the symmetry statistics net, the classifier, the auto-encoder."""
    # The mirror's score head: one unit on the net's dense layer.
    mirror_head = dense(ssn_settings[-1], 1) if mirror else 0
    return {
        "symmetry statistics net": ssn(h, w, c, *ssn_settings, statistics) + mirror_head if ssn_settings else 0,
        "classifier": classifier(h, w, c),
        "auto-encoder": auto_encoder(h * w * c, latent) if auto_encoder is dense_ae else auto_encoder(h, w, c, latent),
    }


HAND_COUNTS = {
    "fig1_mnist": panel(28, 28, 1, 1, dense_ae),
    "fig1_rts_mnist": panel(42, 42, 1, 1, dense_ae),
    "fig1_tc_mnist": panel(60, 60, 1, 1, dense_ae),
    "fig2_mnist": panel(28, 28, 1, 1, dense_ae, MNIST_SSN),
    "fig2_rts_mnist": panel(42, 42, 1, 1, dense_ae, MNIST_SSN),
    "fig2_tc_mnist": panel(60, 60, 1, 1, dense_ae, MNIST_SSN),
    "fig3_cifar10": panel(32, 32, 3, 2, dense_ae),
    "fig3_cifar10_sss": panel(32, 32, 3, 2, dense_ae, CIFAR10_SSN),
    "fig4_cifar10_spatial": panel(32, 32, 3, 2, conv_ae, CIFAR10_SSN),
    "fig4_cifar10_spatial_color": panel(32, 32, 3, 2, conv_ae, CIFAR10_SSN, statistics=15),
    "fig3_cifar10_sss_mirror": panel(32, 32, 3, 2, dense_ae, CIFAR10_SSN, mirror=True),
    "fig4_cifar10_spatial_mirror_color": panel(32, 32, 3, 2, conv_ae, CIFAR10_SSN, statistics=15, mirror=True),
}


def test_every_preset_is_pinned():
    assert set(HAND_COUNTS) == set(PRESETS)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_parameter_count(name):
    config = {k: v for k, v in PRESETS[name].items() if k != "dataset"}
    model = ACE(**config)
    model.build()
    assert model.parameter_counts() == HAND_COUNTS[name]
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == sum(HAND_COUNTS[name].values())
    # The frame prior of `sample` (mean, Cholesky factor, fitted flag) is not trained.
    statistics = {None: 0, "spatial": 6, "spatial_color": 15, "spatial_mirror": 6, "spatial_mirror_color": 15}[PRESETS[name]["symmetry"]]
    assert model.count_params() - trainable == (statistics + statistics**2 + 1 if statistics else 0)
    # The arithmetic written out once, for the panel the benchmarks use: classifier
    # 320 + 18,496 + 73,856 + 2,240,700 + 7,010; SSN 520 + 10,020 + 100,050 + 2 x 306;
    # AE 3,614,720 + 4,196,352 + 2 x 20,490 + 10 x (4,096 + 3,614,436).
    if name == "fig2_rts_mnist":
        assert list(HAND_COUNTS[name].values()) == [111_202, 2_340_382, 44_037_372]


# ------------------------------------------------------------------ construction and bad input


class TestConstruction:
    def test_build_ace_defaults(self):
        model = keras_ace.build_ace("rts_mnist", **TINY)
        assert model.image_shape == (42, 42, 1) and model.symmetry == "spatial" and model.latent_dim == 1
        assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.0015)
        cifar = keras_ace.build_ace("cifar10", encoder="conv", **TINY)
        assert cifar.symmetry == "spatial_color" and cifar.sampling == "laplacian" and cifar.latent_dim == 2
        assert cifar.auto_encoder.decoder_units == 32  # the override wins over the preset's 1500
        assert float(keras.ops.convert_to_numpy(cifar.optimizer.learning_rate)) == pytest.approx(0.0005)

    def test_unknown_names_list_valid_ones(self):
        with pytest.raises(ValueError, match=r"Expected one of \('mnist', 'rts_mnist', 'tc_mnist', 'cifar10'\)"):
            keras_ace.build_ace("svhn")
        with pytest.raises(ValueError, match="Received: symmetry='colour'"):
            keras_ace.build_ace("mnist", symmetry="colour")
        with pytest.raises(ValueError, match="Received: encoder='rnn'"):
            keras_ace.build_ace("mnist", encoder="rnn")
        with pytest.raises(ValueError, match="Received: name='fig9'"):
            keras_ace.build_preset("fig9")
        with pytest.raises(ValueError, match="needs RGB"):
            ACE((28, 28, 1), symmetry="spatial_color")

    def test_padding_and_colour_inverse_are_saved_and_older_files_keep_theirs(self):
        def box_04(model):
            spatial, colour = model.symmetries
            return spatial.transformer.padding, colour.to_canonical.inverse, colour.to_observed.inverse

        model = tiny_ace((16, 16, 3), symmetry="spatial_color")
        assert box_04(model) == ("border", True, False)
        config = model.get_config()
        assert box_04(ACE.from_config(config)) == ("border", True, False)
        # A file saved before these settings existed was trained with zeros and the inverse on the way back.
        before = {k: v for k, v in config.items() if k not in ("padding", "color_inverse")}
        assert box_04(ACE.from_config(before)) == ("zeros", False, True)
        with pytest.raises(ValueError, match="Received: padding='edge'"):
            tiny_ace(padding="edge")
        with pytest.raises(ValueError, match="Received: color_inverse='both'"):
            tiny_ace(color_inverse="both")

    def test_from_preset_is_the_old_name_of_build_preset(self):
        with pytest.warns(DeprecationWarning, match="renamed build_preset"):
            model = keras_ace.from_preset("fig2_mnist", encoder_units=(8, 8), decoder_units=8, classifier_filters=(2, 2, 2),
                                          classifier_units=4, ssn_filters=(2, 2), ssn_units=4)
        assert isinstance(model, ACE) and model.symmetry == "spatial"

    def test_learning_rate_decays_over_50_epochs(self):
        config = keras_ace.TrainingConfig.for_dataset("mnist")
        schedule = config.schedule()
        lr_at = lambda epoch: float(keras.ops.convert_to_numpy(schedule(epoch * config.steps_per_epoch)))
        assert lr_at(0) == pytest.approx(0.0015)
        assert lr_at(50) == pytest.approx(0.0015 / np.e, rel=1e-4)

    def test_fit_takes_the_paper_batch_and_decays_per_epoch_whatever_the_batch(self):
        """Keras' default batch is 32; an ACE trains with Appendix A's 250 unless told otherwise.

        The learning rate decays e-fold over 50 epochs counted at the batch size of the
        current `fit`; a second `fit` with another batch size counts the steps anew.
        """
        x, y = tiny_data(200)
        model = tiny_ace()
        start = keras_ace.TrainingConfig.for_dataset("mnist").learning_rate

        def steps_and_rate():
            return (int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
                    float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))

        model.fit(x, y, epochs=1, verbose=0)
        steps, rate = steps_and_rate()
        assert steps == 1 and rate == pytest.approx(start * np.exp(-1 / 50), rel=1e-5)  # 200 images, batch 250
        model.fit(x, y, batch_size=50, epochs=1, verbose=0)
        steps, rate = steps_and_rate()
        assert steps == 5 and rate == pytest.approx(start * np.exp(-(5 / 4) / 50), rel=1e-5)  # 4 steps an epoch now

    def test_a_batch_size_given_to_the_training_config_counts_its_steps(self):
        assert keras_ace.TrainingConfig.for_dataset("mnist", batch_size=100).steps_per_epoch == 600
        assert keras_ace.TrainingConfig.for_dataset("cifar10").steps_per_epoch == 200

    def test_the_decay_counts_the_steps_of_a_pydataset(self):
        """A data set's epoch is its length, whatever the batch size the config was made with."""
        model = tiny_ace()
        model.fit(ArrayBatches(*tiny_data(200), batch_size=50), epochs=1, verbose=0)
        assert model.optimizer.learning_rate_schedule.steps_per_epoch == 4

    def test_validation_split_and_data_by_position(self):
        """fit(x, y, batch_size, epochs, verbose, callbacks, validation_split): Keras' order, the split counted."""
        x, y = tiny_data(200)
        model = tiny_ace()
        history = model.fit(x, y, 50, 1, 0, None, 0.5)
        assert model.optimizer.learning_rate_schedule.steps_per_epoch == 2  # 100 training images, batch 50
        assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2 and "val_loss" in history.history
        history = model.fit(x, y, 50, 1, 0, None, 0.0, (x[:20], y[:20]))
        assert "val_loss" in history.history

    @pytest.mark.filterwarnings("ignore:Your input ran out of data")  # PyTorch: Keras warns, then refuses (below)
    def test_steps_per_execution_reaches_fit(self):
        """`TrainingConfig.steps_per_execution` runs several steps per call; every batch is still one step."""
        x, y = tiny_data(200)
        model = keras_ace.compile_ace(tiny_ace(), keras_ace.TrainingConfig(steps_per_execution=3))
        assert model.steps_per_execution == 3
        if keras.backend.backend() == "torch":
            with pytest.raises(ValueError, match="steps_per_execution` must be 1 with the PyTorch backend"):
                model.fit(x, y, epochs=1, verbose=0)  # Keras' own refusal
            return
        model.fit(x, y, batch_size=50, epochs=1, verbose=0)  # 4 batches: one call of 3 steps, one of 1
        assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4

    def test_bad_input_refused_before_training(self):
        model = tiny_ace()
        x, y = tiny_data(8)
        with pytest.raises(ValueError, match=r"Received: shape=\(8, 16, 16, 3\)"):
            model.fit(np.zeros((8, 16, 16, 3), np.float32), y)
        bad = x.copy()
        bad[0, 0, 0, 0] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            model.fit(bad, y)
        with pytest.raises(ValueError, match=r"Received: min=0\.\d+, max=25\d"):
            model.fit(x * 255, y)
        with pytest.raises(ValueError, match="max=10"):
            model.fit(x, np.full(8, 10))
        with pytest.raises(ValueError, match="Received: class_id=10"):
            model.sample(10, 2)
        with pytest.raises(ValueError, match="needs spatial symmetry"):
            tiny_ace(symmetry=None).control(x, translate=(1, 0))


def test_symmetry_statistics_start_at_the_identity_frame():
    """The symmetry net's heads start at zero: every image starts in the identity frame (theta = I)."""
    x, _ = tiny_data(4)
    theta = tiny_ace().symmetry_statistics(x)["theta"]
    np.testing.assert_allclose(theta, np.tile(keras_ace.layers.IDENTITY_THETA, (4, 1)), atol=1e-6)


def test_classifier_input_offset_centres_the_pixels():
    """CIFAR10's classifier sees x - 0.5; the MNIST presets keep x (Appendix A)."""
    plain, centred = tiny_ace(symmetry=None), tiny_ace(symmetry=None, classifier_input_offset=-0.5)
    plain.build()
    centred.build()
    centred.set_weights(plain.get_weights())  # the offset adds no weights
    x, _ = tiny_data(8)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(centred.classifier(x)), keras.ops.convert_to_numpy(plain.classifier(x - 0.5)), atol=1e-5
    )
    assert ACE.from_config(centred.get_config()).classifier.input_offset == -0.5
    assert PRESETS["fig3_cifar10"]["classifier_input_offset"] == -0.5
    assert "classifier_input_offset" not in PRESETS["fig2_rts_mnist"]


def unbuilt_layers(layer):
    """The names of `layer`'s nested layers (itself included) that are not built."""
    return [name for sub in getattr(layer, "layers", []) for name in unbuilt_layers(sub)] + (
        [] if layer.built else [layer.name]
    )


@pytest.mark.parametrize("symmetry, encoder", [("spatial", "dense"), ("spatial_color", "conv")])
def test_every_layer_is_built_after_a_training_step(symmetry, encoder):
    """While any layer is unbuilt, Keras' `train_on_batch` traces the whole model again on
    every call (on PyTorch ~0.3 s a step of fig2_rts_mnist, more than the step's own work)."""
    model = tiny_ace((16, 16, 3), symmetry=symmetry, encoder=encoder, conv_filters=(4, 4))
    x, y = tiny_data(8, (16, 16, 3))
    model.train_on_batch(x, y)
    assert unbuilt_layers(model) == []


# ------------------------------------------------------------------ per-class decoders


def test_each_example_uses_its_own_class_decoder():
    model = tiny_ace(symmetry=None)
    model.build()
    z = RNG.normal(size=(6, 1)).astype(np.float32)
    classes = np.asarray([0, 3, 3, 9, 1, 0])
    together = keras.ops.convert_to_numpy(model.auto_encoder.decode(z, classes))
    for i, c in enumerate(classes):
        alone = model.latent_grid(c, z[i : i + 1])
        np.testing.assert_allclose(together[i], alone[0], atol=1e-5)
    all_classes = keras.ops.convert_to_numpy(model.auto_encoder.decode_all(np.repeat(z[:, None], 10, axis=1)))
    np.testing.assert_allclose(all_classes[np.arange(6), classes], together, atol=1e-5)


def test_shared_decoder_ablation():
    model = tiny_ace(symmetry=None, per_class_decoders=False)
    model.build()
    assert model.auto_encoder.decoder_output.kernel.shape[0] == 1
    z = RNG.normal(size=(3, 1)).astype(np.float32)
    same = keras.ops.convert_to_numpy(model.auto_encoder.decode(z, np.asarray([0, 5, 9])))
    np.testing.assert_allclose(same, model.latent_grid(7, z), atol=1e-6)
    # Every class's latent block made the same: one decoder, one posterior, so each class's term
    # is the same and the mixture bound is that term + sum_c w_c log w_c + log K.
    for head in (model.auto_encoder.latent_loc, model.auto_encoder.latent_log_scale):
        kernel = keras.ops.convert_to_numpy(head.kernel)
        head.kernel.assign(np.tile(kernel[:, :1], (1, kernel.shape[1])))
        head.bias.assign(np.zeros(head.bias.shape, np.float32))
    x, _ = tiny_data(4)
    outputs = model(x)
    o = {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    z = o["latent_loc"][:, 0] + np.exp(o["latent_log_scale"][:, 0]) * o["noise"]
    decoded = np.clip(keras.ops.convert_to_numpy(model.auto_encoder.decode(z, np.zeros(4, np.int32))), 1e-6, 1 - 1e-6)
    reconstruction = -(x * np.log(decoded) + (1 - x) * np.log(1 - decoded)).reshape(4, -1).sum(1)
    kl = (-o["latent_log_scale"][:, 0] + (np.exp(2 * o["latent_log_scale"][:, 0]) + o["latent_loc"][:, 0] ** 2) / 2 - 0.5).sum(-1)
    log_w = o["class_logits"] - np.log(np.exp(o["class_logits"]).sum(-1, keepdims=True))
    expected = reconstruction + kl + (np.exp(log_w) * log_w).sum(-1) + np.log(10)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.nll_bound(x, outputs)), expected, rtol=1e-4)


# ------------------------------------------------------------------ control


def centred_blob(h, w, spread=(12.0, 1.5), shift=(0.0, 0.0)):
    """A Gaussian blob, (H, W), peak 0.9: `spread` (x, y) is twice its variances (a bar long along x by default)."""
    ys, xs = np.mgrid[0:h, 0:w]
    return 0.9 * np.exp(-((xs - (w - 1) / 2 - shift[0]) ** 2 / spread[0] + (ys - (h - 1) / 2 - shift[1]) ** 2 / spread[1]))


def blob_model(image_shape=(16, 16, 1), symmetry="spatial", colour=(1.0,), spread=(12.0, 1.5), **overrides):
    """An ACE whose decoders always draw a Gaussian blob (by default a bar long along x) at the centre."""
    model = tiny_ace(image_shape, symmetry=symmetry, **overrides)
    model.build()
    blob = 0.001 + centred_blob(*image_shape[:2], spread)[:, :, None] * np.asarray(colour)  # (H, W, C)
    logits = np.log(blob / (1 - blob)).reshape(-1).astype(np.float32)
    output = model.auto_encoder.decoder_output
    output.kernel.assign(np.zeros(output.kernel.shape, np.float32))
    output.bias.assign(np.broadcast_to(logits, output.bias.shape))
    return model


class TestControl:
    def test_translation_moves_centre_of_mass(self):
        model = blob_model()
        x, _ = tiny_data(4)
        before = centre_of_mass(model.reconstruct(x))
        after = centre_of_mass(model.control(x, translate=(3, -2)))
        np.testing.assert_allclose(after - before, np.tile([3.0, -2.0], (4, 1)), atol=0.5)

    def test_rotation_turns_the_bar_and_scale_grows_it_about_the_centre(self):
        model = blob_model((24, 24, 1))
        x, _ = tiny_data(2, (24, 24, 1))
        # Moments of the bar alone: the faint background (and the zeros outside the
        # canvas that a transform brings in) removed.
        def bar(images):
            return np.clip(images - 0.002, 0, None)

        base = bar(model.reconstruct(x))
        for degrees in (-30.0, 30.0):
            turned = bar(model.control(x, rotate=degrees))
            np.testing.assert_allclose(centre_of_mass(turned), centre_of_mass(base), atol=0.3)
            # A positive angle turns counter-clockwise on screen (orientation in degrees, y up).
            np.testing.assert_allclose(orientation(turned) - orientation(base), degrees, atol=2.0)
        grown = bar(model.control(x, scale=1.3))
        np.testing.assert_allclose(spread(grown) / spread(base), 1.3, rtol=0.05)

    @pytest.mark.parametrize("color_inverse", ["canonicalize", "to_observation"])
    def test_recolouring_goes_through_the_colour_statistics(self, color_inverse):
        """Reconstruction maps the canonical colours back through the colour statistics; `color` mixes on top.

        By default the row-stochastic matrix C itself maps the canonical image to the
        observation (C canonicalises in files saved before 0.3: there its inverse maps back).
        """
        model = blob_model((16, 16, 3), symmetry="spatial_color", colour=(0.8, 0.4, 0.1), color_inverse=color_inverse)
        x, _ = tiny_data(2, (16, 16, 3))
        # Colour logits away from the identity: the net now infers C != I for every image.
        bias = np.zeros(15, np.float32)
        bias[6:] = [2.0, -1.0, 0.5, -1.5, 1.0, 0.0, 0.5, 1.5, -2.0]  # fixed: the test does not depend on test order
        model.symmetry_net.location.bias.assign(bias)
        colour = model.symmetry_statistics(x)["color"]
        assert np.abs(colour - np.eye(3)).max() > 0.05
        canonical = keras.ops.convert_to_numpy(model.latent_grid(0, [[0.0]]))[0]  # (H, W, 3), the same for every class
        back = colour if color_inverse == "canonicalize" else np.linalg.inv(colour)
        expected = np.einsum("bij,hwj->bhwi", back, canonical)
        np.testing.assert_allclose(model.reconstruct(x), expected, atol=1e-4)
        # A convex mix of [0, 1] colours stays in [0, 1]; the inverse's negative entries leave it.
        inside = (expected.min() >= 0) and (expected.max() <= 1)
        assert inside == (color_inverse == "canonicalize")
        swap = np.eye(3, dtype=np.float32)[[2, 1, 0]]
        np.testing.assert_allclose(model.control(x, color=swap), expected[..., ::-1], atol=1e-4)

    @pytest.mark.parametrize("color_inverse", ["canonicalize", "to_observation"])
    def test_colour_statistics_round_trip(self, color_inverse):
        """Box 0.4 and its inverse: canonicalising and mapping back returns the image."""
        model = tiny_ace((16, 16, 3), symmetry="spatial_color", padding="zeros", color_inverse=color_inverse)
        model.build()
        x, _ = tiny_data(2, (16, 16, 3))
        u = keras.ops.convert_to_tensor(np.concatenate([np.zeros((2, 6)), RNG.normal(size=(2, 9))], 1).astype(np.float32))
        frame = model.symmetry_net.frame(u)
        there = model.canonicalize(x, frame)
        assert np.abs(keras.ops.convert_to_numpy(there) - x).max() > 0.05
        np.testing.assert_allclose(keras.ops.convert_to_numpy(model.to_observation(there, frame)), x, atol=1e-4)


# ------------------------------------------------------------------ training, saving, sampling

SUBPROCESS = """
import json, sys
import keras, numpy as np
import keras_ace  # registers the classes; no custom_objects needed
x = np.load(sys.argv[1])
model = keras.saving.load_model(sys.argv[2])
np.savez(sys.argv[3], reconstruct=model.reconstruct(x), classify=model.classify(x),
         sample=model.sample(2, 3, seed=5), theta=model.symmetry_statistics(x)["theta"],
         control=model.control(x, translate=(2, -1), rotate=15))
history = model.fit(x, np.arange(len(x)) % 10, batch_size=8, epochs=1, verbose=0)
print(json.dumps({"loss": history.history["loss"][-1]}))
"""


def check_reloaded(out, model, x):
    """What a reloaded model gives (a dict of arrays, from SUBPROCESS or in-process) against the trained `model`."""
    np.testing.assert_allclose(out["reconstruct"], model.reconstruct(x), atol=1e-5)
    np.testing.assert_allclose(out["classify"], model.classify(x), atol=1e-5)
    np.testing.assert_allclose(out["sample"], model.sample(2, 3, seed=5), atol=1e-5)
    np.testing.assert_allclose(out["theta"], model.symmetry_statistics(x)["theta"], atol=1e-5)
    np.testing.assert_allclose(out["control"], model.control(x, translate=(2, -1), rotate=15), atol=1e-5)


def test_save_reload_and_continue_training(trained_ace):
    """The shared tiny model (build_ace, fit, save) reloads with the same outputs and trains on."""
    x = trained_ace.x[:16]
    model = keras.saving.load_model(trained_ace.path)
    out = {"reconstruct": model.reconstruct(x), "classify": model.classify(x), "sample": model.sample(2, 3, seed=5),
           "theta": model.symmetry_statistics(x)["theta"], "control": model.control(x, translate=(2, -1), rotate=15)}
    check_reloaded(out, trained_ace.model, x)
    assert model.symmetry_net.frame_prior.is_fitted
    history = model.fit(x, np.arange(len(x)) % 10, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert unbuilt_layers(model) == []


@pytest.mark.slow
@pytest.mark.every_backend
def test_save_reload_in_a_fresh_process_and_continue_training(trained_ace, tmp_path):
    """The shared tiny model reloads in a new process (no custom_objects), samples, controls and trains on."""
    x = trained_ace.x[:16]
    np.save(tmp_path / "x.npy", x)
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, str(tmp_path / "x.npy"), str(trained_ace.path), str(tmp_path / "out.npz")],
        capture_output=True, text=True, env={**os.environ}, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    check_reloaded(np.load(tmp_path / "out.npz"), trained_ace.model, x)
    assert np.isfinite(json.loads(result.stdout.strip().splitlines()[-1])["loss"])


def test_seeded_sampling_is_reproducible_and_varies():
    model = tiny_ace()
    a, b, c = (model.sample(1, 4, seed=s, frames="prior") for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0
    assert a.shape == (4, 16, 16, 1)


def test_inference_leaves_the_training_and_generation_streams_alone():
    """classify, reconstruct, control, predict and evaluate draw no training noise; sample has its own stream."""
    x, y = tiny_data(8)
    model, twin = tiny_ace(), tiny_ace()
    for m in (model, twin):
        m.build()
    twin.set_weights(model.get_weights())
    def training_stream():
        return np.array(keras.ops.convert_to_numpy(model.auto_encoder.latent_sampler.seed_generator.state.value))

    before = training_stream()
    model.classify(x)
    model.reconstruct(x)
    model.predict(x, verbose=0)
    model.evaluate(x, y, verbose=0)
    np.testing.assert_array_equal(training_stream(), before)
    with pytest.warns(UserWarning, match="No frame prior has been fitted"):
        np.testing.assert_allclose(model.sample(3, 4), twin.sample(3, 4), atol=1e-6)
    # Evaluation is the same number every time.
    assert model.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_fit_fits_the_frame_prior_from_a_pydataset():
    model = tiny_ace()
    model.fit(ArrayBatches(*tiny_data(40), batch_size=20), epochs=1, verbose=0)
    assert model.symmetry_net.frame_prior.is_fitted


def test_backup_and_restore_resumes_an_interrupted_run(tmp_path):
    x, y = tiny_data(32)

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    model = tiny_ace()
    backup = keras_ace.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="interrupted"):
        model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[backup, Interrupt()])
    resumed = tiny_ace()
    history = resumed.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[backup])
    # Epochs 0 and 1 finished before the interruption; only 2 and 3 are run again.
    assert len(history.history["loss"]) == 2
    assert int(keras.ops.convert_to_numpy(resumed.optimizer.iterations)) == 8


def test_a_backup_cut_short_is_set_aside_and_training_starts_afresh(tmp_path, capfd):
    x, y = tiny_data(32)
    folder = tmp_path / "backup"
    backup = keras_ace.BackupAndRestore(str(folder), delete_checkpoint=False)
    tiny_ace().fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[backup])
    # What a full disk left when Keras wrote the backup in place: the first third of it.
    cut_short(str(folder / "latest.weights.h5"))
    model = tiny_ace()
    model.build()
    start = [keras.ops.convert_to_numpy(w) for w in model.weights]
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[keras_ace.BackupAndRestore(str(folder))])
    assert len(history.history["loss"]) == 2  # from the first epoch
    assert "could not be loaded" in capfd.readouterr().err and (tmp_path / "backup.damaged").is_dir()
    assert any(np.abs(keras.ops.convert_to_numpy(w) - s).max() > 0 for w, s in zip(model.weights, start))


def test_a_backup_interrupted_while_written_leaves_the_last_one_whole(tmp_path, monkeypatch):
    x, y = tiny_data(32)
    folder = tmp_path / "backup"
    model = tiny_ace()
    backup = keras_ace.BackupAndRestore(str(folder), delete_checkpoint=False)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[backup])
    whole = (folder / "latest.weights.h5").read_bytes()

    def disk_full(filepath, overwrite=True):
        with open(filepath, "wb") as f:
            f.write(whole[: len(whole) // 3])
        raise OSError(27, "File too large")

    monkeypatch.setattr(model, "save_weights", disk_full)
    with pytest.raises(OSError, match="File too large"):
        model.fit(x, y, batch_size=16, epochs=2, initial_epoch=1, verbose=0, callbacks=[backup])
    assert (folder / "latest.weights.h5").read_bytes() == whole and sorted(p.name for p in folder.iterdir()) == [
        "latest.weights.h5", "training_metadata.json"]
    resumed = tiny_ace()
    history = resumed.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[keras_ace.BackupAndRestore(str(folder))])
    assert len(history.history["loss"]) == 1  # the first epoch's backup loaded


@requires_mnist
def test_training_on_mnist_lowers_the_loss_and_reports_the_bound():
    from data_tools import load_dataset

    x, y = load_dataset("mnist", "train")
    x, y = x[:1000], y[:1000]
    model = keras_ace.build_ace("mnist", symmetry=None, **TINY, seed=2)
    history = model.fit(x, y, batch_size=50, epochs=3, verbose=0, validation_data=(x[:200], y[:200]))
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    for key in ("reconstruction", "generative", "classification", "classification_error"):
        assert key in history.history and "val_" + key in history.history
    assert "nll_bound" not in history.history and "val_nll_bound" in history.history
    results = model.evaluate(x[:200], y[:200], verbose=0, return_dict=True)
    assert np.isfinite(results["nll_bound"]) and results["nll_bound"] > 0


@pytest.mark.parametrize("symmetry", [None, "spatial"])
def test_nll_bound_matches_its_formula(symmetry):
    """sum_c w_c (reconstruction_c + KL_c) + sum_c w_c log w_c + log K (+ KL_sym), in NumPy.

    With symmetry statistics their frame is drawn from its posterior, u = loc + scale *
    noise (inference's seed + 1); the classifier and the latents read the image in that
    frame, and each class's reconstruction is taken after the inverse transform, against
    the original input.
    """
    model = tiny_ace(symmetry=symmetry, symmetry_initial_log_scale=-1.0)
    model.build()
    if symmetry:
        # Symmetry statistics away from zero, so the inverse transform matters.
        model.symmetry_net.location.bias.assign(RNG.normal(size=6).astype(np.float32))
    x, _ = tiny_data(4)
    outputs = model(x)
    bound = keras.ops.convert_to_numpy(model.nll_bound(x, outputs))
    o = {k: keras.ops.convert_to_numpy(v) for k, v in outputs.items()}
    if symmetry:
        statistics = {k: keras.ops.convert_to_numpy(v) for k, v in model.symmetry_net(x).items()}
        noise = keras.ops.convert_to_numpy(model.symmetry_net.sampler.noise((4, 6), seed=model.inference_seed + 1))
        u = statistics["loc"] + np.exp(statistics["log_scale"]) * noise
        theta = np.float32([1, 0, 0, 0, 1, 0]) + 0.2 * u
        assert np.abs(theta - o["theta"]).max() > 0.01  # a frame other than the mean's
        canonical = model.canonicalize(x, {"theta": theta})
        o["class_logits"] = keras.ops.convert_to_numpy(model.classifier(canonical))
        o["latent_loc"], o["latent_log_scale"] = (keras.ops.convert_to_numpy(t) for t in model.auto_encoder.encode(canonical))
        o["theta"] = theta
    log_scale = np.clip(o["latent_log_scale"], -7, 5)
    z = o["latent_loc"] + np.exp(log_scale) * o["noise"][:, None]
    observed = keras.ops.convert_to_numpy(model.auto_encoder.decode_all(z))  # (B, K, H, W, C), canonical frame
    if symmetry:
        observed = np.stack(
            [keras.ops.convert_to_numpy(model.to_observation(observed[:, c], {"theta": o["theta"]})) for c in range(10)], 1
        )
    p = np.clip(observed, 1e-6, 1 - 1e-6)
    xk = x[:, None]
    reconstruction = -(xk * np.log(p) + (1 - xk) * np.log(1 - p)).reshape(4, 10, -1).sum(-1)
    kl = (-log_scale + (np.exp(2 * log_scale) + o["latent_loc"] ** 2) / 2 - 0.5).sum(-1)
    logits = o["class_logits"] - o["class_logits"].max(-1, keepdims=True)
    log_w = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = (np.exp(log_w) * (reconstruction + kl + log_w)).sum(-1) + np.log(10)
    if symmetry:
        assert np.abs(o["symmetry_kl"]).min() > 0.1
        expected = expected + o["symmetry_kl"]
    np.testing.assert_allclose(bound, expected, rtol=1e-4)


def one_latent_model(seed=4):
    """A latent_dim=1 model on 3x3 images, three classes: small enough to integrate."""
    keras.utils.set_random_seed(seed)
    model = ACE((3, 3, 1), symmetry=None, encoder_units=(6,), decoder_units=5, classifier_filters=(2,),
                classifier_units=3, num_classes=3, seed=seed)
    keras_ace.compile_ace(model)
    model.build()
    return model


def exact_nll(model, x):
    """-log p(x) = -log 1/K sum_c integral N(z; 0, 1) p(x | z, c) dz, on a fine grid over [-9, 9]: (N,)."""
    grid = np.linspace(-9.0, 9.0, 3601, dtype=np.float32)
    log_prior = -0.5 * grid.astype(np.float64) ** 2 - 0.5 * np.log(2 * np.pi) + np.log(grid[1] - grid[0])
    flat = x.reshape(len(x), -1).astype(np.float64)
    log_joint = []
    for c in range(model.num_classes):
        p = np.clip(model.latent_grid(c, grid[:, None]).reshape(len(grid), -1).astype(np.float64), 1e-6, 1 - 1e-6)
        log_lik = flat @ np.log(p).T + (1 - flat) @ np.log(1 - p).T  # (N, G)
        log_joint.append(log_lik + log_prior - np.log(model.num_classes))
    stacked = np.concatenate(log_joint, axis=1)
    top = stacked.max(1, keepdims=True)
    return -(top[:, 0] + np.log(np.exp(stacked - top).sum(1)))


def test_nll_bound_lies_above_the_exact_negative_log_likelihood():
    model = one_latent_model()
    x = RNG.random((5, 3, 3, 1)).astype(np.float32)
    exact = exact_nll(model, x)
    # The bound's expectation over the latent noise, from 400 one-sample estimates (inference's
    # own noise comes from a fixed seed: each estimate gets a draw of its own here).
    outputs = model(x)
    draws = np.stack([keras.ops.convert_to_numpy(model.nll_bound(x, {**outputs, "noise": keras.random.normal((5, 1), seed=i)}))
                      for i in range(400)])
    mean, error = draws.mean(0), draws.std(0) / np.sqrt(len(draws))
    assert error.min() > 0  # the draws differ
    assert (mean > exact - 3 * error).all(), (mean, exact)
    assert (mean - exact < 6).all(), mean - exact  # a tight bound: its gap here is a few nats


# ------------------------------------------------------------------ the importance-weighted estimate


def log_density(value, loc, log_scale, sampling):
    """The family's log-density, summed over the last axis, in NumPy."""
    standardized = (value - loc) / np.exp(log_scale)
    unit = -0.5 * standardized**2 - 0.5 * np.log(2 * np.pi) if sampling == "gaussian" else -np.abs(standardized) - np.log(2)
    return (unit - log_scale).sum(-1)


def row_stochastic(logits):
    """Figure 4's colour matrix written out: the row-wise softmax of 3x3 logits plus 4 on the diagonal."""
    e = np.exp(logits.reshape(-1, 3, 3) + 4.0 * np.eye(3))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("sampling, symmetry", [("gaussian", "spatial"), ("laplacian", "spatial"),
                                                ("laplacian", "spatial_color")])
def test_nll_estimate_with_one_sample_is_the_bound_written_out(sampling, symmetry, monkeypatch):
    """k = 1: -log [p(u) / q(u) * 1/K sum_c p(z_c) p(x | c, z_c, u) / q(z_c)], the draws fixed by hand.

    The frame of u written out too: theta = I + 0.2 u[:6] and, with colour, the matrix of u[6:].
    """
    channels = 3 if symmetry == "spatial_color" else 1
    model = tiny_ace((16, 16, channels), symmetry=symmetry, sampling=sampling, latent_dim=2)
    model.build()
    n = model.symmetry_net.num_statistics
    # Frames away from the identity with a visible spread, so that the frame draw matters.
    model.symmetry_net.location.bias.assign(RNG.normal(0, 0.5, n).astype(np.float32))
    model.symmetry_net.log_scale.bias.assign(np.full(n, -1.0, np.float32))
    x, _ = tiny_data(3, (16, 16, channels))
    frame_noise = RNG.normal(size=(3, n)).astype(np.float32)
    latent_noise = RNG.normal(size=(3, 10, 2)).astype(np.float32)
    monkeypatch.setattr(model.symmetry_net.sampler, "noise", lambda shape, seed=None: keras.ops.convert_to_tensor(frame_noise))
    monkeypatch.setattr(model.auto_encoder.latent_sampler, "noise", lambda shape, seed=None: keras.ops.convert_to_tensor(latent_noise))
    estimate = model.nll_estimate(x, samples=1)

    statistics = {k: keras.ops.convert_to_numpy(v) for k, v in model.symmetry_net(x).items()}
    u = statistics["loc"] + np.exp(statistics["log_scale"]) * frame_noise
    log_frame_ratio = log_density(u, 0.0, 0.0, sampling) - log_density(u, statistics["loc"], statistics["log_scale"], sampling)
    frame = {"theta": np.array([1, 0, 0, 0, 1, 0], np.float32) + 0.2 * u[:, :6]}
    if symmetry == "spatial_color":
        frame["color"] = row_stochastic(u[:, 6:])
    loc, log_scale = (keras.ops.convert_to_numpy(t) for t in model.auto_encoder.encode(model.canonicalize(x, frame)))
    log_scale = np.clip(log_scale, -7, 5)
    z = loc + np.exp(log_scale) * latent_noise  # (3, K, L)
    decoded = keras.ops.convert_to_numpy(model.auto_encoder.decode_all(z))
    observed = np.stack([keras.ops.convert_to_numpy(model.to_observation(decoded[:, c], frame)) for c in range(10)], 1)
    p = np.clip(observed, 1e-6, 1 - 1e-6).astype(np.float64)
    log_likelihood = (x[:, None] * np.log(p) + (1 - x[:, None]) * np.log(1 - p)).reshape(3, 10, -1).sum(-1)
    per_class = log_density(z, 0.0, 0.0, sampling) - log_density(z, loc, log_scale, sampling) + log_likelihood
    top = per_class.max(1)
    expected = -(log_frame_ratio + top + np.log(np.exp(per_class - top[:, None]).sum(1)) - np.log(10))
    assert np.abs(log_frame_ratio).min() > 0.1
    np.testing.assert_allclose(estimate, expected, rtol=1e-5, atol=1e-3)


def test_nll_estimate_does_not_rise_with_samples():
    """The mean k = 48 estimate lies clearly below the mean k = 1 bound (eight draws of it).

    Measured gap 1.4-2.5 nats on the three backends; averaging the 48 log weights instead
    of importance-weighting them gives 0.0-0.2.
    """
    keras.utils.set_random_seed(0)
    model = tiny_ace()
    model.build()
    model.symmetry_net.log_scale.bias.assign(np.full(6, -1.0, np.float32))
    x, _ = tiny_data(8)
    one = np.mean([model.nll_estimate(x, samples=1, seed=seed) for seed in range(1, 9)], axis=0)
    # 48 samples in passes of 32 rows: 32 and 16 samples of each image.
    many = model.nll_estimate(x, samples=48, batch_size=32, seed=1)
    assert many.shape == one.shape == (8,)
    assert many.mean() < one.mean() - 0.7, (many.mean(), one.mean())


def test_nll_estimate_samples_the_frames(monkeypatch):
    """With the latents' draw fixed, two seeds still give two k = 1 values (the frames are drawn), one seed one."""
    model = tiny_ace()
    model.build()
    model.symmetry_net.log_scale.bias.assign(np.full(6, -1.0, np.float32))
    monkeypatch.setattr(model.auto_encoder.latent_sampler, "noise", lambda shape, seed=None: keras.ops.zeros(shape))
    x, _ = tiny_data(4)
    one = model.nll_estimate(x, samples=1, seed=1)
    np.testing.assert_array_equal(model.nll_estimate(x, samples=1, seed=1), one)
    assert np.abs(model.nll_estimate(x, samples=1, seed=2) - one).min() > 1e-4


def test_nll_estimate_on_figure_4s_model():
    """Colour statistics, the conv auto-encoder and Laplacian latents: finite nats per image, fewer with more samples."""
    keras.utils.set_random_seed(0)
    model = tiny_ace((16, 16, 3), symmetry="spatial_color", encoder="conv", conv_filters=(4, 8), sampling="laplacian")
    model.build()
    x, _ = tiny_data(3, (16, 16, 3))
    one, many = model.nll_estimate(x, samples=1, seed=0), model.nll_estimate(x, samples=16, seed=0)
    assert one.shape == many.shape == (3,) and np.isfinite(many).all() and many.mean() < one.mean()


def test_nll_estimate_converges_to_the_exact_negative_log_likelihood():
    """k = 2000 importance samples on a model integrated by quadrature: within 0.5 nats."""
    model = one_latent_model()
    x = np.random.default_rng(1).random((5, 3, 3, 1)).astype(np.float32)
    exact = exact_nll(model, x)
    estimate = model.nll_estimate(x, samples=2000, seed=0)
    assert np.abs(estimate - exact).max() < 0.5, (estimate, exact)


def test_learned_theta_follows_the_true_shift():
    """The symmetry net learns where an object is: theta's translation against the true shift.

    The decoders always draw the same centred round blob (`blob_model`) and are frozen,
    with the classifier, so only the symmetry net can explain where the blob is: trained
    on blobs moved by known sub-pixel shifts, its (tx, ty) must follow them. At the start
    every image gets the same theta.
    """
    model = blob_model(spread=(4.0, 4.0))
    model.classifier.trainable = False
    model.auto_encoder.trainable = False
    keras.utils.set_random_seed(0)
    # A faster rate than the paper's, so that 64 steps suffice whatever the seed.
    keras_ace.compile_ace(model, keras_ace.TrainingConfig(learning_rate=0.005))
    rng = np.random.default_rng(0)
    shifts = rng.uniform(-2.5, 2.5, (512, 2)).astype(np.float32)  # (dx, dy) in pixels
    x = np.stack([0.001 + centred_blob(16, 16, (4.0, 4.0), shift) for shift in shifts])[..., None].astype(np.float32)
    assert np.ptp(model.symmetry_statistics(x)["theta"], axis=0).max() < 1e-6
    model.fit(x, rng.integers(0, 10, len(x)), batch_size=32, epochs=4, verbose=0)
    theta = model.symmetry_statistics(x)["theta"]
    correlation = [np.corrcoef(theta[:, i], shifts[:, j])[0, 1] for i, j in ((2, 0), (5, 1))]
    assert min(correlation) > 0.9, correlation


@pytest.mark.slow
@pytest.mark.every_backend
def test_imports_without_tensorflow_on_jax():
    """The GPU machine has no TensorFlow: keras_ace must build a model without it."""
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    code = (
        "import sys, keras_ace, data_tools\n"
        "keras_ace.build_ace('mnist', encoder_units=(8, 8), decoder_units=8, classifier_filters=(2, 2, 2),"
        " classifier_units=4, ssn_filters=(2, 2), ssn_units=4)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "KERAS_BACKEND": "jax"})
    assert result.returncode == 0, result.stderr[-2000:]


def test_fit_hands_the_signals_back_however_it_ends(tmp_path):
    """An exception inside `fit` skips Keras' `on_train_end`; the backup's SIGTERM handler is handed back all the same."""
    import signal

    model = tiny_ace()
    x, y = tiny_data(8)

    class Fails(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise RuntimeError("a failure inside fit")

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RuntimeError, match="a failure inside fit"):
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[keras_ace.BackupAndRestore(str(tmp_path / "b")), Fails()])
    assert signal.getsignal(signal.SIGTERM) is before
