"""The three parts of Figure 5 as Models of their own, and files saved by keras_ace 0.1."""

import ast
import io
import os
import zipfile

import h5py
import keras
import numpy as np
import pytest
from keras import ops

import keras_ace
from keras_ace import AutoEncoder
from keras_ace import Classifier
from keras_ace import SymmetryStatisticsNet
from keras_ace import backend_ops
from keras_ace import layers
from keras_ace.models import legacy
from keras_ace.models.blocks import apply_chain
from keras_ace.models.blocks import build_chain
from tests.helpers import gradient
from tests.helpers import numpy
from tests.helpers import save_and_reload
from tests.test_model import TINY
from tests.test_model import classifier
from tests.test_model import conv
from tests.test_model import dense
from tests.test_model import ssn
from tests.test_model import tiny_ace
from tests.test_model import tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
RNG = np.random.default_rng(3)


def images(shape=(16, 16, 1), n=4):
    return RNG.random((n, *shape)).astype(np.float32)


class TestSymmetryStatisticsNet:
    def test_shapes_and_identity_start(self):
        net = SymmetryStatisticsNet("spatial_color", filters=(4, 4), kernel_size=3, units=8)
        out = net(images((16, 16, 3)))
        assert out["loc"].shape == (4, 15) and out["theta"].shape == (4, 6) and out["color"].shape == (4, 3, 3)
        np.testing.assert_allclose(numpy(out["theta"]), np.tile(keras_ace.layers.IDENTITY_THETA, (4, 1)), atol=1e-6)
        # At the start u's posterior is N(0, e^-3) in each of 15 statistics: KL to N(0, 1) is
        # 0.5 (e^-6 - 1) + 3 per statistic, 37.5 nats in all, the same for every image.
        np.testing.assert_allclose(numpy(out["kl"]), np.full(4, 15 * (0.5 * (np.exp(-6.0) - 1.0) + 3.0)), rtol=1e-5)

    def test_parameter_count_by_hand(self):
        net = SymmetryStatisticsNet(filters=(20, 20), kernel_size=5, units=50)
        net.build((None, 42, 42, 1))
        trainable = sum(int(np.prod(w.shape)) for w in net.trainable_weights)
        assert trainable == ssn(42, 42, 1, (20, 20), 5, 50, 6) == 111_202

    def test_training_samples_and_inference_takes_the_location(self):
        net = SymmetryStatisticsNet(filters=(4, 4), units=8, seed=0)
        x = images()
        net(x)
        net.log_scale.bias.assign(np.zeros(6, np.float32))  # unit posterior scale: visible noise
        mean, drawn = numpy(net(x)["u"]), numpy(net(x, training=True)["u"])
        np.testing.assert_allclose(mean, numpy(net(x)["loc"]))
        assert np.abs(drawn - mean).std() > 0.3

    def test_config_round_trip_and_reload(self, tmp_path):
        net = SymmetryStatisticsNet(filters=(4, 4), kernel_size=3, units=8, sampling="laplacian", seed=2)
        x = images()
        net(x)
        net.location.bias.assign(RNG.normal(size=6).astype(np.float32))
        again = SymmetryStatisticsNet.from_config(net.get_config())
        assert again.get_config() == net.get_config()
        reloaded = save_and_reload(net, tmp_path)
        np.testing.assert_allclose(numpy(reloaded(x)["theta"]), numpy(net(x)["theta"]), atol=1e-6)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="Received: symmetry='colour'"):
            SymmetryStatisticsNet("colour")
        with pytest.raises(ValueError, match="Received: gains="):
            SymmetryStatisticsNet(gains=(0.2,))


class TestClassifier:
    def test_logits_and_parameter_count(self):
        box_c = Classifier()
        assert box_c(images((32, 32, 3), 2)).shape == (2, 10)
        assert sum(int(np.prod(w.shape)) for w in box_c.trainable_weights) == classifier(32, 32, 3)

    def test_dropout_only_in_training(self):
        box_c = Classifier(filters=(4, 4, 4), units=8)
        x = images()
        np.testing.assert_allclose(numpy(box_c(x)), numpy(box_c(x)))
        assert not np.allclose(numpy(box_c(x, training=True)), numpy(box_c(x)))

    def test_config_round_trip_and_reload(self, tmp_path):
        box_c = Classifier(num_classes=3, filters=(4, 4, 4), units=8, input_offset=-0.5)
        x = images()
        logits = numpy(box_c(x))
        assert Classifier.from_config(box_c.get_config()).get_config() == box_c.get_config()
        np.testing.assert_allclose(numpy(save_and_reload(box_c, tmp_path)(x)), logits, atol=1e-6)


