import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_ace import backend_ops
from keras_ace import layers
from keras_ace.initializers import PaperConvUniform
from keras_ace.layers import class_conditional
from tests.helpers import gradient
from tests.helpers import numpy
from tests.helpers import save_and_reload

RNG = np.random.default_rng(0)
IDENTITY = np.asarray(layers.IDENTITY_THETA, np.float32)


def rotation_theta(degrees, scale=1.0, tx=0.0, ty=0.0):
    a = math.radians(degrees)
    return np.asarray([math.cos(a) * scale, -math.sin(a) * scale, tx, math.sin(a) * scale, math.cos(a) * scale, ty], np.float32)


def roll_with_zeros(image, dy, dx):
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)]
    return out


def check_theta_gradient(loss, theta0, eps=1e-3):
    """d loss / d theta at theta0 (1, 6) against central finite differences, and not vanishing."""
    analytic = gradient(loss, theta0)
    numeric = np.zeros(6)
    for i in range(6):
        step = np.zeros((1, 6), np.float32)
        step[0, i] = eps
        numeric[i] = (float(numpy(loss(theta0 + step))) - float(numpy(loss(theta0 - step)))) / (2 * eps)
    assert np.abs(analytic).max() > 0.1
    np.testing.assert_allclose(analytic[0], numeric, rtol=0.05, atol=0.02)


def functional_model(layer, input_shapes):
    inputs = [keras.Input(shape) for shape in input_shapes]
    inputs = inputs if len(inputs) > 1 else inputs[0]  # one input as itself, as the model is called
    return keras.Model(inputs, layer(inputs))


