"""The kinds of symmetry statistics (section 3, box 0.4 of Figure 5): one class each, registered by name.

A symmetry is the statistics it reads from the symmetry statistics net (`num_statistics`
of the net's u), its map from u to a transform (`transform`), and box 0.4 both ways:
`canonicalize` takes an observation to the canonical frame the classifier and the
encoder see, `to_observation` takes the decoder's canonical image back. An ACE's
`symmetry` names the symmetries it factors out, in the order box 0.4 applies them:
`"spatial"`, `"spatial_color"` (spatial, then colour), `"spatial_mirror"`,
`"spatial_mirror_color"` or a tuple of registered names. A frame is a dict of each
symmetry's transform under its `key` (`"theta"`, `"mirror"`, `"color"`).

Most symmetries are continuous: their transform is a function of the statistics u.
A *discrete* one (`num_states` > 1, such as `MirrorSymmetry`) is a latent of its own
with a uniform prior over its states, summed over exactly like the class: the net
gives a posterior over the states, the loss and both likelihoods score every state.

A new kind is one subclass and `@register_symmetry`:

>>> @register_symmetry
... class Brightness(Symmetry):
...     kind, key, num_statistics, default_gain = "brightness", "brightness", 1, 0.1
...     transform_shape = (1,)
...     def transform(self, u):
...         return ops.exp(self.gain * u)                    # (B, 1)
...     def canonicalize(self, x, gain):
...         return x * gain[:, :, None, None]
...     def to_observation(self, x, gain):
...         return ops.clip(x / gain[:, :, None, None], 0.0, 1.0)
>>> ACE((16, 16, 1), symmetry=("spatial", "brightness"))    # doctest: +SKIP
"""

import keras
from keras import ops

from keras_ace.api_export import keras_ace_export
from keras_ace.layers.color_mixing import ColorMixing
from keras_ace.layers.color_mixing import RowStochastic
from keras_ace.layers.spatial_transformer import IDENTITY_THETA
from keras_ace.layers.spatial_transformer import PADDINGS
from keras_ace.layers.spatial_transformer import SpatialTransformer
from keras_ace.layers.spatial_transformer import invert_theta
from keras_ace.models.blocks import check_choice

# Registered kinds, by name.
SYMMETRY_KINDS = {}
# The names an ACE's `symmetry` takes for the paper's combinations.
COMBINATIONS = {
    "spatial": ("spatial",),
    "spatial_color": ("spatial", "color"),
    "spatial_mirror": ("spatial", "mirror"),
    "spatial_mirror_color": ("spatial", "mirror", "color"),
}
# Which direction of box 0.4 applies the inverse of the colour matrix (docs/deviations.md).
COLOR_INVERSES = ("canonicalize", "to_observation")


def register_symmetry(cls):
    """Registers a `Symmetry` subclass under its `kind` (and for saving), so that `symmetry` can name it."""
    SYMMETRY_KINDS[cls.kind] = keras.saving.register_keras_serializable(package="keras_ace")(cls)
    return cls


def symmetry_kinds(symmetry):
    """The kinds an ACE's `symmetry` names, in box 0.4's order: () for None."""
    if symmetry is None:
        return ()
    kinds = COMBINATIONS.get(symmetry, symmetry) if isinstance(symmetry, str) else tuple(symmetry)
    unknown = [k for k in kinds if k not in SYMMETRY_KINDS]
    if isinstance(kinds, str) or unknown or not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(
            f"Unknown symmetry. Expected None, one of {tuple(COMBINATIONS)} or a tuple of distinct names from "
            f"{tuple(SYMMETRY_KINDS)}. Received: symmetry={symmetry!r}"
        )
    if sum(SYMMETRY_KINDS[k].num_states > 1 for k in kinds) > 1:
        raise ValueError(f"At most one discrete symmetry (such as 'mirror') per model. Received: symmetry={symmetry!r}")
    return tuple(kinds)


