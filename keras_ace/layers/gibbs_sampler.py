"""The Gibbs sampler of the generative layer: Gaussian or Laplacian latent densities."""

import math

import keras
from keras import ops

from keras_ace.api_export import keras_ace_export

# The latent densities' families (eq. 3.1).
FAMILIES = ("gaussian", "laplacian")


@keras_ace_export
class GibbsSampler(keras.layers.Layer):
    """Draws a reparameterised latent sample and knows its KL divergence to the prior.

    The posterior density of each latent dimension is `gaussian` (mean `loc`, standard
    deviation `scale`) or `laplacian` (eq. 3.1 of the paper: location `loc`, scale
    `scale`, density `exp(-|z - loc| / scale) / (2 scale)`), with `scale = exp(log_scale)`.
    The log-scale is clamped to `log_scale_bounds` (default [-7, 5], scales from 1e-3
    to 148), which keeps samples and the KL finite whatever the encoder outputs.

    The prior is the same family with location 0 and scale `prior_scale` (default 1,
    the "unit-scale" prior; a Laplacian prior of unit *variance* has scale `1/sqrt(2)`).

    Args:
        distribution: `"gaussian"` or `"laplacian"`.
        prior_scale: the prior's scale.
        log_scale_bounds: `(low, high)` clamp of the log-scale.
        seed: integer seed for the `keras.random.SeedGenerator`.

    Call arguments:
        inputs: `[loc, log_scale]`, two tensors of the same shape (B, ..., L).
        training: in training a sample is drawn; in inference the mean `loc` is
            returned, unless `sample=True`.
        sample: overrides `training` when not None.

    Returns:
        A tensor of `loc`'s shape.

    Example:
    >>> sampler = GibbsSampler("laplacian", seed=0)
    >>> z = sampler([ops.zeros((4, 2)), ops.zeros((4, 2))], training=True)
    >>> kl = sampler.kl_divergence(ops.zeros((4, 2)), ops.zeros((4, 2)))  # zeros: at the prior
    """

    def __init__(self, distribution="gaussian", prior_scale=1.0, log_scale_bounds=(-7.0, 5.0), seed=None, **kwargs):
        super().__init__(**kwargs)
        if distribution not in FAMILIES:
            raise ValueError(f"Expected distribution in {FAMILIES}. Received: distribution={distribution!r}")
        if not prior_scale > 0:
            raise ValueError(f"prior_scale must be positive. Received: prior_scale={prior_scale}")
        low, high = log_scale_bounds
        if not low < high:
            raise ValueError(f"log_scale_bounds must be (low, high) with low < high. Received: {log_scale_bounds}")
        self.distribution = distribution
        self.prior_scale = float(prior_scale)
        self.log_scale_bounds = (float(low), float(high))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        loc_shape, log_scale_shape = input_shape
        if tuple(loc_shape) != tuple(log_scale_shape):
            raise ValueError(
                f"loc and log_scale must have the same shape. Received: {tuple(loc_shape)} and {tuple(log_scale_shape)}"
            )

    def scale(self, log_scale):
        return ops.exp(ops.clip(log_scale, *self.log_scale_bounds))

    def noise(self, shape, seed=None):
        """Unit-scale noise of the family: N(0, 1) or Laplace(0, 1).

        `seed` (a `SeedGenerator`) replaces the layer's own stream, for reproducible draws.
        """
        seed = self.seed_generator if seed is None else seed
        if self.distribution == "gaussian":
            return keras.random.normal(shape, seed=seed)
        # Inverse CDF of the Laplacian; u kept inside (-1/2, 1/2) so the log stays finite.
        u = keras.random.uniform(shape, minval=-0.5 + 1e-7, maxval=0.5 - 1e-7, seed=seed)
        return -ops.sign(u) * ops.log1p(-2.0 * ops.abs(u))

    def call(self, inputs, training=None, sample=None):
        loc, log_scale = inputs
        if not (training if sample is None else sample):
            return loc
        return self.sample_posterior(loc, log_scale)

    def sample_posterior(self, loc, log_scale, seed=None):
        """A reparameterised draw `loc + scale * noise` from the posterior; `seed` as in `noise`."""
        return loc + self.scale(log_scale) * self.noise(ops.shape(loc), seed=seed)

    def sample_prior(self, shape, seed=None):
        """A draw from the prior (the creative regime); `seed` as in `noise`."""
        return self.prior_scale * self.noise(shape, seed=seed)

    def log_posterior(self, value, loc, log_scale):
        """log q(value) under the posterior `(loc, exp(log_scale))`, summed over the last axis: shape (B, ...)."""
        log_scale = ops.clip(log_scale, *self.log_scale_bounds)
        return self._log_density((value - loc) / ops.exp(log_scale), log_scale)

    def log_prior(self, value):
        """log p(value) under the prior (location 0, scale `prior_scale`), summed over the last axis."""
        return self._log_density(value / self.prior_scale, math.log(self.prior_scale))

    def _log_density(self, standardized, log_scale):
        """The family's log-density of `loc + scale * standardized`, summed over the last axis."""
        if self.distribution == "gaussian":
            log_unit = -0.5 * ops.square(standardized) - 0.5 * math.log(2.0 * math.pi)
        else:
            log_unit = -ops.abs(standardized) - math.log(2.0)
        return ops.sum(log_unit - log_scale, axis=-1)

    def kl_divergence(self, loc, log_scale):
        """Closed-form KL(posterior || prior), summed over the last axis: shape (B, ...)."""
        log_scale = ops.clip(log_scale, *self.log_scale_bounds)
        scale = ops.exp(log_scale)
        s0 = self.prior_scale
        log_s0 = math.log(s0)
        if self.distribution == "gaussian":
            kl = log_s0 - log_scale + (ops.square(scale) + ops.square(loc)) / (2 * s0**2) - 0.5
        else:
            # KL(Laplace(m, b) || Laplace(0, b0)) = log(b0/b) + |m|/b0 + (b/b0) exp(-|m|/b) - 1
            m = ops.abs(loc)
            kl = log_s0 - log_scale + m / s0 + scale / s0 * ops.exp(-m / scale) - 1.0
        return ops.sum(kl, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "distribution": self.distribution,
            "prior_scale": self.prior_scale,
            "log_scale_bounds": self.log_scale_bounds,
            "seed": self.seed,
        }