class TestSpatialTransformer:
    def test_identity_returns_input(self):
        images = RNG.random((3, 9, 7, 2)).astype(np.float32)
        out = layers.SpatialTransformer()([images, np.tile(IDENTITY, (3, 1))])
        np.testing.assert_allclose(numpy(out), images, atol=1e-5)

    def test_rotation_by_90_degrees_matches_rot90(self):
        images = RNG.random((1, 8, 8, 1)).astype(np.float32)
        # Output (x, y) samples input (-y, x): a counter-clockwise turn, as np.rot90.
        theta = np.asarray([[0, -1, 0, 1, 0, 0]], np.float32)
        out = numpy(layers.SpatialTransformer()([images, theta]))
        np.testing.assert_allclose(out[0, 1:-1, 1:-1, 0], np.rot90(images[0, :, :, 0])[1:-1, 1:-1], atol=1e-5)

    def test_integer_shift_matches_roll_with_zero_fill(self):
        images = RNG.random((1, 10, 12, 1)).astype(np.float32)
        dy, dx = 2, -3
        theta = np.asarray([[1, 0, -2 * dx / 11, 0, 1, -2 * dy / 9]], np.float32)
        out = numpy(layers.SpatialTransformer()([images, theta]))
        np.testing.assert_allclose(out[0], roll_with_zeros(images[0], dy, dx), atol=1e-5)

    def test_batch_of_different_thetas(self):
        images = RNG.random((3, 8, 8, 1)).astype(np.float32)
        thetas = np.stack([IDENTITY, [0, -1, 0, 1, 0, 0], [1, 0, 0, 0, 1, 0]]).astype(np.float32)
        out = numpy(layers.SpatialTransformer()([images, thetas]))
        np.testing.assert_allclose(out[0], images[0], atol=1e-5)
        np.testing.assert_allclose(out[1, 1:-1, 1:-1, 0], np.rot90(images[1, :, :, 0])[1:-1, 1:-1], atol=1e-5)
        np.testing.assert_allclose(out[2], images[2], atol=1e-5)

    def test_output_size(self):
        images = RNG.random((2, 8, 8, 3)).astype(np.float32)
        layer = layers.SpatialTransformer(output_size=(4, 5))
        out = layer([images, np.tile(IDENTITY, (2, 1))])
        assert out.shape == (2, 4, 5, 3) == layer.compute_output_shape(((2, 8, 8, 3), (2, 6)))

    def test_far_away_theta_gives_blank_image_not_nan(self):
        images = RNG.random((2, 8, 8, 1)).astype(np.float32)
        theta = np.asarray([[1, 0, 50, 0, 1, 50], [1e8, 0, 0, 0, 1e8, 0]], np.float32)
        out = numpy(layers.SpatialTransformer()([images, theta]))
        assert np.isfinite(out).all() and np.abs(out[0]).max() == 0

    def test_gradient_with_respect_to_theta_matches_finite_differences(self):
        ys, xs = np.mgrid[0:12, 0:12]
        images = np.exp(-((xs - 5.3) ** 2 + (ys - 6.1) ** 2) / 8.0)[None, :, :, None].astype(np.float32)
        theta0 = rotation_theta(20, 0.9, 0.1, -0.05)[None]
        weights = ops.convert_to_tensor(RNG.random((1, 12, 12, 1)).astype(np.float32))

        def loss(theta):
            return ops.sum(layers.SpatialTransformer()([images, theta]) * weights)

        check_theta_gradient(loss, theta0)

    def test_gradient_with_respect_to_images(self):
        # Identity: every input pixel is read once with weight 1. An integer shift by
        # (dy, dx) = (1, -2): the pixels shifted off the canvas get no gradient.
        images = RNG.random((1, 6, 8, 1)).astype(np.float32)
        weight_values = RNG.random((1, 6, 8, 1)).astype(np.float32)
        weights = ops.convert_to_tensor(weight_values)
        identity = gradient(lambda x: ops.sum(layers.SpatialTransformer()([x, IDENTITY[None]]) * weights), images)
        np.testing.assert_allclose(identity, weight_values, atol=1e-6)
        shift = np.asarray([[1, 0, 2 * 2 / 7, 0, 1, -2 * 1 / 5]], np.float32)
        shifted = gradient(lambda x: ops.sum(layers.SpatialTransformer()([x, shift]) * weights), images)
        # out[y, x] = in[y - 1, x + 2], so d/d in[y, x] = weights[y + 1, x - 2] where that exists.
        expected = np.zeros_like(weight_values)
        expected[0, :-1, 2:] = weight_values[0, 1:, :-2]
        np.testing.assert_allclose(shifted, expected, atol=1e-6)

    def test_non_finite_theta_reads_zeros(self):
        images = RNG.random((3, 8, 8, 1)).astype(np.float32)
        theta = np.stack([[np.nan, 0, 0, 0, 1, 0], [1, 0, np.inf, 0, 1, 0], IDENTITY]).astype(np.float32)
        out = numpy(layers.SpatialTransformer()([images, theta]))
        np.testing.assert_array_equal(out[:2], np.zeros_like(out[:2]))
        np.testing.assert_allclose(out[2], images[2], atol=1e-5)

    def test_border_padding_reads_the_nearest_edge_pixel(self):
        # An integer shift by (dy, dx) = (2, -3): what comes in from outside repeats the
        # edge rows and columns (np.pad's "edge" mode), as Lasagne's TransformerLayer does.
        images = RNG.random((1, 10, 12, 1)).astype(np.float32)
        dy, dx = 2, -3
        theta = np.asarray([[1, 0, -2 * dx / 11, 0, 1, -2 * dy / 9]], np.float32)
        out = numpy(layers.SpatialTransformer(padding="border")([images, theta]))
        edge = np.pad(images[0], ((dy, 0), (0, -dx), (0, 0)), mode="edge")[:10, -dx:]
        np.testing.assert_allclose(out[0], edge, atol=1e-5)
        # Far away, every point reads a corner; zoomed out, the frame repeats the edges.
        far = numpy(layers.SpatialTransformer(padding="border")([images, np.asarray([[1, 0, 50, 0, 1, 50]], np.float32)]))
        np.testing.assert_allclose(far[0], np.full_like(far[0], images[0, -1, -1, 0]), atol=1e-5)

    def test_border_gradients_reach_theta_and_images(self):
        ys, xs = np.mgrid[0:12, 0:12]
        images = np.exp(-((xs - 5.3) ** 2 + (ys - 6.1) ** 2) / 8.0)[None, :, :, None].astype(np.float32)
        images = images + 0.5 * (xs / 11.0)[None, :, :, None].astype(np.float32)  # bright right edge
        theta0 = rotation_theta(20, 1.3, 0.1, -0.05)[None]  # reaches outside the image
        weights = ops.convert_to_tensor(RNG.random((1, 12, 12, 1)).astype(np.float32))
        border = layers.SpatialTransformer(padding="border")

        def loss(theta):
            return ops.sum(border([images, theta]) * weights)

        check_theta_gradient(loss, theta0)
        # Each edge pixel also receives the weights of the points clipped onto it.
        shift = np.asarray([[1, 0, 2 * 2 / 11, 0, 1, 0]], np.float32)  # out[y, x] = in[y, x + 2]
        image_gradient = gradient(lambda x: ops.sum(border([x, shift]) * weights), images)
        w = numpy(weights)[0, :, :, 0]
        np.testing.assert_allclose(image_gradient[0, :, 2:-1, 0], w[:, :-3], atol=1e-5)
        np.testing.assert_allclose(image_gradient[0, :, -1, 0], w[:, -3:].sum(-1), atol=1e-5)
        np.testing.assert_array_equal(image_gradient[0, :, :2, 0], 0.0)

    def test_non_finite_theta_reads_zeros_with_border_padding_too(self):
        images = RNG.random((3, 8, 8, 1)).astype(np.float32) + 0.5
        theta = np.stack([[np.nan, 0, 0, 0, 1, 0], [1, 0, np.inf, 0, 1, 0], IDENTITY]).astype(np.float32)
        out = numpy(layers.SpatialTransformer(padding="border")([images, theta]))
        np.testing.assert_array_equal(out[:2], np.zeros_like(out[:2]))
        np.testing.assert_allclose(out[2], images[2], atol=1e-5)

    def test_bad_input(self):
        with pytest.raises(ValueError, match="Received: padding='reflect'"):
            layers.SpatialTransformer(padding="reflect")
        layer = layers.SpatialTransformer()
        with pytest.raises(ValueError, match=r"Received: images.shape=\(2, 8, 8\)"):
            layer([np.zeros((2, 8, 8), np.float32), np.zeros((2, 6), np.float32)])
        with pytest.raises(ValueError, match=r"Received: theta.shape=\(2, 4\)"):
            layers.SpatialTransformer()([np.zeros((2, 8, 8, 1), np.float32), np.zeros((2, 4), np.float32)])
        with pytest.raises(ValueError, match="Received: output_size"):
            layers.SpatialTransformer(output_size=(0, 3))

    def test_config_and_saving(self, tmp_path):
        layer = layers.SpatialTransformer(output_size=(6, 6), padding="border")
        again = layers.SpatialTransformer.from_config(layer.get_config())
        assert again.output_size == (6, 6) and again.padding == "border"
        model = functional_model(layer, [(8, 8, 1), (6,)])
        inputs = [RNG.random((2, 8, 8, 1)).astype(np.float32), np.stack([rotation_theta(30), rotation_theta(-10, 1.2)])]
        np.testing.assert_allclose(numpy(save_and_reload(model, tmp_path)(inputs)), numpy(model(inputs)), atol=1e-6)


