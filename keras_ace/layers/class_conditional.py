"""Layers with a separate set of weights for every class: the ACE's per-class decoders."""

import keras
from keras import ops

from keras_ace import backend_ops
from keras_ace.api_export import keras_ace_export
from keras_ace.initializers import PaperConvUniform

# Largest kernel (in x out) for which a per-example kernel gather is cheaper than
# running every class; 2**17 floats x batch 250 is 128 MB.
MAX_GATHERED_KERNEL = 2**17


def class_initializer(initializer, class_id):
    """A fresh copy of `initializer` for one class, so that the classes start apart.

    A Keras 3 initializer instance without a seed fixes one at construction and draws
    the same values on every call: reused for every class it would start all decoders
    identical. A copy gets a seed of its own (an explicit seed is offset by the class).
    """
    # from_config, not keras.initializers.serialize: that imports TensorFlow on every backend.
    config = dict(initializer.get_config())
    if isinstance(config.get("seed"), int):
        config["seed"] = config["seed"] + class_id
    return type(initializer).from_config(config)


class ClassConditional(keras.layers.Layer):
    """Base class: `call(x, class_ids)` uses class `class_ids[i]`'s weights for row `i`."""

    def __init__(self, num_classes, activation=None, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive. Received: num_classes={num_classes}")
        self.num_classes = int(num_classes)
        self.activation = keras.activations.get(activation)
        # tf.dynamic_partition has dynamic shapes, which XLA cannot compile.
        self.supports_jit = not backend_ops.uses_dynamic_shapes()

    def add_class_weights(self, kernel_shape, kernel_initializer, units):
        """One kernel and one bias variable per class.

        Separate variables rather than one stacked tensor: each class's gradient is then
        a dense tensor of its own size, where slicing a stacked variable would make every
        class write a gradient the size of all of them (5x slower on TensorFlow).
        """
        self.kernels = [
            self.add_weight(name=f"kernel_{c}", shape=kernel_shape, initializer=class_initializer(kernel_initializer, c))
            for c in range(self.num_classes)
        ]
        self.biases = [
            self.add_weight(name=f"bias_{c}", shape=(units,), initializer="zeros") for c in range(self.num_classes)
        ]

    @property
    def kernel(self):
        """All classes' kernels stacked: (K, ...)."""
        return ops.stack([k.value for k in self.kernels])

    @property
    def bias(self):
        """All classes' biases stacked: (K, units)."""
        return ops.stack([b.value for b in self.biases])

    def apply_class(self, x, c):
        """The layer for one class `c` (a Python int) on rows `x`, before the activation."""
        raise NotImplementedError

    def call(self, x, class_ids):
        return self.activation(backend_ops.per_class_apply(self.apply_class, x, class_ids, self.num_classes))

    def call_all(self, x):
        """Every class on its own rows: x (B, K, ...) -> (B, K, ...)."""
        return self.activation(ops.stack([self.apply_class(x[:, c], c) for c in range(self.num_classes)], axis=1))

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "activation": keras.activations.serialize(self.activation),
        }


@keras_ace_export
class ClassDense(ClassConditional):
    """A dense layer with its own kernel (in, units) and bias for every class.

    Args:
        num_classes: the number of classes K.
        units: output size.
        activation: activation function.
        kernel_initializer: initialiser of each class's kernel.

    Call arguments:
        x: (B, in).
        class_ids: (B,) integers, the class whose weights each row uses.

    Returns:
        (B, units).

    Example:
    >>> layer = ClassDense(10, 4)
    >>> y = layer(np.ones((3, 2), "float32"), np.array([0, 9, 9]))  # doctest: +SKIP
    """

    def __init__(self, num_classes, units, activation=None, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(num_classes, activation, **kwargs)
        if int(units) < 1:
            raise ValueError(f"units must be positive. Received: units={units}")
        self.units = int(units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"ClassDense expects inputs of shape (batch, features). Received: shape={tuple(input_shape)}")
        self.input_dim = input_shape[-1]
        self.add_class_weights((self.input_dim, self.units), self.kernel_initializer, self.units)

    def apply_class(self, x, c):
        return ops.matmul(x, self.kernels[c]) + self.biases[c]

    def call(self, x, class_ids):
        if self.input_dim * self.units <= MAX_GATHERED_KERNEL:
            class_ids = ops.cast(class_ids, "int32")
            kernels = ops.take(self.kernel, class_ids, axis=0)  # (B, in, units)
            return self.activation(ops.einsum("bi,biu->bu", x, kernels) + ops.take(self.bias, class_ids, axis=0))
        return super().call(x, class_ids)

    def call_all(self, x):
        return self.activation(ops.einsum("bki,kiu->bku", x, self.kernel) + self.bias)

    def compute_output_shape(self, input_shape, class_ids_shape=None):
        return (input_shape[0], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


@keras_ace_export
class ClassConv2DTranspose(ClassConditional):
    """A transposed convolution ("deconvolution") with its own kernel for every class.

    Padding is `"same"`, so the output is `strides` times the input's height and width.

    Args:
        num_classes: the number of classes K.
        filters: output channels.
        kernel_size: square kernel size.
        strides: upsampling factor.
        activation: activation function.

    Call arguments:
        x: (B, h, w, in_channels).
        class_ids: (B,) integers.

    Returns:
        (B, h * strides, w * strides, filters).
    """

    def __init__(self, num_classes, filters, kernel_size=5, strides=2, activation=None, **kwargs):
        super().__init__(num_classes, activation, **kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"ClassConv2DTranspose expects (batch, height, width, channels). Received: shape={tuple(input_shape)}"
            )
        k = self.kernel_size
        # Keras' transposed-convolution kernel layout: (kh, kw, out_channels, in_channels).
        shape = (k, k, self.filters, input_shape[-1])
        self.add_class_weights(shape, PaperConvUniform(transposed=True), self.filters)

    def apply_class(self, x, c):
        return ops.conv_transpose(x, self.kernels[c], strides=self.strides, padding="same") + self.biases[c]

    def compute_output_shape(self, input_shape, class_ids_shape=None):
        b, h, w, _ = input_shape
        return (b, h * self.strides, w * self.strides, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
        }
