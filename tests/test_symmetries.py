"""A kind of symmetry statistics is one class and one registration (`keras_ace.models.symmetries`)."""

import math

import keras
import numpy as np
import pytest
from keras import ops
from scipy.special import logsumexp

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
        return ops.multiply(x, factor[:, :, None, None])

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
    assert symmetry_kinds("spatial_mirror_color") == ("spatial", "mirror", "color")
    for bad in ("colour", ("spatial", "spatial"), ("spatial", "reflection")):
        with pytest.raises(ValueError, match="Unknown symmetry"):
            symmetry_kinds(bad)


# ----------------------------------------------------------------- the mirror, a discrete symmetry


def mirror_model(seed=1, **settings):
    """A tiny ACE whose frames may mirror, with a score head that already prefers one orientation."""
    model = ACE((16, 16, 1), symmetry="spatial_mirror", **{**TINY, "seed": seed, **settings})
    model.build()
    head = model.symmetry_net.state_score
    head.kernel.assign(np.random.default_rng(seed).normal(0.0, 1.0, head.kernel.shape).astype("float32"))
    return model


def test_box_04_mirrors_in_state_1_and_undoes_it():
    model = ACE((16, 16, 1), symmetry="spatial_mirror", **TINY)
    x, _ = tiny_data(2)
    frame = {"theta": np.tile(np.float32([1, 0, 0, 0, 1, 0]), (2, 1)), "mirror": np.float32([[0.0], [1.0]])}
    canonical = ops.convert_to_numpy(model.canonicalize(x, frame))
    np.testing.assert_allclose(canonical[0], x[0], atol=1e-5)
    np.testing.assert_allclose(canonical[1], x[1, :, ::-1], atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(model.to_observation(canonical, frame)), x, atol=1e-5)


def test_a_mirrored_image_gets_the_mirrored_orientation_posterior():
    model = mirror_model()
    x = np.random.default_rng(5).random((8, 16, 16, 1)).astype("float32")
    as_is, mirrored = model.symmetry_net(x), model.symmetry_net(x[:, :, ::-1].copy())
    logits = ops.convert_to_numpy(as_is["state_logits"])
    assert np.abs(logits[:, 0] - logits[:, 1]).min() > 1e-4  # the head prefers one orientation, no ties
    np.testing.assert_allclose(ops.convert_to_numpy(mirrored["state_logits"]), logits[:, ::-1], atol=1e-5)
    np.testing.assert_array_equal(ops.convert_to_numpy(mirrored["mirror"]), 1 - ops.convert_to_numpy(as_is["mirror"]))
    # The more probable state is the frame of inference.
    np.testing.assert_array_equal(model.symmetry_statistics(x)["mirror"][:, 0], np.argmax(logits, axis=1))


def test_the_kl_of_the_orientation_is_zero_at_the_start_and_log_2_when_sure():
    model = ACE((16, 16, 1), symmetry="spatial_mirror", **{**TINY, "seed": 1})
    x, _ = tiny_data(4)
    without = ACE((16, 16, 1), symmetry="spatial", **{**TINY, "seed": 1})
    # Zero score kernel: both orientations 1/2, no KL beyond the statistics' own.
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.symmetry_net(x)["kl"]), ops.convert_to_numpy(without.symmetry_net(x)["kl"]), atol=1e-4
    )
    model.symmetry_net.state_score.kernel.assign(np.random.default_rng(0).normal(0, 1e4, (8, 1)).astype("float32"))
    kl = ops.convert_to_numpy(model.symmetry_net(x)["kl"]) - ops.convert_to_numpy(without.symmetry_net(x)["kl"])
    np.testing.assert_allclose(kl, math.log(2), atol=1e-3)