def make_symmetries(symmetry, gains=None, **options):
    """The `Symmetry` layers `symmetry` names.

    `gains`: per kind (a dict), or `(spatial, colour)` as the paper's presets give them;
    a kind not named takes its default. `options`: each kind takes those its constructor
    names (`padding`, `color_inverse`).
    """
    kinds = symmetry_kinds(symmetry)
    if gains is not None and not isinstance(gains, dict):
        gains = dict(zip(("spatial", "color"), gains))
    made = []
    for kind in kinds:
        cls = SYMMETRY_KINDS[kind]
        accepted = {k: v for k, v in options.items() if k in cls.options}
        made.append(cls(gain=(gains or {}).get(kind, cls.default_gain), name=f"{kind}_symmetry", **accepted))
    return made


class Symmetry(keras.layers.Layer):
    """One kind of symmetry statistics: u (B, num_statistics) -> a transform -> box 0.4 both ways.

    Subclasses set `kind` (the registered name), `key` (the frame's key for the
    transform), `num_statistics`, `transform_shape` (one example's), `default_gain` and
    the constructor `options` they take. A discrete symmetry sets `num_states` and reads
    no statistics: its transform is the state (B, 1), from `state_transform`.

    Args:
        gain: the factor from the statistics u to the transform (u has a unit prior).
    """

    kind = key = None
    num_statistics = 0
    num_states = 1
    transform_shape = ()
    default_gain = 1.0
    options = ()

    def __init__(self, gain=None, **kwargs):
        super().__init__(**kwargs)
        self.gain = float(self.default_gain if gain is None else gain)
        if self.gain <= 0:
            raise ValueError(f"gain must be positive. Received: gain={gain}")
        self.built = True  # no weights of its own; its methods, not `call`, are what the model uses

    def transform(self, u):
        raise NotImplementedError

    def canonicalize(self, x, transform):
        raise NotImplementedError

    def to_observation(self, x, transform):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


@keras_ace_export
@register_symmetry
class SpatialSymmetry(Symmetry):
    """Six affine statistics: `theta = identity + gain * u` (B, 6), applied by a spatial transformer.

    Args:
        gain: theta units per unit of u (default 0.2).
        padding: what the transformer reads outside the image, `"border"` or `"zeros"`.
    """

    kind, key, num_statistics, default_gain, options = "spatial", "theta", 6, 0.2, ("padding",)
    transform_shape = (6,)

    def __init__(self, gain=None, padding="border", **kwargs):
        super().__init__(gain, **kwargs)
        self.padding = check_choice(padding, PADDINGS, "padding")
        self.transformer = SpatialTransformer(padding=padding, name="transformer")

    def transform(self, u):
        return ops.convert_to_tensor(IDENTITY_THETA) + self.gain * u  # (B, 6)

    def canonicalize(self, x, theta):
        return self.transformer([x, theta])

    def to_observation(self, x, theta):
        return self.transformer([x, invert_theta(theta)])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}


@keras_ace_export
@register_symmetry
class ColorSymmetry(Symmetry):
    """Nine colour statistics: a row-stochastic 3x3 matrix `RowStochastic(gain * u)` (B, 3, 3) mixing RGB vectors.

    The matrix itself, a convex mix of channels, keeps images in [0, 1]; its inverse may
    not. `color_inverse` says which direction of box 0.4 gets the inverse:
    `"canonicalize"` (default: the decoded image is mapped to the observation by the
    matrix) or `"to_observation"` (files saved before 0.3).

    Args:
        gain: colour-logit units per unit of u (default 1.0).
        color_inverse: `"canonicalize"` or `"to_observation"`.
    """

    kind, key, num_statistics, default_gain, options = "color", "color", 9, 1.0, ("color_inverse",)
    transform_shape = (3, 3)

    def __init__(self, gain=None, color_inverse="canonicalize", **kwargs):
        super().__init__(gain, **kwargs)
        self.color_inverse = check_choice(color_inverse, COLOR_INVERSES, "color_inverse")
        self.matrix = RowStochastic(name="color_matrix")
        inverse_first = color_inverse == "canonicalize"
        self.to_canonical = ColorMixing(inverse=inverse_first, name="to_canonical")
        self.to_observed = ColorMixing(inverse=not inverse_first, name="to_observed")

    def transform(self, u):
        return self.matrix(self.gain * u)  # (B, 3, 3)

    def canonicalize(self, x, matrix):
        return self.to_canonical([x, matrix])

    def to_observation(self, x, matrix):
        return self.to_observed([x, matrix])

    def get_config(self):
        return {**super().get_config(), "color_inverse": self.color_inverse}