class TestInverseAffine:
    def test_composition_is_identity(self):
        thetas = np.stack([rotation_theta(30, 0.8, 0.2, -0.1), rotation_theta(-45, 1.2, -0.3, 0.3)])
        inverse = numpy(layers.InverseAffine()(thetas))
        for theta, inv in zip(thetas, inverse):
            m = np.vstack([theta.reshape(2, 3), [0, 0, 1]])
            mi = np.vstack([inv.reshape(2, 3), [0, 0, 1]])
            np.testing.assert_allclose(m @ mi, np.eye(3), atol=1e-5)

    def test_resample_then_inverse_recovers_interior(self):
        ys, xs = np.mgrid[0:24, 0:24]
        images = np.exp(-((xs - 11.5) ** 2 + (ys - 11.5) ** 2) / 40.0)[None, :, :, None].astype(np.float32)
        theta = rotation_theta(25, 0.9, 0.05, -0.05)[None]
        st = layers.SpatialTransformer()
        back = numpy(st([st([images, theta]), layers.InverseAffine()(theta)]))
        np.testing.assert_allclose(back[0, 6:-6, 6:-6], images[0, 6:-6, 6:-6], atol=0.03)  # two bilinear passes blur a little

    def test_singular_theta_gives_the_guarded_inverse(self):
        """A zero determinant is replaced by +min_determinant (1e-3): the adjugate divided by it."""
        inverse = numpy(layers.InverseAffine()(np.asarray([[0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 1, 0]], np.float32)))
        np.testing.assert_allclose(inverse, [[0, 0, 0, 0, 0, 0], [1000, -1000, 0, -1000, 1000, 0]], rtol=1e-5, atol=1e-6)

    def test_bad_input_and_config(self):
        with pytest.raises(ValueError, match=r"Received: theta.shape=\(2, 5\)"):
            layers.InverseAffine()(np.zeros((2, 5), np.float32))
        with pytest.raises(ValueError, match="Received: min_determinant=0"):
            layers.InverseAffine(min_determinant=0)
        assert layers.InverseAffine.from_config(layers.InverseAffine(1e-2).get_config()).min_determinant == 1e-2

    def test_saving(self, tmp_path):
        model = functional_model(layers.InverseAffine(), [(6,)])
        theta = np.stack([rotation_theta(30, 0.8, 0.2, -0.1)])
        np.testing.assert_allclose(numpy(save_and_reload(model, tmp_path)(theta)), numpy(model(theta)), atol=1e-6)


