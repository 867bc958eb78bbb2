"""Layers with a separate set of weights for every class: the ACE's per-class decoders.

Each layer keeps one stacked weight per kind, `kernel` (K, ...) and `bias` (K, units).
`call_all` runs every class on its own column of a (N, K, ...) input, one batched
product for all classes; `apply_by_class` turns that into "each row through its own
class's weights" by laying the rows out in a (capacity, K, ...) grid, so the classes
together cost about what one layer on the whole batch does, on every backend alike.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_ace import backend_ops
from keras_ace.api_export import keras_ace_export
from keras_ace.initializers import PaperConvUniform

# Where shapes are fixed when compiled (JAX), a class's column of the grid holds the mean
# row count of a class plus this many standard deviations (batch 250, 10 classes: 45
# rows of 25 expected); a batch with a fuller class computes every class on every row.
CAPACITY_DEVIATIONS = 4


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


def stacked_initializer(initializer, num_classes):
    """Initialises a (K, ...) weight class by class: each slice as `initializer` would one class's weight.

    Applied to the stacked shape, Keras' fan-based initialisers would count the classes
    into the fan-in.
    """

    def initialize(shape, dtype=None):
        return ops.stack([class_initializer(initializer, c)(shape[1:], dtype=dtype) for c in range(num_classes)])

    return initialize


def static_capacity(batch, num_classes):
    """Rows per class in `apply_by_class`'s grid where shapes are fixed when compiled."""
    mean = batch / num_classes
    return min(batch, math.ceil(mean + CAPACITY_DEVIATIONS * math.sqrt(mean)))


def apply_by_class(call_all, x, class_ids, num_classes):
    """Each row through its own class: `out[i] = call_all(grid)[slot of row i]`.

    Row `i` goes to slot `(p_i, class_ids[i])` of a (capacity, K, ...) grid, `p_i` its place
    among its class's rows; `call_all` runs class `k` on column `k` (one batched product
    per layer), and each row's output is read back from its slot. Where shapes may
    depend on the data (TensorFlow without XLA, PyTorch) the capacity is the fullest
    class's count; under XLA (JAX) it is fixed by `static_capacity`, and a batch with a
    fuller class runs every class on every row (each row in a grid row of its own).

    Args:
        call_all: `(N, K, ...) -> (N, K, ...)`, class `k` on column `k`, row-wise.
        x: (B, ...) inputs.
        class_ids: (B,) integer classes in [0, num_classes).
        num_classes: the number of classes K.

    Returns:
        (B, ...) outputs of `call_all`.
    """
    class_ids = ops.cast(class_ids, "int32")
    one_hot = ops.one_hot(class_ids, num_classes, dtype="int32")  # (B, K)
    place = ops.sum((ops.cumsum(one_hot, axis=0) - 1) * one_hot, axis=1)  # (B,)

    def in_grid(place, capacity):
        slot = place * num_classes + class_ids  # (B,)
        # The row in each slot; an empty slot takes row 0, and its output is never read.
        rows = ops.scatter(ops.expand_dims(slot, 1), ops.arange(ops.shape(x)[0], dtype="int32"), (capacity * num_classes,))
        grid = ops.reshape(ops.take(x, rows, axis=0), (-1, num_classes, *x.shape[1:]))  # (capacity, K, ...)
        out = call_all(grid)  # (capacity, K, ...)
        return ops.take(ops.reshape(out, (-1, *out.shape[2:])), slot, axis=0)  # (B, ...)

    if backend_ops.uses_dynamic_shapes():
        return in_grid(place, backend_ops.dynamic_size(ops.max(place) + 1))
    batch = x.shape[0]
    capacity = static_capacity(batch, num_classes)
    every_row = ops.arange(batch, dtype="int32")
    return ops.cond(ops.max(place) < capacity, lambda: in_grid(place, capacity), lambda: in_grid(every_row, batch))


class ClassConditional(keras.layers.Layer):
    """Base class: `call(x, class_ids)` uses class `class_ids[i]`'s weights for row `i`.

    Subclasses create `kernel` (K, ...) and `bias` (K, units) with `add_class_weights`
    and define `call_all`.
    """

    def __init__(self, num_classes, activation=None, **kwargs):
        super().__init__(**kwargs)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive. Received: num_classes={num_classes}")
        self.num_classes = int(num_classes)
        self.activation = keras.activations.get(activation)
        # Data-dependent shapes (`apply_by_class` on TensorFlow) cannot be compiled by XLA.
        self.supports_jit = not backend_ops.uses_dynamic_shapes()

    def add_class_weights(self, kernel_shape, kernel_initializer, units):
        """`kernel` (K, *kernel_shape), each class drawn as `kernel_initializer` draws one, and `bias` (K, units)."""
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_classes, *kernel_shape),
            initializer=stacked_initializer(kernel_initializer, self.num_classes),
        )
        self.bias = self.add_weight(name="bias", shape=(self.num_classes, units), initializer="zeros")

    def call_all(self, x):
        """Every class on its own column: x (N, K, ...) -> (N, K, ...)."""
        raise NotImplementedError

    def call(self, x, class_ids):
        return apply_by_class(self.call_all, x, class_ids, self.num_classes)

    def load_own_variables(self, store):
        """Loads this layout or keras_ace 0.3's, which kept one variable per class (`kernel_0`, ..., `bias_0`, ...)."""
        per_class = (
            self.built and len(store.keys()) == 2 * self.num_classes and np.shape(store["0"]) != tuple(self.kernel.shape)
        )
        if not per_class:
            super().load_own_variables(store)  # today's layout, or Keras' own message
            return
        values = [np.asarray(store[str(i)]) for i in range(2 * self.num_classes)]
        self.kernel.assign(np.reshape(np.stack(values[: self.num_classes]), self.kernel.shape))
        self.bias.assign(np.reshape(np.stack(values[self.num_classes :]), self.bias.shape))

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
    >>> layer(np.ones((3, 2), "float32"), np.array([0, 9, 9])).shape
    (3, 4)
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
        self.add_class_weights((input_shape[-1], self.units), self.kernel_initializer, self.units)

    def call_all(self, x):
        return self.activation(ops.einsum("nki,kiu->nku", x, self.kernel) + self.bias)

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

    def call_all(self, x):
        # One convolution per class on its column; unstacked, each class's kernel gradient
        # is its own slice of one stacked gradient.
        kernels = ops.unstack(ops.convert_to_tensor(self.kernel))
        biases = ops.unstack(ops.convert_to_tensor(self.bias))
        columns = [
            ops.conv_transpose(x[:, c], kernels[c], strides=self.strides, padding="same") + biases[c]
            for c in range(self.num_classes)
        ]
        return self.activation(ops.stack(columns, axis=1))

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