def hand_written_estimate(model, x, seed):
    """`nll_estimate` with one sample per image, the sum over orientations and classes written out.

    The draws are the estimator's, in its order: the statistics' noise (B, n), then the
    latents' noise for the as-is rows and then the mirrored rows (2B, K, L).
    """
    generator = keras.random.SeedGenerator(seed)
    net, latents = model.symmetry_net, model.auto_encoder.latent_sampler
    statistics = net(x)
    loc, log_scale = statistics["loc"], statistics["log_scale"]
    u = loc + net.sampler.scale(log_scale) * net.sampler.noise(ops.shape(loc), seed=generator)
    frame_weight = ops.convert_to_numpy(net.sampler.log_prior(u) - net.sampler.log_posterior(u, loc, log_scale))
    theta = np.float32([1, 0, 0, 0, 1, 0]) + 0.2 * ops.convert_to_numpy(u)
    spatial = model.symmetries[0]
    noise = ops.convert_to_numpy(latents.noise((2 * len(x), model.num_classes, model.latent_dim), seed=generator))
    terms = np.zeros((len(x), 2, model.num_classes))
    for m in (0, 1):
        canonical = ops.convert_to_numpy(spatial.canonicalize(x, theta))
        canonical = canonical[:, :, ::-1] if m else canonical
        z_loc, z_log_scale = (ops.convert_to_numpy(t) for t in model.auto_encoder.encode(canonical))
        z = z_loc + np.exp(z_log_scale) * noise[m * len(x) : (m + 1) * len(x)]
        decoded = ops.convert_to_numpy(model.auto_encoder.decode_all(z))
        for c in range(model.num_classes):
            drawn = decoded[:, c, :, ::-1] if m else decoded[:, c]
            p = np.clip(ops.convert_to_numpy(spatial.to_observation(drawn.copy(), theta)), 1e-6, 1 - 1e-6)
            reconstruction = -(x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(len(x), -1).sum(axis=1)
            log_p_z = (-0.5 * z[:, c] ** 2 - 0.5 * math.log(2 * math.pi)).sum(axis=-1)
            log_q_z = (-0.5 * noise[m * len(x) : (m + 1) * len(x), c] ** 2 - z_log_scale[:, c]
                       - 0.5 * math.log(2 * math.pi)).sum(axis=-1)
            terms[:, m, c] = log_p_z - log_q_z - reconstruction
    # Uniform priors: 1/2 per orientation, 1/K per class.
    log_weight = frame_weight + logsumexp(terms.reshape(len(x), -1), axis=1) - math.log(2 * model.num_classes)
    return -log_weight


def test_nll_estimate_sums_over_both_orientations_as_written_by_hand():
    model = mirror_model(symmetry_initial_log_scale=-1.0)
    x, _ = tiny_data(3)
    x[:, :, :8] *= 0.1  # dark on the left: the two orientations score differently
    np.testing.assert_allclose(model.nll_estimate(x, samples=1, seed=7), hand_written_estimate(model, x, 7), atol=1e-3)


def test_a_mirror_model_trains_saves_and_loads(tmp_path):
    model = mirror_model()
    keras_ace.compile_ace(model)
    x, y = tiny_data(32)
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    reloaded = save_and_reload(model, tmp_path)
    assert reloaded.symmetry == "spatial_mirror"
    np.testing.assert_allclose(
        ops.convert_to_numpy(reloaded.symmetry_net(x[:4])["state_logits"]),
        ops.convert_to_numpy(model.symmetry_net(x[:4])["state_logits"]), atol=1e-5,
    )
    np.testing.assert_allclose(reloaded.reconstruct(x[:4]), model.reconstruct(x[:4]), atol=1e-5)
    assert model.sample(class_id=1, n=4, seed=0).shape == (4, 16, 16, 1)
    assert set(model.draw_frames(6, seed=0)) == {"theta", "mirror"}


def test_files_from_before_the_gains_were_named_so_load():
    from keras_ace.models.legacy import LAYOUT
    from keras_ace.models.symmetry_statistics_net import SymmetryStatisticsNet

    config = {**ACE((16, 16, 1), symmetry="spatial", **TINY).get_config(), "layout": LAYOUT}
    del config["symmetry_gains"]
    config["symmetry_prior_scale"] = (0.3, 1.0)
    assert ACE.from_config(config).symmetries[0].gain == 0.3
    net = SymmetryStatisticsNet.from_config({**SymmetryStatisticsNet(filters=(4, 4), units=8).get_config(), "prior_scale": (0.1, 1.0)})
    assert net.gains == (0.1, 1.0) and "gains" in net.get_config() and "prior_scale" not in net.get_config()