class TestColorMixing:
    def test_row_stochastic_matrix(self):
        logits = RNG.normal(size=(5, 9)).astype(np.float32) * 3
        m = numpy(layers.RowStochastic()(logits))
        assert m.shape == (5, 3, 3) and (m >= 0).all()
        np.testing.assert_allclose(m.sum(-1), 1, atol=1e-6)
        near_identity = numpy(layers.RowStochastic()(np.zeros((1, 9), np.float32)))[0]
        assert np.abs(near_identity - np.eye(3)).max() < 0.05

    def test_identity_leaves_images_and_inverse_undoes(self):
        images = RNG.random((2, 4, 5, 3)).astype(np.float32)
        identity = np.tile(np.eye(3, dtype=np.float32), (2, 1, 1))
        np.testing.assert_allclose(numpy(layers.ColorMixing()([images, identity])), images, atol=1e-6)
        m = numpy(layers.RowStochastic()(RNG.normal(size=(2, 9)).astype(np.float32)))
        mixed = layers.ColorMixing()([images, m])
        np.testing.assert_allclose(numpy(mixed)[0, 1, 2], m[0] @ images[0, 1, 2], atol=1e-5)
        back = numpy(layers.ColorMixing(inverse=True)([mixed, m.reshape(2, 9)]))
        np.testing.assert_allclose(back, images, atol=1e-4)

    def test_bad_input(self):
        with pytest.raises(ValueError, match=r"Received: images.shape=\(2, 4, 4, 1\)"):
            layers.ColorMixing()([np.zeros((2, 4, 4, 1), np.float32), np.zeros((2, 9), np.float32)])
        with pytest.raises(ValueError, match=r"Received: matrix.shape=\(2, 4\)"):
            layers.ColorMixing()([np.zeros((2, 4, 4, 3), np.float32), np.zeros((2, 4), np.float32)])
        with pytest.raises(ValueError, match=r"Received: shape=\(2, 3\)"):
            layers.RowStochastic()(np.zeros((2, 3), np.float32))

    def test_saving(self, tmp_path):
        inputs = [keras.Input((4, 4, 3)), keras.Input((9,))]
        matrix = layers.RowStochastic(identity_logit=2.0)(inputs[1])
        model = keras.Model(inputs, layers.ColorMixing(inverse=True)([inputs[0], matrix]))
        data = [RNG.random((2, 4, 4, 3)).astype(np.float32), RNG.normal(size=(2, 9)).astype(np.float32)]
        np.testing.assert_allclose(numpy(save_and_reload(model, tmp_path)(data)), numpy(model(data)), atol=1e-6)
        config = layers.ColorMixing(inverse=True).get_config()
        assert layers.ColorMixing.from_config(config).inverse