class TestApplyChain:
    """A monotone convolution followed by pooling pools first: same values and gradients as layer by layer."""

    @pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
    def test_matches_the_layers_one_by_one(self, activation):
        chain = [
            layers.Conv2D(3, 3, padding="same", activation=activation),
            layers.MaxPooling2x2(),
            layers.Conv2D(4, 3, padding="same", activation=activation),
            layers.MaxPooling2x2(),
            keras.layers.Flatten(),
        ]
        build_chain(chain, (2, 9, 9, 2))
        for layer in chain:  # weights of both signs, so that windows are all negative, mixed and positive
            layer.set_weights([RNG.normal(size=w.shape).astype(np.float32) for w in layer.get_weights()])
        x = RNG.normal(size=(2, 9, 9, 2)).astype(np.float32)

        def one_by_one(v):
            for layer in chain:
                v = layer(v)
            return v

        expected = numpy(one_by_one(x))
        if activation == "relu":
            assert (expected == 0).any()  # some windows all negative
        np.testing.assert_allclose(numpy(apply_chain(chain, x)), expected, atol=1e-5)
        weights = RNG.normal(size=expected.shape).astype(np.float32)
        np.testing.assert_allclose(gradient(lambda v: ops.sum(ops.multiply(apply_chain(chain, v), weights)), x),
                                   gradient(lambda v: ops.sum(ops.multiply(one_by_one(v), weights)), x), atol=1e-4)
        # The kernels' and biases' gradients too.
        for variable in [v for layer in chain for v in layer.weights]:
            def loss(value, apply):
                with keras.StatelessScope(state_mapping=[(variable, value)]):
                    return ops.sum(ops.multiply(apply(x), weights))

            value = numpy(variable)
            np.testing.assert_allclose(gradient(lambda v: loss(v, lambda u: apply_chain(chain, u)), value),
                                       gradient(lambda v: loss(v, one_by_one), value), atol=1e-4)

    def test_passes_training_to_dropout_only(self):
        chain = [layers.Dropout(0.5, seed=1), keras.layers.Flatten()]
        x = np.ones((4, 3, 3, 1), np.float32)
        np.testing.assert_array_equal(numpy(apply_chain(chain, x)), x.reshape(4, 9))
        assert (numpy(apply_chain(chain, x, training=True)) == 0).any()


class TestAutoEncoder:
    def test_dense_parameter_count_by_hand(self):
        ae = AutoEncoder((42, 42, 1))
        ae.build()
        trainable = sum(int(np.prod(w.shape)) for w in ae.trainable_weights)
        encoder = dense(1764, 2048) + dense(2048, 2048) + 2 * dense(2048, 10)
        assert trainable == encoder + 10 * (dense(1, 2048) + dense(2048, 1764)) == 44_037_372

    def test_conv_parameter_count_by_hand(self):
        ae = AutoEncoder((32, 32, 3), encoder="conv", decoder_units=1500, latent_dim=2, sampling="laplacian")
        ae.build()
        trainable = sum(int(np.prod(w.shape)) for w in ae.trainable_weights)
        encoder = conv(5, 3, 32) + conv(5, 32, 64) + 2 * dense(8 * 8 * 64, 20)
        decoder = dense(2, 1500) + dense(1500, 8 * 8 * 64) + conv(5, 64, 32) + conv(5, 32, 3)
        assert trainable == encoder + 10 * decoder

    @pytest.mark.parametrize("encoder", ["dense", "conv"])
    def test_encode_decode_on_its_own(self, encoder, tmp_path):
        ae = AutoEncoder((16, 16, 3), encoder=encoder, encoder_units=(16,), conv_filters=(4, 8), decoder_units=8,
                         latent_dim=2, seed=0)
        x = images((16, 16, 3))
        loc, log_scale = ae(x)  # builds it (or `ae.build()`), as saving needs
        assert loc.shape == log_scale.shape == (4, 10, 2)
        classes = np.asarray([0, 3, 9, 3], np.int32)
        one = numpy(ae.decode(loc[:, 3], classes))
        assert one.shape == (4, 16, 16, 3) and one.min() >= 0 and one.max() <= 1
        every = numpy(ae.decode_all(loc))
        np.testing.assert_allclose(every[np.arange(4), classes], numpy(ae.decode(numpy(loc)[np.arange(4), classes], classes)),
                                   atol=1e-5)
        assert AutoEncoder.from_config(ae.get_config()).get_config() == ae.get_config()
        reloaded = save_and_reload(ae, tmp_path)
        np.testing.assert_allclose(numpy(reloaded.decode(loc[:, 3], classes)), one, atol=1e-5)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="Received: encoder='rnn'"):
            AutoEncoder((16, 16, 1), encoder="rnn")
        with pytest.raises(ValueError, match="multiples of 4"):
            AutoEncoder((18, 18, 1), encoder="conv")


