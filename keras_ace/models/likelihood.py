"""How likely an ACE finds images: the Bernoulli likelihood, the eq. 4.1 bound and the importance-weighted estimate.

`nll_bound` is what `evaluate` reports (`nll_bound`, `val_nll_bound`); `nll_estimate`
compares models with and without symmetry statistics (`ACE.nll_estimate`). Both take
the model as their first argument and read its parts.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_ace import validation
from keras_ace.models.symmetries import every_state
from keras_ace.models.symmetries import per_state
from keras_ace.models.symmetries import repeat_rows

# Keeps the Bernoulli log-likelihood finite where a resampled output is exactly 0 or 1.
PROBABILITY_EPSILON = 1e-6
# Rows (images times their samples) per pass of `nll_estimate`: on a 2-core CPU 1,000
# rows take half the time per image of 250 (fig2_mnist), and K decoded images per row
# stay small (CIFAR-10: 120 MB).
ESTIMATE_ROWS = 1000


def bernoulli_nll(x, probabilities):
    """-log p(x | probabilities) summed over pixels, per example: (B, H, W, C) -> (B,)."""
    x = ops.convert_to_tensor(x, dtype=probabilities.dtype)
    p = ops.clip(probabilities, PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON)
    nll = -(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p))
    return ops.sum(ops.reshape(nll, (ops.shape(nll)[0], -1)), axis=-1)


def over_states(outputs):
    """The rows a loss scores from `ACE.call`'s outputs, their copies of each image, and the expectation over them.

    Returns `(rows, copies, expected)`: without a discrete symmetry the outputs
    themselves, 1 and the identity; with one, every state's rows (state-major), the
    number of states S and `expected`, which takes a per-row term (S * B,) to its
    expectation (B,) under the posterior over the states.
    """
    if "states" not in outputs:
        return outputs, 1, lambda term: term
    rows = outputs["states"]
    weights = ops.exp(rows["log_weights"])  # (B, S)
    copies = weights.shape[-1]
    return rows, copies, lambda term: ops.sum(per_state(term, copies) * ops.transpose(weights), axis=0)


def nll_bound(model, x, outputs):
    """The eq. 4.1 mixture bound on -log p(x) in nats, per example: (B,).

    The classifier's probabilities `w_c` weight the per-class posteriors (eq. 4.1):
    for `p(x) = sum_c p(c) p(x | c)` with a uniform class prior, under the mixture
    posterior `q(c, z | x) = w_c q(z | x, c)`,

        nll_bound = sum_c w_c (reconstruction_c + KL_c) + KL_symmetry + sum_c w_c log w_c + log K,

    with one sample of each class's latents (shared noise) and, with symmetry
    statistics, one sample of them from their posterior (the classifier and the
    latents then read the image in that frame): a one-sample estimate of the
    variational bound, with or without symmetry statistics, from inference's fixed
    seed. (Before 0.5 the statistics were taken at their mean, a plug-in value.) A
    discrete symmetry (the mirror) is summed over exactly: each state's mixture term
    weighted by its posterior, whose KL to the uniform prior is part of KL_symmetry.
    It bounds the negative log-*density* of [0, 1] intensities under a Bernoulli
    likelihood, not the discrete likelihood of binarised MNIST that VAE papers report.

    `outputs`: `ACE.call`'s on x (their frame at the statistics' mean is replaced here).
    """
    if model.symmetry is not None:
        outputs = in_a_sampled_frame(model, x)
    rows, copies, expected = over_states(outputs)
    x = repeat_rows(x, copies)
    loc, log_scale = rows["latent_loc"], rows["latent_log_scale"]
    z = model.auto_encoder.posterior_sample(loc, log_scale, rows["noise"][:, None, :])  # (B, K, L)
    canonical = model.auto_encoder.decode_all(z)  # (B, K, H, W, C)
    frame = model.frame(rows)
    reconstruction = ops.stack(
        [bernoulli_nll(x, model.to_observation(canonical[:, c], frame)) for c in range(model.num_classes)], axis=1
    )  # (B, K)
    kl = model.auto_encoder.latent_sampler.kl_divergence(loc, log_scale)  # (B, K)
    weights = ops.softmax(rows["class_logits"], axis=-1)
    log_weights = ops.log_softmax(rows["class_logits"], axis=-1)
    bound = expected(ops.sum(weights * (reconstruction + kl + log_weights), axis=-1)) + math.log(model.num_classes)
    if model.symmetry is not None:
        bound = bound + outputs["symmetry_kl"]
    return bound


def in_a_sampled_frame(model, x):
    """`ACE.call`'s outputs on x with the symmetry statistics drawn from their posterior (a fixed seed)."""
    statistics = model.symmetry_net(x)
    loc, log_scale = statistics["loc"], statistics["log_scale"]
    u = model.symmetry_net.sampler.sample_posterior(loc, log_scale, seed=model.inference_seed + 1)
    states = ops.argmax(statistics["state_logits"], axis=-1) if "state_logits" in statistics else None
    return model.read_in_frame(x, statistics, model.symmetry_net.frame(u, states))


