"""Affine spatial transforms (box 0.4 of Figure 5) and their inverse.

Convention, as in Spatial Transformer Networks (Jaderberg et al. 2015): `theta` holds a
2x3 matrix row by row, `(a, b, tx, c, d, ty)`, that maps each *output* pixel's normalised
coordinates `(x, y, 1)` to the *input* point it samples:

    x_in = a x + b y + tx,   y_in = c x + d y + ty.

Normalised coordinates run from -1 (first pixel centre) to +1 (last pixel centre), `x`
to the right and `y` downwards. The identity is `(1, 0, 0, 0, 1, 0)`.
"""

import keras
from keras import ops

from keras_ace.api_export import keras_ace_export
from keras_ace.backend_ops import gather_pixels

IDENTITY_THETA = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
# What a point outside the input reads: "zeros", or "border", the nearest edge pixel.
PADDINGS = ("zeros", "border")


def check_theta_shape(shape, layer):
    if len(shape) != 2 or shape[-1] != 6:
        raise ValueError(
            f"{layer} expects theta of shape (batch, 6). Received: theta.shape={tuple(shape)}"
        )


def check_image_shape(shape, layer):
    if len(shape) != 4:
        raise ValueError(
            f"{layer} expects images of shape (batch, height, width, channels). "
            f"Received: images.shape={tuple(shape)}"
        )


@keras_ace_export
class SpatialTransformer(keras.layers.Layer):
    """Resamples images bilinearly through per-example affine transforms.

    Points outside the input read zeros (`padding="zeros"`) or the nearest edge pixel
    (`padding="border"`: the sampling coordinates are clipped to the image, as in the
    Theano-era transformers of 2015, Lasagne's `TransformerLayer` among them). Every
    output pixel of an example whose theta holds NaN or Inf reads zeros in either mode
    (never an edge, never an out-of-range read). Differentiable with respect to both the
    images and `theta` (with "border", a point clipped to the edge passes no gradient to
    theta); with "zeros", a `theta` that maps the grid far outside the image gives a
    blank image. Written with `keras.ops` only (not `keras.ops.image.affine_transform`,
    which passes no gradient to the transform).

    Args:
        output_size: `(height, width)` of the output grid; default: the input's size.
        padding: `"zeros"` or `"border"`, what a point outside the input reads.

    Call arguments:
        inputs: `[images, theta]`, images (B, H, W, C) and theta (B, 6).

    Returns:
        (B, out_height, out_width, C).

    Example:
    >>> import numpy as np
    >>> images = np.random.rand(2, 8, 8, 1).astype("float32")
    >>> theta = np.tile([[1, 0, 0, 0, 1, 0]], (2, 1)).astype("float32")
    >>> np.allclose(SpatialTransformer()([images, theta]), images, atol=1e-5)
    True
    """

    def __init__(self, output_size=None, padding="zeros", **kwargs):
        super().__init__(**kwargs)
        if padding not in PADDINGS:
            raise ValueError(f"Unknown padding. Expected one of {PADDINGS}. Received: padding={padding!r}")
        self.padding = padding
        if output_size is not None:
            output_size = tuple(int(s) for s in output_size)
            if len(output_size) != 2 or min(output_size) < 1:
                raise ValueError(
                    f"output_size must be (height, width) of positive sizes. Received: output_size={output_size}"
                )
        self.output_size = output_size

    def build(self, input_shape):
        image_shape, theta_shape = input_shape
        check_image_shape(image_shape, "SpatialTransformer")
        check_theta_shape(theta_shape, "SpatialTransformer")

    def call(self, inputs):
        images, theta = inputs
        height, width = images.shape[1], images.shape[2]
        out_h, out_w = self.output_size or (height, width)
        return resample(images, theta, out_h, out_w, self.padding)

    def compute_output_shape(self, input_shape):
        image_shape = input_shape[0]
        out_h, out_w = self.output_size or image_shape[1:3]
        return (image_shape[0], out_h, out_w, image_shape[3])

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size, "padding": self.padding}


def sampling_grid(theta, out_h, out_w):
    """Input-pixel coordinates sampled by each output pixel: x, y of shape (B, P)."""
    xs = ops.linspace(-1.0, 1.0, out_w)
    ys = ops.linspace(-1.0, 1.0, out_h)
    grid_x, grid_y = ops.meshgrid(xs, ys)  # (out_h, out_w) each
    grid = ops.stack(
        [ops.reshape(grid_x, (-1,)), ops.reshape(grid_y, (-1,)), ops.ones((out_h * out_w,))], axis=0
    )  # (3, P)
    matrix = ops.reshape(ops.cast(theta, "float32"), (-1, 2, 3))
    source = ops.matmul(matrix, ops.cast(grid, "float32"))  # (B, 2, P)
    return source[:, 0], source[:, 1]


def _outside_if_nan(coordinates):
    return ops.where(ops.isnan(coordinates), ops.full_like(coordinates, -2.0), coordinates)


