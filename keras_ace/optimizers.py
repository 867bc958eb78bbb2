"""Adam as the paper trains with it, fused into one kernel per variable on TensorFlow."""

import keras

from keras_ace import backend_ops
from keras_ace.api_export import keras_ace_export


@keras_ace_export
class Adam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` with the same update, computed by one fused kernel on TensorFlow.

    On JAX the train step is compiled and XLA fuses the update anyway; on PyTorch and
    with `amsgrad=True` this is Keras' own Adam.
    """

    def update_step(self, gradient, variable, learning_rate):
        if not backend_ops.fused_adam_step(self, gradient, variable, learning_rate):
            super().update_step(gradient, variable, learning_rate)