class TestGibbsSampler:
    @pytest.mark.parametrize("distribution", ["gaussian", "laplacian"])
    def test_sample_moments(self, distribution):
        n = 20000
        loc = np.full((n, 2), [1.5, -0.5], np.float32)
        log_scale = np.full((n, 2), np.log([0.5, 2.0]), np.float32)
        z = numpy(layers.GibbsSampler(distribution, seed=1)([loc, log_scale], training=True))
        np.testing.assert_allclose(z.mean(0), [1.5, -0.5], atol=0.06)
        # Standard deviation of the family: scale, or sqrt(2) scale for the Laplacian.
        factor = 1.0 if distribution == "gaussian" else math.sqrt(2)
        np.testing.assert_allclose(z.std(0), np.asarray([0.5, 2.0]) * factor, rtol=0.04)
        # The Laplacian's mean absolute deviation is its scale.
        if distribution == "laplacian":
            np.testing.assert_allclose(np.abs(z - [1.5, -0.5]).mean(0), [0.5, 2.0], rtol=0.04)

    def test_inference_returns_mean_unless_asked(self):
        sampler = layers.GibbsSampler(seed=2)
        loc = RNG.normal(size=(4, 3)).astype(np.float32)
        log_scale = np.zeros((4, 3), np.float32)
        np.testing.assert_array_equal(numpy(sampler([loc, log_scale], training=False)), loc)
        assert np.abs(numpy(sampler([loc, log_scale], training=False, sample=True)) - loc).max() > 0

    @pytest.mark.parametrize("distribution", ["gaussian", "laplacian"])
    @pytest.mark.parametrize("prior_scale", [1.0, 1 / math.sqrt(2)])
    def test_closed_form_kl_matches_monte_carlo(self, distribution, prior_scale):
        sampler = layers.GibbsSampler(distribution, prior_scale=prior_scale, seed=3)
        loc, log_scale = np.float32(0.7), np.float32(np.log(0.4))
        n = 200000
        z = numpy(sampler([np.full((n, 1), loc), np.full((n, 1), log_scale)], training=True))[:, 0].astype(np.float64)
        b = math.exp(log_scale)
        if distribution == "gaussian":
            log_q = -0.5 * ((z - loc) / b) ** 2 - math.log(b)
            log_p = -0.5 * (z / prior_scale) ** 2 - math.log(prior_scale)
        else:
            log_q = -np.abs(z - loc) / b - math.log(b)
            log_p = -np.abs(z) / prior_scale - math.log(prior_scale)
        monte_carlo = np.mean(log_q - log_p)
        closed = float(numpy(sampler.kl_divergence(np.asarray([[loc]]), np.asarray([[log_scale]])))[0])
        assert abs(closed - monte_carlo) < 0.02, (closed, monte_carlo)

    @pytest.mark.parametrize("distribution", ["gaussian", "laplacian"])
    def test_kl_is_zero_at_the_prior_and_sums_over_last_axis(self, distribution):
        sampler = layers.GibbsSampler(distribution)
        kl = numpy(sampler.kl_divergence(np.zeros((3, 4), np.float32), np.zeros((3, 4), np.float32)))
        np.testing.assert_allclose(kl, np.zeros(3), atol=1e-6)
        kl = numpy(sampler.kl_divergence(np.ones((3, 4), np.float32), np.zeros((3, 4), np.float32)))
        assert kl.shape == (3,) and (kl > 0).all()

    @pytest.mark.parametrize("distribution", ["gaussian", "laplacian"])
    def test_gradients_reach_location_and_scale(self, distribution):
        sampler = layers.GibbsSampler(distribution, seed=4)
        params = np.asarray([[0.3, -0.2]], np.float32)

        def objective(p):
            z = sampler([p[:, :1], p[:, 1:]], training=True)
            return ops.sum(z**2) + ops.sum(sampler.kl_divergence(p[:, :1], p[:, 1:]))

        grad = gradient(objective, params)
        assert np.isfinite(grad).all() and (np.abs(grad) > 1e-4).all()

    def test_extreme_log_scale_stays_finite(self):
        sampler = layers.GibbsSampler("laplacian", seed=5)
        loc = np.zeros((2, 2), np.float32)
        log_scale = np.asarray([[-1e4, 1e4], [80, -80]], np.float32)
        assert np.isfinite(numpy(sampler([loc, log_scale], training=True))).all()
        assert np.isfinite(numpy(sampler.kl_divergence(loc, log_scale))).all()

    def test_bad_input(self):
        with pytest.raises(ValueError, match="Received: distribution='cauchy'"):
            layers.GibbsSampler("cauchy")
        with pytest.raises(ValueError, match=r"Received: \(2, 3\) and \(2, 4\)"):
            layers.GibbsSampler()([np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)])

    def test_config_and_saving(self, tmp_path):
        sampler = layers.GibbsSampler("laplacian", prior_scale=0.5, seed=7)
        config = sampler.get_config()
        assert config["seed"] == 7 and config["distribution"] == "laplacian"
        inputs = [keras.Input((3,)), keras.Input((3,))]
        model = keras.Model(inputs, sampler(inputs))
        reloaded = save_and_reload(model, tmp_path).layers[-1]
        loc, log_scale = RNG.normal(size=(2, 3)).astype(np.float32), np.full((2, 3), -0.5, np.float32)
        # Family, prior scale and seed survive: the same KL and the same draws as a fresh layer.
        fresh = layers.GibbsSampler("laplacian", prior_scale=0.5, seed=7)
        np.testing.assert_allclose(numpy(reloaded.kl_divergence(loc, log_scale)), numpy(fresh.kl_divergence(loc, log_scale)), rtol=1e-6)
        assert abs(float(numpy(reloaded.kl_divergence(loc, log_scale))[0])
                   - float(numpy(layers.GibbsSampler("laplacian").kl_divergence(loc, log_scale))[0])) > 0.1
        draws = numpy(reloaded([loc, log_scale], training=True))
        np.testing.assert_allclose(draws, numpy(fresh([loc, log_scale], training=True)), atol=1e-6)
        assert np.abs(draws - loc).max() > 0


class TestPaperConvUniform:
    def test_bounds_follow_fan_in(self):
        w = numpy(PaperConvUniform(seed=0)((3, 3, 32, 64)))
        limit = 1 / math.sqrt(3 * 3 * 32)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
        assert abs(w.std() - limit / math.sqrt(3)) < 0.05 * limit

    def test_all_dimensions_and_transposed(self):
        assert PaperConvUniform(mode="all").limit((3, 3, 32, 64)) == 1 / math.sqrt(3 * 3 * 32 * 64)
        assert PaperConvUniform(transposed=True).limit((5, 5, 32, 64)) == 1 / math.sqrt(5 * 5 * 64)

    def test_config_and_bad_input(self, tmp_path):
        init = PaperConvUniform(mode="all", seed=3)
        assert keras.initializers.deserialize(keras.initializers.serialize(init)).mode == "all"
        with pytest.raises(ValueError, match="Received: mode='fan_out'"):
            PaperConvUniform(mode="fan_out")
        model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3, kernel_initializer=init)])
        reloaded = save_and_reload(model, tmp_path)
        assert isinstance(reloaded.layers[0].kernel_initializer, PaperConvUniform)


