"""Boxes 0.2-0.3 of Figure 5: the symmetry statistics net."""

import math

import keras
from keras import ops

from keras_ace.api_export import keras_ace_export
from keras_ace.initializers import paper_conv2d
from keras_ace.layers.frame_prior import FramePrior
from keras_ace.layers.gibbs_sampler import GibbsSampler
from keras_ace.layers.pooling import MaxPooling2x2
from keras_ace.models.blocks import apply_chain
from keras_ace.models.blocks import build_chain
from keras_ace.models.blocks import check_choice
from keras_ace.models.symmetries import discrete_symmetry
from keras_ace.models.symmetries import frame_of
from keras_ace.models.symmetries import make_symmetries
from keras_ace.models.symmetries import mirrored
from keras_ace.models.symmetries import symmetry_kinds

# Where new frames are drawn from: fitted to the data's, or the unit prior of training.
FRAMES = ("fitted", "prior")


@keras_ace_export
class SymmetryStatisticsNet(keras.Model):
    """Images -> their symmetry statistics, and from them the affine transform (and colour matrix).

    Appendix A, Figure 2: "A symmetry statistics *localization* net, as in Jadeberg et
    al. (2015), produces six affine spatial symmetry statistics (box 0.2 in Figure 5).
    This net has 2 convolutional hidden layers, with 20 5x5 filters each, with 2x2
    max-poolings between layers, and a fully-connected layer of size 50." (Figure 3:
    32-64 3x3 filters and 128 units.)

    The statistics `u` are latent variables of their own (eq. 3.2, box 0.3): two dense
    heads give their location and log-scale, a `GibbsSampler` draws them in training
    (their location in inference), and `kl` is their KL term to a unit prior. Each
    symmetry (`keras_ace.models.symmetries`) reads its share of u and gives its
    transform: `theta = identity + 0.2 * u[:, :6]` for `"spatial"`, and for
    `"spatial_color"` also the colour matrix `RowStochastic(1.0 * u[:, 6:])`.
    The heads' kernels start at zero, so every image starts at the identity frame.
    `frame_prior` (fitted by `ACE.fit`) holds where the data's frames lie, for drawing
    new ones.

    With a discrete symmetry (`"mirror"`) the net also gives the posterior over its
    states, `state_logits` (B, 2): a score head rates the image as it is and mirrored,
    `[score(x), score(mirror(x))]`, so a mirrored image gets exactly the reversed
    posterior whatever the weights. `kl` then adds its KL to the uniform prior, and the
    frame holds the more probable state.

    Args:
        symmetry: `"spatial"` (6 statistics), `"spatial_color"` (6 + 9) or a tuple of
            registered symmetry names.
        filters: conv filters, each conv followed by 2x2 max-pooling.
        kernel_size: the convs' kernel size.
        units: the dense hidden layer.
        sampling: `"gaussian"` or `"laplacian"`, the latents' family.
        gains: the symmetries' gains from u to their transforms (u's prior stays
            unit): `(spatial, colour)` in theta and colour-logit units per unit of u,
            or a dict by symmetry name. (`prior_scale` before 0.5.)
        initial_log_scale: the posterior's initial log-scale.
        seed: seed of the sampler.

    Call arguments:
        images: (B, H, W, C).
        training: sample the statistics (True) or take their location.

    Returns:
        dict: `loc`, `log_scale`, `u` (B, n), `kl` (B,), and each symmetry's transform
        under its key: `theta` (B, 6), for colour `color` (B, 3, 3), for the mirror
        `mirror` (B, 1) and `state_logits` (B, 2).

    Example:
    >>> net = SymmetryStatisticsNet(filters=(4, 4), units=8)
    >>> net(np.zeros((2, 16, 16, 1), "float32"))["theta"].shape
    (2, 6)
    """

    def __init__(
        self,
        symmetry="spatial",
        filters=(20, 20),
        kernel_size=5,
        units=50,
        sampling="gaussian",
        gains=(0.2, 1.0),
        initial_log_scale=-3.0,
        seed=None,
        symmetries=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        symmetry_kinds(symmetry)  # refuses an unknown name
        self.symmetry = symmetry if isinstance(symmetry, str) else tuple(symmetry)
        self.filters = tuple(int(f) for f in filters)
        self.kernel_size = int(kernel_size)
        self.units = int(units)
        self.sampling = sampling
        if isinstance(gains, dict):
            self.gains = {k: float(v) for k, v in gains.items()}
        else:
            self.gains = tuple(float(s) for s in gains)
            if len(self.gains) != 2 or min(self.gains) <= 0:
                raise ValueError(f"gains must be (spatial, colour), both positive. Received: gains={gains}")
        self.initial_log_scale = float(initial_log_scale)
        self.seed = seed
        # Box 0.4's layers, shared with the ACE that built this net (it passes them), else made here.
        self.symmetries = symmetries or make_symmetries(symmetry, self.gains)
        self.num_statistics = sum(s.num_statistics for s in self.symmetries)
        self.discrete = discrete_symmetry(self.symmetries)

        self.hidden_layers = []
        for i, f in enumerate(self.filters):
            self.hidden_layers.append(paper_conv2d(f, self.kernel_size, name=f"ssn_conv{i}"))
            self.hidden_layers.append(MaxPooling2x2(name=f"ssn_pool{i}"))
        self.hidden_layers.append(keras.layers.Flatten(name="ssn_flatten"))
        self.hidden_layers.append(keras.layers.Dense(self.units, activation="relu", name="ssn_dense"))
        # Zero kernels: every image starts at u = 0, the identity transform.
        self.location = keras.layers.Dense(self.num_statistics, kernel_initializer="zeros", name="ssn_loc")
        self.log_scale = keras.layers.Dense(
            self.num_statistics,
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(self.initial_log_scale),
            name="ssn_log_scale",
        )
        # Zero kernel: both states start equally probable.
        self.state_score = keras.layers.Dense(1, kernel_initializer="zeros", name="ssn_state_score") if self.discrete else None
        # The symmetry statistics share the latents' family (eq. 3.2) with a unit prior.
        self.sampler = GibbsSampler(sampling, seed=seed, name="symmetry_sampler")
        self.frame_prior = FramePrior(self.num_statistics, name="frame_prior")

    def build(self, input_shape):
        if self.built:
            return
        shape = build_chain(self.hidden_layers, input_shape)
        self.location.build(shape)
        self.log_scale.build(shape)
        if self.discrete:
            self.state_score.build(shape)
        self.built = True

    def call(self, images, training=False):
        hidden = apply_chain(self.hidden_layers, images)
        loc, log_scale = self.location(hidden), self.log_scale(hidden)
        u = self.sampler([loc, log_scale], training=training)
        outputs = {"loc": loc, "log_scale": log_scale, "u": u, "kl": self.sampler.kl_divergence(loc, log_scale)}
        states = None
        if self.discrete:
            # The mirror's posterior; equivariant by construction (the class docstring).
            flipped = apply_chain(self.hidden_layers, mirrored(images, ops.ones((ops.shape(images)[0], 1))))
            logits = ops.concatenate([self.state_score(hidden), self.state_score(flipped)], axis=-1)  # (B, 2)
            log_q = ops.log_softmax(logits, axis=-1)
            outputs["state_logits"] = logits
            outputs["kl"] = outputs["kl"] + ops.sum(ops.exp(log_q) * log_q, axis=-1) + math.log(self.discrete.num_states)
            states = ops.argmax(logits, axis=-1)
        return {**outputs, **self.frame(u, states)}

    def frame(self, u, states=None):
        """The frame of statistics u (B, n): each symmetry's transform under its key (`theta`, `color`, `mirror`).

        `states` (B,): the discrete symmetry's state of each example (default 0).
        """
        return frame_of(self.symmetries, u, states)

    def draw_frame(self, n, seed, frames):
        """A new frame for each of `n` examples: statistics from `draw`, a discrete state from its uniform prior."""
        u = self.draw(n, seed, frames)
        states = None
        if self.discrete:
            states = keras.random.randint((n,), 0, self.discrete.num_states, seed=seed)
        return self.frame(u, states)

    def draw(self, n, seed, frames):
        """Statistics u (n, n_statistics) of new frames, drawn with `seed` (a `SeedGenerator`).

        `frames`: `"fitted"` (the full-covariance Gaussian of `frame_prior`) or
        `"prior"` (the unit prior of training).
        """
        shape = (n, self.num_statistics)
        if check_choice(frames, FRAMES, "frames") == "fitted":
            return self.frame_prior(keras.random.normal(shape, seed=seed))
        return self.sampler.sample_prior(shape, seed=seed)

    def compute_output_shape(self, input_shape):
        batch = (input_shape[0],)
        n = (*batch, self.num_statistics)
        shapes = {"loc": n, "log_scale": n, "u": n, "kl": batch}
        if self.discrete:
            shapes["state_logits"] = (*batch, self.discrete.num_states)
        return {**shapes, **{s.key: (*batch, *s.transform_shape) for s in self.symmetries}}

    def get_config(self):
        return {
            **super().get_config(),
            "symmetry": self.symmetry,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "units": self.units,
            "sampling": self.sampling,
            "gains": self.gains,
            "initial_log_scale": self.initial_log_scale,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "prior_scale" in config:  # its name before 0.5
            config["gains"] = config.pop("prior_scale")
        return cls(**config)
