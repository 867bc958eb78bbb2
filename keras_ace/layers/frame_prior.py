"""Where new observations are put: a Gaussian fitted to the symmetry statistics a net infers."""

import keras
import numpy as np
from keras import ops

from keras_ace.api_export import keras_ace_export


@keras_ace_export
class FramePrior(keras.layers.Layer):
    """A full-covariance Gaussian over the symmetry statistics `u`, fitted to data.

    The symmetry statistics of an ACE have a unit prior in training (their KL term),
    but the frames the symmetry net infers on real data are far from it: RTS MNIST
    turns digits by up to 45 degrees and never shears them. Drawing new observations'
    frames from this layer, fitted by `adapt` to the statistics the net infers on the
    training set, puts samples into frames like the data's. The mean and the Cholesky
    factor of the covariance are non-trainable weights, saved with the model.

    Args:
        num_statistics: the number of symmetry statistics (6 spatial, 15 with colour).

    Call arguments:
        noise: (B, num_statistics) standard normal draws.

    Returns:
        (B, num_statistics): `mean + noise @ scale_tril.T`.

    Example:
    >>> prior = FramePrior(2)
    >>> prior.adapt(np.random.default_rng(0).normal([1.0, -1.0], [2.0, 0.5], (1000, 2)))
    >>> bool(prior.is_fitted)
    True
    """

    def __init__(self, num_statistics, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(num_statistics, int) or num_statistics < 1:
            raise ValueError(f"num_statistics must be a positive integer. Received: num_statistics={num_statistics!r}")
        self.num_statistics = num_statistics
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        n = self.num_statistics
        self.mean = self.add_weight(shape=(n,), initializer="zeros", trainable=False, name="mean")
        self.scale_tril = self.add_weight(shape=(n, n), initializer="identity", trainable=False, name="scale_tril")
        self.fitted = self.add_weight(shape=(), initializer="zeros", trainable=False, name="fitted")
        self.built = True

    @property
    def is_fitted(self):
        return float(ops.convert_to_numpy(self.fitted)) > 0

    def adapt(self, statistics):
        """Fits the mean and covariance to (N, num_statistics) statistics, N >= 2."""
        u = np.asarray(statistics, np.float64)
        if u.ndim != 2 or u.shape[1] != self.num_statistics or len(u) < 2:
            raise ValueError(
                f"Expected statistics of shape (N >= 2, {self.num_statistics}). Received: shape={u.shape}"
            )
        if not np.isfinite(u).all():
            raise ValueError("The statistics to fit contain NaN or Inf.")
        # A small ridge keeps the factorisation defined when a statistic never varies.
        covariance = np.cov(u, rowvar=False).reshape(self.num_statistics, self.num_statistics)
        covariance += 1e-6 * np.eye(self.num_statistics)
        self.mean.assign(u.mean(axis=0).astype(np.float32))
        self.scale_tril.assign(np.linalg.cholesky(covariance).astype(np.float32))
        self.fitted.assign(1.0)

    def call(self, noise):
        return self.mean + ops.matmul(noise, ops.transpose(self.scale_tril))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_statistics": self.num_statistics}