@keras_ace_export
@register_symmetry
class MirrorSymmetry(Symmetry):
    """A left-right reflection: a discrete latent with two states, as is (0) and mirrored (1), each of prior 1/2.

    Beyond the paper (its gauge group Aff(2, R) holds reflections, but theta = I + 0.2 u
    under a unit prior cannot reach one). Box 0.4 reflects the image about the vertical
    centre line of the frame it is given; placed after `"spatial"`, that is the
    canonical frame's centre. The state is never sampled: the loss, `nll_bound` and
    `nll_estimate` sum over both states exactly, weighted by the symmetry net's
    posterior (or the prior), and inference takes the more probable one.
    """

    kind, key, num_states = "mirror", "mirror", 2
    transform_shape = (1,)

    def canonicalize(self, x, state):
        return mirrored(x, state)

    def to_observation(self, x, state):
        return mirrored(x, state)  # a reflection is its own inverse


def mirrored(x, state):
    """Images x (B, H, W, C) reflected left-right where `state` (B, 1) is 1, as they are where it is 0."""
    x = ops.convert_to_tensor(x)
    weight = ops.reshape(ops.cast(state, x.dtype), (-1, 1, 1, 1))
    return x + weight * (ops.flip(x, axis=2) - x)


def discrete_symmetry(symmetries):
    """The discrete symmetry among `symmetries` (at most one), or None."""
    return next((s for s in symmetries if s.num_states > 1), None)


def every_state(x, frame, discrete):
    """Images x (B, H, W, C) and their frame repeated once per state of `discrete`, state-major (S * B rows), each row's state filled in."""
    copies = discrete.num_states
    rows = {k: repeat_rows(v, copies) for k, v in frame.items()}
    column = ops.zeros_like(x[:, 0, 0, :1])  # (B, 1)
    rows[discrete.key] = ops.concatenate([column + s for s in range(copies)], axis=0)
    return repeat_rows(x, copies), rows


def repeat_rows(t, copies):
    """t (B, ...) repeated `copies` times along the batch, state-major: (copies * B, ...)."""
    return t if copies == 1 else ops.concatenate([ops.convert_to_tensor(t)] * copies, axis=0)


def per_state(rows, copies):
    """State-major rows (S * B, ...) -> (S, B, ...)."""
    return ops.reshape(rows, (copies, -1, *rows.shape[1:]))


def at_states(rows, chosen):
    """State-major rows (S * B, ...) -> each example's row at its chosen state: `chosen` (B, S) one-hot."""
    stacked = ops.moveaxis(per_state(rows, ops.shape(chosen)[1]), 0, 1)  # (B, S, ...)
    weights = ops.reshape(ops.cast(chosen, rows.dtype), (*ops.shape(chosen), *[1] * (len(rows.shape) - 1)))
    return ops.sum(stacked * weights, axis=1)


def split_statistics(symmetries, u):
    """u (B, n) cut into each symmetry's statistics, in order."""
    parts, start = [], 0
    for s in symmetries:
        parts.append(u[:, start : start + s.num_statistics])
        start += s.num_statistics
    return parts


def frame_of(symmetries, u, states=None):
    """The frame of statistics u: `{key: transform}` of each symmetry.

    `states` (B,): a discrete symmetry's state per example (default 0, as is).
    """
    frame = {}
    for s, part in zip(symmetries, split_statistics(symmetries, u)):
        if s.num_states > 1:
            states = ops.zeros((ops.shape(u)[0],), "int32") if states is None else states
            frame[s.key] = ops.reshape(ops.cast(states, u.dtype), (-1, 1))
        else:
            frame[s.key] = s.transform(part)
    return frame
