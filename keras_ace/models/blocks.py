"""Small helpers the parts of Figure 5 share: argument choices and chains of layers."""

import keras

from keras_ace.layers.convolution import Conv2D
from keras_ace.layers.pooling import MaxPooling2x2

# Non-decreasing activations: each commutes with a max, values and gradients alike.
MONOTONE_ACTIVATIONS = (keras.activations.relu, keras.activations.tanh, keras.activations.sigmoid)


def check_choice(value, options, name):
    """`value` if it is one of `options`, else a ValueError that lists them."""
    if value not in options:
        raise ValueError(f"Unknown {name}. Expected one of {options}. Received: {name}={value!r}")
    return value


def build_chain(layers, input_shape):
    """Builds layers applied one after another; returns the last one's output shape."""
    shape = tuple(input_shape)
    for layer in layers:
        layer.build(shape)
        shape = layer.compute_output_shape(shape)
    return shape


def apply_chain(layers, x, training=False):
    """Applies layers one after another; dropout layers are told `training`.

    A convolution with a non-decreasing activation followed by 2x2 max-pooling pools
    first and activates after: max(relu(a), relu(b), ...) = relu(max(a, b, ...)), and
    the gradient reaches the same input (the window's largest; where the window is all
    negative, zero either way), so the ReLU and its gradient pass over a quarter of the
    values (the classifier's and symmetry statistics net's conv layers).
    """
    i = 0
    while i < len(layers):
        layer = layers[i]
        following = layers[i + 1] if i + 1 < len(layers) else None
        if (isinstance(layer, Conv2D) and isinstance(following, MaxPooling2x2)
                and layer.activation in MONOTONE_ACTIVATIONS):
            x = layer.activation(following(layer(x, activate=False)))
            i += 2
            continue
        x = layer(x, training=training) if isinstance(layer, keras.layers.Dropout) else layer(x)
        i += 1
    return x
