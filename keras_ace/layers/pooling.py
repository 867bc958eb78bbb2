"""2x2 max-pooling, computed the way each backend does fastest."""

import keras

from keras_ace import backend_ops
from keras_ace.api_export import keras_ace_export


@keras_ace_export
class MaxPooling2x2(keras.layers.Layer):
    """`keras.layers.MaxPooling2D(2)`: the largest of each 2x2 window, stride 2, no padding.

    The classifier's and the symmetry statistics net's poolings (Appendix A: "2x2
    max-poolings"). On JAX the maximum of the windows' four strided slices, which XLA
    fuses forward and backward: its gradient of a window reduction (select-and-scatter)
    is many times slower on CPUs (`backend_ops.max_pool_2x2`).

    Call arguments:
        x: (B, H, W, C).

    Returns:
        (B, H // 2, W // 2, C).

    Example:
    >>> MaxPooling2x2()(np.arange(16, dtype="float32").reshape(1, 4, 4, 1))[0, :, :, 0]  # doctest: +SKIP
    [[5, 7], [13, 15]]
    """

    def call(self, x):
        return backend_ops.max_pool_2x2(x)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, None if h is None else h // 2, None if w is None else w // 2, c)