def test_ace_summary_reads_like_figure_5():
    model = tiny_ace(image_shape=(16, 16, 3), symmetry="spatial_color")
    model.build()
    lines = []
    model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
    text = "\n".join(lines)
    for part in ("symmetry_net", "SymmetryStatisticsNet", "classifier (Classifier)", "auto_encoder (AutoEncoder)"):
        assert part in text
    counts = model.parameter_counts()
    assert counts["classifier"] == sum(int(np.prod(w.shape)) for w in model.classifier.trainable_weights)
    assert sum(counts.values()) == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


# ------------------------------------------------------------------ files saved by keras_ace 0.1


# Slow: the same outputs to 1e-4 on TensorFlow once; the quick suite converts a 0.1 file
# on every backend too (tests/test_cli.py::test_convert_rewrites_a_0_1_file).
@pytest.mark.slow
@pytest.mark.parametrize("saved_by, file", [
    (r"keras_ace 0\.1", "legacy_dense_spatial"),
    (r"keras_ace 0\.1", "legacy_conv_spatial_color"),
    (r"keras_ace 0\.2 or 0\.3", "layout2_dense_spatial"),
    (r"keras_ace 0\.2 or 0\.3", "layout2_conv_spatial_color"),
])
def test_an_old_file_says_so_and_converts_to_the_same_model(saved_by, file, tmp_path):
    old = os.path.join(DATA, f"{file}.keras")
    with pytest.raises(ValueError, match=rf"saved by {saved_by}.*python -m keras_ace convert"):
        keras.saving.load_model(old)
    legacy.convert(old, tmp_path / "new.keras")
    model = keras.saving.load_model(tmp_path / "new.keras")
    expected = np.load(os.path.join(DATA, f"{file}.npz"))
    x = expected["x"]
    # Saved on TensorFlow; other backends agree to float32 rounding.
    np.testing.assert_allclose(model.reconstruct(x), expected["reconstruct"], atol=1e-4)
    np.testing.assert_allclose(model.classify(x), expected["classify"], atol=1e-4)
    np.testing.assert_allclose(model.symmetry_statistics(x)["theta"], expected["theta"], atol=1e-5)
    assert int(numpy(model.optimizer.iterations)) == int(expected["iterations"])
    assert model.symmetry_net.frame_prior.is_fitted
    # The decoders' Adam moments, one variable per class in the file (momentum and velocity
    # interleaved, Keras' order), stacked like the kernel.
    kernel = model.auto_encoder.decoder_output.kernel
    with zipfile.ZipFile(old) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        saved = weights["optimizer"]["vars"]
        per_class = [np.asarray(saved[k]) for k in sorted(saved, key=int) if saved[k].shape == tuple(kernel.shape[1:])]
    momentum, velocity = backend_ops.adam_moments(model.optimizer, kernel)
    np.testing.assert_array_equal(numpy(momentum), np.stack(per_class[0::2]))
    np.testing.assert_array_equal(numpy(velocity), np.stack(per_class[1::2]))
    assert np.abs(numpy(momentum)).max() > 0
    # It trains on from the converted optimizer state.
    x_train, y_train = tiny_data(16, model.image_shape)
    model.fit(x_train, y_train, batch_size=8, epochs=1, verbose=0)
    assert int(numpy(model.optimizer.iterations)) == int(expected["iterations"]) + 2
    with pytest.raises(ValueError, match="already in the current layout"):
        legacy.convert(tmp_path / "new.keras", tmp_path / "again.keras")


# ------------------------------------------------------------------ the import graph


LEVELS = {"keras_ace.layers": 0, "keras_ace.models": 1, "keras_ace.training": 2}


def imports_of(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def level(module):
    return next((lvl for prefix, lvl in LEVELS.items() if module == prefix or module.startswith(prefix + ".")), None)


def test_imports_only_go_down_layers_models_training_reproduce():
    for package in ("layers", "models"):
        folder = os.path.join(ROOT, "keras_ace", package)
        for name in os.listdir(folder):
            if name.endswith(".py"):
                own = LEVELS[f"keras_ace.{package}"]
                for module in imports_of(os.path.join(folder, name)):
                    assert level(module) is None or level(module) <= own, f"keras_ace/{package}/{name} imports {module}"
    for folder, _, files in os.walk(os.path.join(ROOT, "keras_ace")):
        for name in files:
            if name.endswith(".py"):
                for module in imports_of(os.path.join(folder, name)):
                    assert not module.startswith(("reproduce", "common", "benchmarks")), f"{name} imports {module}"