class TestMaxPooling2x2:
    @pytest.mark.parametrize("height, width", [(7, 6), (6, 7)])  # an odd size: the last row or column is dropped
    def test_matches_keras_max_pooling_values_and_gradient(self, height, width):
        x = RNG.normal(size=(3, height, width, 2)).astype(np.float32)
        ours, theirs = layers.MaxPooling2x2(), keras.layers.MaxPooling2D(2)
        np.testing.assert_array_equal(numpy(ours(x)), numpy(theirs(x)))
        assert ours.compute_output_shape((None, height, width, 2)) == (None, 3, 3, 2)
        weights = RNG.normal(size=(3, 3, 3, 2)).astype(np.float32)
        np.testing.assert_allclose(gradient(lambda v: ops.sum(ops.multiply(ours(v), weights)), x),
                                   gradient(lambda v: ops.sum(ops.multiply(theirs(v), weights)), x), atol=1e-6)

    def test_ties_pass_each_window_its_gradient_once_and_only_to_its_largest(self):
        x = np.zeros((2, 4, 4, 3), np.float32)  # every window a four-way tie ...
        x[:, 0, 1] = 1.0  # ... but the top left ones' largest, in each channel
        x[:, 3, 2:] = 2.0  # and a two-way tie in the bottom right
        weights = RNG.uniform(1.0, 2.0, size=(2, 2, 2, 3)).astype(np.float32)
        grad = gradient(lambda v: ops.sum(ops.multiply(layers.MaxPooling2x2()(v), weights)), x)
        windows = grad.reshape(2, 2, 2, 2, 2, 3)
        np.testing.assert_allclose(windows.sum(axis=(2, 4)), weights, rtol=1e-6)  # each window's gradient, once
        largest = x.reshape(2, 2, 2, 2, 2, 3) == x.reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4), keepdims=True)
        assert (windows[~largest] == 0).all() and (windows >= 0).all()

    def test_config_round_trip(self):
        layer = layers.MaxPooling2x2(name="pool")
        assert layers.MaxPooling2x2.from_config(layer.get_config()).name == "pool"


class TestConv2D:
    """keras_ace's Conv2D (PyTorch: no layout copies) against keras.layers.Conv2D with the same weights."""

    @pytest.mark.parametrize("size, kernel, strides, padding", [
        (9, 3, 1, "same"), (8, 5, 2, "same"), (7, 5, 2, "same"), (9, 4, 1, "same"), (8, 3, 2, "valid"),
    ])
    def test_matches_keras_values_and_gradients(self, size, kernel, strides, padding):
        x = RNG.normal(size=(2, size, size, 3)).astype(np.float32)
        ours = layers.Conv2D(4, kernel, strides=strides, padding=padding, activation="relu")
        theirs = keras.layers.Conv2D(4, kernel, strides=strides, padding=padding, activation="relu")
        ours.build(x.shape)
        theirs.build(x.shape)
        theirs.set_weights([RNG.normal(size=w.shape).astype(np.float32) for w in ours.get_weights()])
        ours.set_weights(theirs.get_weights())
        expected = numpy(theirs(x))
        np.testing.assert_allclose(numpy(ours(x)), expected, atol=1e-5)
        assert ours.compute_output_shape(x.shape) == expected.shape
        weights = RNG.normal(size=expected.shape).astype(np.float32)
        np.testing.assert_allclose(gradient(lambda v: ops.sum(ops.multiply(ours(v), weights)), x),
                                   gradient(lambda v: ops.sum(ops.multiply(theirs(v), weights)), x), atol=1e-4)
        kernel_value = numpy(theirs.kernel)

        def loss_through(conv):
            return lambda k: ops.sum(ops.multiply(ops.relu(conv(x, k)), weights))

        np.testing.assert_allclose(
            gradient(loss_through(lambda v, k: backend_ops.conv2d(v, k, (strides, strides), padding)), kernel_value),
            gradient(loss_through(lambda v, k: ops.conv(v, k, strides, padding)), kernel_value), atol=1e-4)

    def test_refuses_what_it_does_not_compute(self):
        with pytest.raises(ValueError, match="channels-last.*Received: data_format='channels_first'"):
            layers.Conv2D(4, 3, data_format="channels_first")
        with pytest.raises(ValueError, match="dilation_rate=\\(2, 2\\)"):
            layers.Conv2D(4, 3, dilation_rate=2)

    def test_config_round_trip_and_reload(self, tmp_path):
        layer = layers.Conv2D(4, 3, padding="same", name="conv")
        again = layers.Conv2D.from_config(layer.get_config())
        assert (again.name, again.filters, again.padding) == ("conv", 4, "same")
        model = keras.Sequential([keras.Input((6, 6, 1)), layer])
        x = RNG.normal(size=(2, 6, 6, 1)).astype(np.float32)
        reloaded = save_and_reload(model, tmp_path)
        assert isinstance(reloaded.layers[0], layers.Conv2D)
        np.testing.assert_allclose(numpy(reloaded(x)), numpy(model(x)), atol=1e-6)


