"""Dropout drawn the way each backend does fastest."""

import keras

from keras_ace import backend_ops
from keras_ace.api_export import keras_ace_export


@keras_ace_export
class Dropout(keras.layers.Dropout):
    """`keras.layers.Dropout` whose mask `backend_ops.dropout` draws (PyTorch: from uniform noise).

    The classifier's dropout (Appendix A: 0.2 on the input, 0.5 in hidden layers).

    Example:
    >>> Dropout(0.5)(np.ones((2, 3), "float32"), training=False).shape
    (2, 3)
    """

    def call(self, inputs, training=False):
        if training and self.rate > 0 and self.noise_shape is None:
            return backend_ops.dropout(inputs, self.rate, self.seed_generator)
        return super().call(inputs, training=training)
