"""A channels-last 2-D convolution computed the way each backend does fastest."""

import keras

from keras_ace import backend_ops
from keras_ace.api_export import keras_ace_export


@keras_ace_export
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` (channels last) computed by `backend_ops.conv2d`, bias included.

    The same layer, weights and results; on PyTorch without Keras' two copies of the
    images between channels-last and channels-first memory around every convolution,
    and with an output the next layers read contiguously (the classifier's and symmetry
    statistics net's convolutions, issue 21).

    Example:
    >>> Conv2D(4, 3, padding="same")(np.zeros((2, 8, 8, 1), "float32")).shape
    (2, 8, 8, 4)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.data_format != "channels_last" or self.dilation_rate != (1, 1) or self.groups != 1:
            raise ValueError(
                "keras_ace's Conv2D takes channels-last images, no dilation and one group. Received: "
                f"data_format={self.data_format!r}, dilation_rate={self.dilation_rate}, groups={self.groups}"
            )

    def call(self, inputs, activate=True):
        """`activate=False`: the convolution without the activation (`blocks.apply_chain` applies it after pooling)."""
        # The bias added by the convolution (PyTorch: inside oneDNN's kernel, no extra pass).
        outputs = backend_ops.conv2d(inputs, self.kernel, self.strides, self.padding, self.bias if self.use_bias else None)
        return outputs if self.activation is None or not activate else self.activation(outputs)