class TestDropout:
    @pytest.mark.parametrize("rate", [0.2, 0.5])
    def test_keeps_one_minus_rate_scaled_up_and_passes_the_gradient_through_the_kept(self, rate):
        layer = layers.Dropout(rate, seed=3)
        x = RNG.uniform(1.0, 2.0, size=(200, 50)).astype(np.float32)
        np.testing.assert_array_equal(numpy(layer(x, training=False)), x)
        out = numpy(layer(x, training=True))
        kept = out != 0
        assert abs(kept.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / kept.size)  # 4 standard errors
        np.testing.assert_allclose(out[kept], x[kept] / (1 - rate), rtol=1e-6)
        assert not np.array_equal(kept, numpy(layer(x, training=True)) != 0)  # a fresh mask each call
        seed = keras.random.SeedGenerator(7)
        grad = gradient(lambda v: ops.sum(backend_ops.dropout(v, rate, seed)), x)
        assert (np.isclose(grad, 0.0) | np.isclose(grad, 1 / (1 - rate))).all()
        assert abs((grad != 0).mean() - (1 - rate)) < 0.02

    def test_a_seed_gives_the_same_masks_every_run(self):
        x = np.ones((50, 40), np.float32)
        first, again = keras.random.SeedGenerator(5), keras.random.SeedGenerator(5)
        masks = [numpy(backend_ops.dropout(x, 0.5, first)) for _ in range(2)]
        np.testing.assert_array_equal(numpy(backend_ops.dropout(x, 0.5, again)), masks[0])
        assert not np.array_equal(masks[0], masks[1])

    def test_config_round_trip(self):
        layer = layers.Dropout(0.3, seed=5, name="drop")
        again = layers.Dropout.from_config(layer.get_config())
        assert (again.rate, again.seed, again.name) == (0.3, 5, "drop")


