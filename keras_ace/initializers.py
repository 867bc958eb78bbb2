"""The paper's initialiser for convolution kernels (Appendix A)."""

import math

import keras

from keras_ace.api_export import keras_ace_export


@keras_ace_export
class PaperConvUniform(keras.initializers.Initializer):
    """Uniform in (-1, 1), divided by the square root of a product of kernel dimensions.

    Appendix A: "Convolutional weights are initialized uniformly in (-1, 1) and
    normalized by square root of the product of dimensions". Which dimensions is not
    said. The default, `mode="fan_in"`, takes the dimensions one output unit sees:
    kernel height x kernel width x input channels (for a transposed convolution, whose
    Keras kernel is (kh, kw, out, in), the last axis). This keeps each unit's
    pre-activation variance near 1/3 whatever the layer width, as the Theano-era
    "normalise by fan-in" rule did; the product of *all* four dimensions would also
    divide by the number of filters and shrink the signal by sqrt(filters) at every
    layer. `mode="all"` gives that literal reading.

    Args:
        mode: `"fan_in"` or `"all"`.
        transposed: the kernel belongs to a transposed convolution.
        seed: integer seed.

    Example:
    >>> init = PaperConvUniform()
    >>> w = init((3, 3, 32, 64))  # values in (-1/sqrt(288), 1/sqrt(288))
    """

    MODES = ("fan_in", "all")

    def __init__(self, mode="fan_in", transposed=False, seed=None):
        if mode not in self.MODES:
            raise ValueError(f"Expected mode in {self.MODES}. Received: mode={mode!r}")
        self.mode = mode
        self.transposed = transposed
        self.seed = seed
        self._uniform = keras.initializers.RandomUniform(-1.0, 1.0, seed=seed)

    def limit(self, shape):
        """The bound of the uniform distribution for a kernel of `shape`."""
        if len(shape) < 3:
            raise ValueError(f"Expected a convolution kernel of rank >= 3. Received: shape={tuple(shape)}")
        if self.mode == "all":
            dims = shape
        else:
            channels_in = shape[-1] if self.transposed else shape[-2]
            dims = (*shape[:-2], channels_in)
        return 1.0 / math.sqrt(math.prod(dims))

    def __call__(self, shape, dtype=None):
        return self._uniform(shape, dtype=dtype) * self.limit(shape)

    def get_config(self):
        return {"mode": self.mode, "transposed": self.transposed, "seed": self.seed}


def paper_conv2d(filters, kernel_size, name, strides=1, activation="relu"):
    """A `same`-padded `Conv2D` initialised as in Appendix A (`PaperConvUniform`)."""
    from keras_ace.layers.convolution import Conv2D  # keras_ace.layers imports this module

    return Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        activation=activation,
        kernel_initializer=PaperConvUniform(),
        name=name,
    )