def nll_estimate(model, x, samples=100, batch_size=ESTIMATE_ROWS, seed=None, verbose=0):
    """Importance-weighted estimate of -log p(x) in nats, per image: (N,) float64.

    The same estimator whatever the model's latent variables (Burda, Grosse and
    Salakhutdinov 2016): with `k = samples` draws from the posteriors,

        nll_estimate = log k - log sum_s w_s,
        w_s = p(u_s) / q(u_s | x) * sum_c (1/K) p(z_sc | c) p(x | c, z_sc, u_s) / q(z_sc | x, u_s, c),

    where the symmetry statistics `u_s ~ q(u | x)` are drawn from the symmetry net's
    posterior (without symmetry statistics that factor is 1), each class's latents
    `z_sc ~ q(z | x, u_s, c)` from its latent block, seeing the image canonicalised
    with `u_s`, and the class, with a uniform prior, is summed exactly over the K
    decoders rather than sampled (the classifier is not needed). A discrete symmetry's
    state m (the mirror) is summed exactly in the same way, with its uniform prior:
    the inner sum runs over every (m, c) with weight 1 / (S K), and z is drawn from
    the posterior of the image canonicalised with (u_s, m). `p(x | ...)` is
    the Bernoulli likelihood of the [0, 1] intensities the model is trained with,
    so these are negative log-*densities* of grey-level images, not the discrete
    likelihoods of binarised MNIST that VAE papers report.

    Every k gives an upper bound on -log p(x) in expectation, tighter as k grows
    and exact as k -> infinity; k = 1 is the one-sample variational bound with the
    class summed out. Unlike `nll_bound` (the eq. 4.1 mixture: one sample, weighted by
    the classifier), it compares models with and without symmetry statistics by a
    bound that tightens with k.

    Args:
        x: images (N, H, W, C) in [0, 1].
        samples: k, the importance samples per image.
        batch_size: rows per forward pass (images times their samples), which
            bounds the memory whatever k.
        seed: seed of the draws; None draws a fresh one.
        verbose: 1 shows a progress bar over the images (every 5 s at most).

    Returns:
        NumPy (N,): nats per image.
    """
    samples = validation.check_count(samples, "samples")
    batch_size = validation.check_count(batch_size, "batch_size")
    x = np.asarray(x, np.float32)
    model.check_data(x, None)
    generator = keras.random.SeedGenerator(seed)
    per_pass = min(samples, batch_size)  # samples of one image drawn together
    images_per_pass = max(1, batch_size // per_pass)
    progress = keras.utils.Progbar(len(x), verbose=verbose, interval=5.0, unit_name="image")
    estimates = []
    for start in range(0, len(x), images_per_pass):
        batch = x[start : start + images_per_pass]
        log_weights = np.concatenate(
            [log_importance_weights(model, batch, min(per_pass, samples - drawn), generator)
             for drawn in range(0, samples, per_pass)],
            axis=1,
        )  # (b, k): small whatever k, as the images per pass shrink when k grows
        top = log_weights.max(axis=1)
        estimates.append(math.log(samples) - top - np.log(np.exp(log_weights - top[:, None]).sum(axis=1)))
        progress.add(len(batch))
    return np.concatenate(estimates)


def log_importance_weights(model, x, samples, generator):
    """log w of `nll_estimate` for `samples` draws per image: x (b, H, W, C) -> (b, samples) float64."""
    rows = ops.convert_to_tensor(np.repeat(x, samples, axis=0))  # (b * samples, H, W, C), image-major
    frame, log_weight, copies = {}, 0.0, 1
    if model.symmetry is not None:
        statistics = model.symmetry_net(x)
        loc, log_scale = (ops.repeat(statistics[k], samples, axis=0) for k in ("loc", "log_scale"))  # (R, n)
        sampler = model.symmetry_net.sampler
        u = sampler.sample_posterior(loc, log_scale, seed=generator)
        log_weight = sampler.log_prior(u) - sampler.log_posterior(u, loc, log_scale)  # (R,)
        frame = model.symmetry_net.frame(u)
        discrete = model.symmetry_net.discrete
        if discrete is not None:  # every state of each draw: S * R rows, state-major
            rows, frame = every_state(rows, frame, discrete)
            copies = discrete.num_states
        latent_loc, latent_log_scale = model.auto_encoder.encode(model.canonicalize(rows, frame))
    else:
        # Without frames the posteriors do not depend on the draw: encoded once per image.
        latent_loc, latent_log_scale = (ops.repeat(t, samples, axis=0) for t in model.auto_encoder.encode(x))
    latents = model.auto_encoder.latent_sampler
    noise = latents.noise(ops.shape(latent_loc), seed=generator)  # (R, K, L): every class its own draw
    z = model.auto_encoder.posterior_sample(latent_loc, latent_log_scale, noise)
    decoded = model.auto_encoder.decode_all(z)  # (R, K, H, W, C)
    reconstruction = ops.stack(
        [bernoulli_nll(rows, model.to_observation(decoded[:, c], frame)) for c in range(model.num_classes)],
        axis=1,
    )  # (R, K)
    per_class = latents.log_prior(z) - latents.log_posterior(z, latent_loc, latent_log_scale) - reconstruction
    # Every (state, class) pair of a draw side by side: (R, S * K).
    terms = ops.reshape(ops.moveaxis(per_state(per_class, copies), 0, 1), (-1, copies * model.num_classes))
    log_weight = log_weight + ops.logsumexp(terms, axis=1) - math.log(copies * model.num_classes)  # (R,)
    return ops.convert_to_numpy(log_weight).astype(np.float64).reshape(len(x), samples)