class TestClassConditional:
    """Each row through its own class's weights, against a plain per-class loop."""

    @pytest.mark.parametrize("units, inputs", [(4, 3), (300, 512)])
    def test_class_dense_matches_a_loop(self, units, inputs):
        layer = layers.ClassDense(5, units, activation="tanh")
        x = RNG.normal(size=(9, inputs)).astype(np.float32)
        classes = np.asarray([0, 4, 4, 2, 1, 0, 3, 4, 2])
        out = numpy(layer(x, classes))
        kernels, biases = numpy(layer.kernel), numpy(layer.bias)
        expected = np.stack([np.tanh(x[i] @ kernels[c] + biases[c]) for i, c in enumerate(classes)])
        np.testing.assert_allclose(out, expected, atol=1e-4)
        everyone = numpy(layer.call_all(np.repeat(x[:, None], 5, axis=1)))
        np.testing.assert_allclose(everyone[np.arange(9), classes], expected, atol=1e-4)

    @pytest.mark.parametrize("make", [lambda: layers.ClassDense(4, 6), lambda: layers.ClassConv2DTranspose(4, 2)])
    def test_every_class_starts_with_its_own_weights(self, make):
        layer = make()
        layer.build((None, 3) if isinstance(layer, layers.ClassDense) else (None, 4, 4, 3))
        kernels = numpy(layer.kernel)
        assert min(np.abs(a - b).max() for i, a in enumerate(kernels) for b in kernels[i + 1 :]) > 1e-3

    def test_stacked_initializer_compiles_as_keras_compiles_a_large_distributed_weight(self):
        """Under a distribution, Keras' JAX backend jits a weight of 250 MB or more through `initializer.__call__`."""
        init = class_conditional.StackedInitializer(keras.initializers.GlorotUniform(seed=3), 3)
        eager = numpy(init((3, 4, 5), dtype="float32"))
        assert eager.shape == (3, 4, 5) and np.abs(eager[0] - eager[1]).max() > 1e-3
        if keras.backend.backend() == "jax":
            import jax

            compiled = jax.jit(init.__call__, static_argnames=["shape", "dtype"])(shape=(3, 4, 5), dtype="float32")
            np.testing.assert_allclose(numpy(compiled), eager, rtol=1e-6)

    def test_matmul_parts_values_and_gradients(self):
        """Part k times kernel k, and both gradients, against NumPy; one part empty, one part's output unused."""
        kernel = RNG.normal(size=(4, 3, 5)).astype(np.float32)
        parts = [RNG.normal(size=(n, 3)).astype(np.float32) for n in (2, 0, 3, 1)]
        weights = [RNG.normal(size=(len(p), 5)).astype(np.float32) for p in parts]
        used = [0, 1, 2]  # part 3's product does not reach the loss

        def loss(products):
            return sum(ops.sum(products[k] * ops.convert_to_tensor(weights[k])) for k in used)

        products = [numpy(p) for p in backend_ops.matmul_parts(parts, kernel)]
        for part, one, product in zip(parts, kernel, products):
            np.testing.assert_allclose(product, part @ one, rtol=1e-5, atol=1e-6)
        grad_kernel = gradient(lambda w: loss(backend_ops.matmul_parts(parts, w)), kernel)
        expected = np.stack([parts[k].T @ weights[k] if k in used else np.zeros((3, 5), np.float32) for k in range(4)])
        np.testing.assert_allclose(grad_kernel, expected, rtol=1e-5, atol=1e-6)
        grad_part = gradient(lambda p: loss(backend_ops.matmul_parts([p, *parts[1:]], kernel)), parts[0])
        np.testing.assert_allclose(grad_part, weights[0] @ kernel[0].T, rtol=1e-5, atol=1e-6)

    def test_apply_by_class_gives_each_class_only_a_part_of_the_batch(self):
        sizes = []

        def call_parts(parts):  # class k multiplies by k + 1
            sizes.append([int(part.shape[0]) for part in parts])
            return [part * (k + 1.0) for k, part in enumerate(parts)]

        x = RNG.normal(size=(40, 3)).astype(np.float32)
        balanced = np.tile(np.arange(10), 4)
        RNG.shuffle(balanced)
        out = numpy(class_conditional.apply_by_class(call_parts, x, balanced, 10))
        np.testing.assert_allclose(out, x * (balanced[:, None] + 1), rtol=1e-6)
        # Four rows per class (TensorFlow adds a zero row), or the bound under XLA; never all 40.
        assert max(sizes[0]) in (4, 5, class_conditional.static_capacity(40, 10))
        # One class fuller than any bound, alone or beside others: still exact.
        out = numpy(class_conditional.apply_by_class(call_parts, x, np.full(40, 3), 10))
        np.testing.assert_allclose(out, x * 4, rtol=1e-6)
        mixed = np.concatenate([np.full(30, 3), np.arange(10)])
        RNG.shuffle(mixed)
        out = numpy(class_conditional.apply_by_class(call_parts, x, mixed, 10))
        np.testing.assert_allclose(out, x * (mixed[:, None] + 1), rtol=1e-6)
        grad = gradient(lambda v: ops.sum(class_conditional.apply_by_class(call_parts, v, mixed, 10)), x)
        np.testing.assert_allclose(grad, np.broadcast_to(mixed[:, None] + 1.0, x.shape), rtol=1e-6)
        # The weights' gradient through the rows beyond a part's capacity (JAX: the correction's own VJP).
        kernel = RNG.normal(size=(10, 3, 2)).astype(np.float32)
        weights = RNG.normal(size=(40, 2)).astype(np.float32)

        def loss(w):
            out = class_conditional.apply_by_class(lambda parts: backend_ops.matmul_parts(parts, w), x, mixed, 10)
            return ops.sum(ops.multiply(out, ops.convert_to_tensor(weights)))

        expected = np.zeros_like(kernel)
        for row, c in enumerate(mixed):
            expected[c] += np.outer(x[row], weights[row])
        np.testing.assert_allclose(gradient(loss, kernel), expected, rtol=1e-5, atol=1e-5)

    def test_class_conv2d_transpose_matches_a_loop(self):
        layer = layers.ClassConv2DTranspose(3, 2, kernel_size=5, strides=2, activation="sigmoid")
        x = RNG.normal(size=(5, 4, 4, 3)).astype(np.float32)
        classes = np.asarray([2, 0, 2, 1, 0])
        out = numpy(layer(x, classes))
        assert out.shape == (5, 8, 8, 2)
        # A plain Keras transposed convolution per class, with that class's weights.
        plain = keras.layers.Conv2DTranspose(2, 5, strides=2, padding="same", activation="sigmoid")
        plain.build((None, 4, 4, 3))
        for i, c in enumerate(classes):
            plain.kernel.assign(numpy(layer.kernel)[c])
            plain.bias.assign(numpy(layer.bias)[c])
            np.testing.assert_allclose(out[i], numpy(plain(x[i : i + 1]))[0], atol=1e-5)