def resample(images, theta, out_h, out_w, padding="zeros"):
    """The bilinear sampler behind `SpatialTransformer`: (B, H, W, C) -> (B, out_h, out_w, C)."""
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    batch = ops.shape(images)[0]
    x, y = sampling_grid(theta, out_h, out_w)
    x = (x + 1.0) * (width - 1) / 2.0  # (B, P), pixel units
    y = (y + 1.0) * (height - 1) / 2.0
    if padding == "border":
        # Clipped to the image, each point reads its nearest edge pixel; an example whose
        # theta is not finite is sent outside instead, to read zeros below.
        finite = ops.all(ops.isfinite(ops.cast(theta, "float32")), axis=1, keepdims=True)  # (B, 1)
        x = ops.where(finite, ops.clip(x, 0.0, width - 1.0), -2.0)
        y = ops.where(finite, ops.clip(y, 0.0, height - 1.0), -2.0)
    # Clipping just outside the image keeps far-away points finite and makes them read
    # zeros (the clipped region has zero weight or zero value). A non-finite theta gives
    # NaN points: they are sent outside too, so they read zeros and never become an
    # out-of-range index.
    x = ops.clip(_outside_if_nan(x), -2.0, width + 1.0)
    y = ops.clip(_outside_if_nan(y), -2.0, height + 1.0)
    x0 = ops.floor(x)
    y0 = ops.floor(y)
    wx = x - x0  # gradients to theta flow through the interpolation weights
    wy = y - y0
    pixels = ops.reshape(images, (batch, height * width, channels))  # (B, H * W, C)

    def corner(yy, xx, weight):
        inside = (xx >= 0) & (xx <= width - 1) & (yy >= 0) & (yy <= height - 1)
        index = ops.cast(ops.clip(yy, 0, height - 1) * width + ops.clip(xx, 0, width - 1), "int32")
        values = gather_pixels(pixels, index)  # (B, P, C)
        weight = ops.where(inside, weight, ops.zeros_like(weight))
        return values * ops.expand_dims(ops.cast(weight, values.dtype), -1)

    out = (
        corner(y0, x0, (1 - wy) * (1 - wx))
        + corner(y0, x0 + 1, (1 - wy) * wx)
        + corner(y0 + 1, x0, wy * (1 - wx))
        + corner(y0 + 1, x0 + 1, wy * wx)
    )
    return ops.reshape(out, (-1, out_h, out_w, channels))


@keras_ace_export
class InverseAffine(keras.layers.Layer):
    """Maps theta to the theta of the inverse transform.

    Resampling with theta and then with `InverseAffine()(theta)` returns the input, up to
    what left the canvas. Guard: a determinant smaller than `min_determinant` in
    magnitude is replaced by `+/- min_determinant` (its sign kept, zero counted as
    positive), so near-singular transforms give large but finite inverses, never NaN or
    Inf.

    Args:
        min_determinant: the smallest determinant magnitude used in the inverse.

    Call arguments:
        theta: (B, 6).

    Returns:
        (B, 6).
    """

    def __init__(self, min_determinant=1e-3, **kwargs):
        super().__init__(**kwargs)
        if not min_determinant > 0:
            raise ValueError(f"min_determinant must be positive. Received: min_determinant={min_determinant}")
        self.min_determinant = float(min_determinant)

    def build(self, input_shape):
        check_theta_shape(input_shape, "InverseAffine")

    def call(self, theta):
        return invert_theta(theta, self.min_determinant)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "min_determinant": self.min_determinant}


def invert_theta(theta, min_determinant=1e-3):
    """The closed-form inverse of (B, 6) affine parameters (see `InverseAffine`)."""
    theta = ops.convert_to_tensor(theta)  # NumPy in, a backend tensor throughout (NumPy 2 and torch disagree on mixed ops)
    a, b, tx, c, d, ty = [theta[:, i] for i in range(6)]
    det = guard_determinant(a * d - b * c, min_determinant)
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    return ops.stack([ia, ib, -(ia * tx + ib * ty), ic, id_, -(ic * tx + id_ * ty)], axis=1)


def frame_geometry(theta, image_size):
    """What a theta does to the canonical object, in the observation's terms (NumPy).

    theta maps canonical coordinates `q` to observation coordinates `A q + t`, so the
    object appears turned, scaled and stretched by `A` and moved by `t`. With the
    polar decomposition `A = R(angle) P` (P symmetric positive):

    - `angle`: degrees, counter-clockwise on screen, the rotation `R`;
    - `scale`: `sqrt(|det A|)`, the object's size in the observation over its
      canonical size;
    - `aspect`: the ratio of `A`'s singular values (1 for a turn and uniform scale;
      above 1 for any stretch or shear);
    - `shift`: `(dx, dy)` in pixels, where the canonical centre lands, from the centre.

    Args:
        theta: (N, 6).
        image_size: `(height, width)` of the observation.

    Returns:
        dict of NumPy arrays: `angle`, `scale`, `aspect` (N,), `shift` (N, 2).
    """
    import numpy as np

    theta = np.asarray(theta, np.float64).reshape(-1, 2, 3)
    a = theta[:, :, :2]
    height, width = image_size
    # R = [[cos, sin], [-sin, cos]] turns counter-clockwise on screen (y down).
    angle = np.degrees(np.arctan2(a[:, 0, 1] - a[:, 1, 0], a[:, 0, 0] + a[:, 1, 1]))
    singular = np.linalg.svd(a, compute_uv=False)  # (N, 2), descending
    return {
        "angle": angle,
        "scale": np.sqrt(np.abs(np.linalg.det(a))),
        "aspect": singular[:, 0] / np.maximum(singular[:, 1], 1e-12),
        "shift": theta[:, :, 2] * np.asarray([(width - 1) / 2.0, (height - 1) / 2.0]),
    }


def guard_determinant(det, min_determinant):
    """Determinants smaller than `min_determinant` in magnitude replaced by `+/- min_determinant` (sign kept, 0 as +)."""
    sign = ops.where(det < 0, -ops.ones_like(det), ops.ones_like(det))
    return ops.where(ops.abs(det) < min_determinant, sign * min_determinant, det)
