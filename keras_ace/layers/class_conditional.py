"""Layers with a separate set of weights for every class: the ACE's per-class decoders.

Each layer keeps one stacked weight per kind, `kernel` (K, ...) and `bias` (K, units).
`apply_by_class` splits a batch into one part per class and `call_parts` runs class
`k`'s weights on part `k` only, so the K classes together cost about what one layer on
the whole batch does; `call_all` runs every class on every row of a (N, K, ...) input.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_ace import backend_ops
from keras_ace.api_export import keras_ace_export
from keras_ace.initializers import PaperConvUniform

# Where shapes are fixed when compiled (JAX), each class's part holds the mean row count
# of a class plus this many standard deviations (batch 250, 10 classes: 45 rows of 25
# expected); the rows of a fuller class beyond that are computed again, every class on
# every row, in a branch taken only for such a batch (`apply_by_class`).
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


class StackedInitializer(keras.initializers.Initializer):
    """Initialises a (K, ...) weight class by class: each slice as `initializer` would one class's weight.

    Applied to the stacked shape, Keras' fan-based initialisers would count the classes
    into the fan-in. An `Initializer`, not a function: under a distribution Keras
    compiles a large variable's initialiser through its bound `__call__`.
    """

    def __init__(self, initializer, num_classes):
        self.initializer = initializer
        self.num_classes = num_classes

    def __call__(self, shape, dtype=None):
        return ops.stack([class_initializer(self.initializer, c)(shape[1:], dtype=dtype) for c in range(self.num_classes)])


def static_capacity(batch, num_classes):
    """Rows in each class's part in `apply_by_class` where shapes are fixed when compiled."""
    mean = batch / num_classes
    return min(batch, math.ceil(mean + CAPACITY_DEVIATIONS * math.sqrt(mean)))


def apply_by_class(call_parts, x, class_ids, num_classes):
    """Each row through its own class: `call_parts` runs class `k` on part `k` of the batch.

    Where shapes may depend on the data (TensorFlow without XLA, PyTorch), part `k` is
    exactly class `k`'s rows (`backend_ops.split_by_class`). Under XLA (JAX) shapes are
    fixed when compiled: every part holds `static_capacity` rows, class `k`'s and then
    padding whose outputs are never read. The rows of a fuller class beyond that are
    computed again, every class on every row, in a branch taken only for such a batch
    (`backend_ops.with_rare_correction`); the parts themselves stay outside the conditional, which
    XLA:CPU runs 2.5x slower (Figure 4's step: 5.3 s inside, 2.2 s outside).

    Args:
        call_parts: `list of K (n_k, ...) -> list of K (n_k, ...)`, class `k` on part `k`, row-wise.
        x: (B, ...) inputs.
        class_ids: (B,) integer classes in [0, num_classes).
        num_classes: the number of classes K.

    Returns:
        (B, ...) outputs of `call_parts`, in the rows' order.
    """
    x = ops.convert_to_tensor(x)
    class_ids = ops.cast(class_ids, "int32")
    if backend_ops.uses_dynamic_shapes():
        parts, join = backend_ops.split_by_class(x, class_ids, num_classes)
        return join(call_parts(parts))
    one_hot = ops.one_hot(class_ids, num_classes, dtype="int32")  # (B, K)
    place = ops.sum((ops.cumsum(one_hot, axis=0) - 1) * one_hot, axis=1)  # (B,) among its class's rows

    def in_parts(place, capacity):
        fits = place < capacity
        # A row beyond its part's capacity goes to a spare slot; its output is not used.
        slot = ops.where(fits, class_ids * capacity + place, num_classes * capacity)  # (B,)
        rows = ops.scatter(
            ops.expand_dims(slot, 1), ops.arange(ops.shape(x)[0], dtype="int32"), (num_classes * capacity + 1,)
        )  # the row in each slot; an empty slot takes row 0, and its output is not used
        parts = [ops.take(x, rows[k * capacity : (k + 1) * capacity], axis=0) for k in range(num_classes)]
        out = ops.concatenate(call_parts(parts), axis=0)  # (K * capacity, ...)
        return ops.take(out, ops.minimum(slot, num_classes * capacity - 1), axis=0)  # (B, ...)

    batch = x.shape[0]
    capacity = static_capacity(batch, num_classes)
    if capacity >= batch:
        return in_parts(place, capacity)
    every_row = ops.arange(batch, dtype="int32")
    return backend_ops.with_rare_correction(
        lambda: in_parts(place, capacity), lambda: in_parts(every_row, batch), place < capacity
    )


class ClassConditional(keras.layers.Layer):
    """Base class: `call(x, class_ids)` uses class `class_ids[i]`'s weights for row `i`.

    Subclasses create `kernel` (K, ...) and `bias` (K, units) with `add_class_weights`
    and define `apply_one`.
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
            initializer=StackedInitializer(kernel_initializer, self.num_classes),
        )
        self.bias = self.add_weight(name="bias", shape=(self.num_classes, units), initializer="zeros")

    def apply_one(self, x, kernel, bias):
        """One class's layer, before the activation: rows `x` with that class's `kernel` and `bias`."""
        raise NotImplementedError

    def call_parts(self, parts):
        """Class `k` on part `k`: K arrays (n_k, ...) -> K arrays (n_k, ...)."""
        # Unstacked, each class's gradient is its own slice of one stacked gradient.
        kernels = ops.unstack(ops.convert_to_tensor(self.kernel))
        biases = ops.unstack(ops.convert_to_tensor(self.bias))
        return [self.activation(self.apply_one(part, kernels[k], biases[k])) for k, part in enumerate(parts)]

    def call_all(self, x):
        """Every class on its own column: x (N, K, ...) -> (N, K, ...)."""
        return ops.stack(self.call_parts(ops.unstack(x, axis=1)), axis=1)

    def call(self, x, class_ids):
        return apply_by_class(self.call_parts, x, class_ids, self.num_classes)

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

    def apply_one(self, x, kernel, bias):
        return ops.matmul(x, kernel) + bias

    def call_parts(self, parts):
        # One product per class (`backend_ops.matmul_parts`: on PyTorch without a copy of
        # the whole kernel gradient per step).
        biases = ops.unstack(ops.convert_to_tensor(self.bias))
        products = backend_ops.matmul_parts(parts, ops.convert_to_tensor(self.kernel))
        return [self.activation(product + biases[k]) for k, product in enumerate(products)]

    def call_all(self, x):
        # One batched product for all classes.
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

    def apply_one(self, x, kernel, bias):
        return ops.conv_transpose(x, kernel, strides=self.strides, padding="same") + bias

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
