"""Small helpers the parts of Figure 5 share: argument choices and chains of layers."""


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
