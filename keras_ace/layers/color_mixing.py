"""Colour symmetry statistics: per-example 3x3 row-stochastic colour matrices."""

import keras
from keras import ops

from keras_ace.api_export import keras_ace_export
from keras_ace.layers.spatial_transformer import guard_determinant


def invert_3x3(matrix, min_determinant=1e-3):
    """Closed-form inverse of (B, 3, 3) matrices with a sign-keeping determinant guard."""
    m = [[matrix[:, i, j] for j in range(3)] for i in range(3)]
    cofactor = [
        [
            m[(i + 1) % 3][(j + 1) % 3] * m[(i + 2) % 3][(j + 2) % 3]
            - m[(i + 1) % 3][(j + 2) % 3] * m[(i + 2) % 3][(j + 1) % 3]
            for j in range(3)
        ]
        for i in range(3)
    ]
    det = guard_determinant(m[0][0] * cofactor[0][0] + m[0][1] * cofactor[0][1] + m[0][2] * cofactor[0][2], min_determinant)
    # inverse = adjugate / det, adjugate = cofactor transposed
    rows = [ops.stack([cofactor[j][i] / det for j in range(3)], axis=-1) for i in range(3)]
    return ops.stack(rows, axis=1)


@keras_ace_export
class ColorMixing(keras.layers.Layer):
    """Applies a per-example 3x3 colour matrix to every pixel's RGB vector.

    `out[b, h, w, i] = sum_j M[b, i, j] * x[b, h, w, j]`. With `inverse=True` it applies
    the inverse matrix instead (the canonicalising side of box 0.4 by default, see
    `keras_ace.models.symmetries.ColorSymmetry`); a row-stochastic matrix
    keeps row sums of one under inversion but may get negative entries, so inverse
    outputs can leave [0, 1]. Determinants below `min_determinant` in magnitude are
    replaced by `+/- min_determinant`.

    Args:
        inverse: apply the inverse of the matrix.
        min_determinant: guard for the inverse.

    Call arguments:
        inputs: `[images, matrix]`, images (B, H, W, 3), matrix (B, 3, 3) or (B, 9).

    Returns:
        (B, H, W, 3).
    """

    def __init__(self, inverse=False, min_determinant=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.inverse = bool(inverse)
        self.min_determinant = float(min_determinant)

    def build(self, input_shape):
        image_shape, matrix_shape = input_shape
        if len(image_shape) != 4 or image_shape[-1] != 3:
            raise ValueError(
                f"ColorMixing expects RGB images (batch, height, width, 3). Received: images.shape={tuple(image_shape)}"
            )
        if tuple(matrix_shape[1:]) not in ((3, 3), (9,)):
            raise ValueError(
                f"ColorMixing expects matrices of shape (batch, 3, 3) or (batch, 9). "
                f"Received: matrix.shape={tuple(matrix_shape)}"
            )

    def call(self, inputs):
        images, matrix = inputs
        matrix = ops.reshape(matrix, (-1, 3, 3))
        if self.inverse:
            matrix = invert_3x3(matrix, self.min_determinant)
        return ops.einsum("bhwj,bij->bhwi", images, ops.cast(matrix, images.dtype))

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "inverse": self.inverse, "min_determinant": self.min_determinant}


@keras_ace_export
class RowStochastic(keras.layers.Layer):
    """Turns 9 unconstrained numbers into a non-negative 3x3 matrix whose rows sum to one.

    Row-wise softmax of `logits + identity_logit * I`: zero logits give a matrix near the
    identity (diagonal `e^k / (e^k + 2)`, 0.965 for the default k = 4), so a head with a
    zero-initialised kernel starts by leaving colours as they are.

    Args:
        identity_logit: the offset added to the diagonal logits.

    Call arguments:
        logits: (B, 9).

    Returns:
        (B, 3, 3).
    """

    def __init__(self, identity_logit=4.0, **kwargs):
        super().__init__(**kwargs)
        self.identity_logit = float(identity_logit)

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] != 9:
            raise ValueError(f"RowStochastic expects logits of shape (batch, 9). Received: shape={tuple(input_shape)}")

    def call(self, logits):
        logits = ops.reshape(logits, (-1, 3, 3)) + self.identity_logit * ops.eye(3)
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 3, 3)

    def get_config(self):
        return {**super().get_config(), "identity_logit": self.identity_logit}
