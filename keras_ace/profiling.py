"""Counting an ACE's floating-point operations and measuring the machine's matmul peak."""

import time

import keras
import numpy as np
from keras import ops

from keras_ace.layers.class_conditional import ClassConv2DTranspose
from keras_ace.layers.class_conditional import ClassDense

# A training step costs about three forward passes: the forward pass itself, and
# gradients with respect to both the activations and the weights in the backward pass.
TRAINING_FACTOR = 3


def layer_flops(layer, input_shape):
    """Forward FLOPs per example of one layer (2 per multiply-add) and its output shape.

    Counts convolutions, transposed convolutions and dense layers (per-class layers: the
    one class each example uses); pooling, activations, dropout and resampling are
    left out (a few per cent at most here).
    """
    output_shape = layer.compute_output_shape(input_shape)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        flops = 2 * int(np.prod(output_shape[1:3])) * kh * kw * input_shape[-1] * layer.filters
    elif isinstance(layer, keras.layers.Dense):
        flops = 2 * input_shape[-1] * layer.units
    elif isinstance(layer, ClassDense):
        flops = 2 * input_shape[-1] * layer.units
    elif isinstance(layer, ClassConv2DTranspose):
        flops = 2 * int(np.prod(input_shape[1:3])) * layer.kernel_size**2 * input_shape[-1] * layer.filters
    else:
        flops = 0
    return flops, output_shape


def chain_flops(layers, input_shape):
    """Forward FLOPs per example of layers applied one after another, and the last output shape."""
    flops = 0
    for layer in layers:
        more, input_shape = layer_flops(layer, input_shape)
        flops += more
    return flops, input_shape


def forward_flops(model):
    """Forward FLOPs per example of an `ACE`, by part: `{"ssn": ..., "classifier": ..., ...}`."""
    image = (1, *model.image_shape)
    parts = {}
    if model.symmetry is not None:
        net = model.symmetry_net
        flops, hidden = chain_flops(net.hidden_layers, image)
        parts["ssn"] = flops + 2 * layer_flops(net.location, hidden)[0]
    parts["classifier"] = chain_flops([*model.classifier.hidden_layers, model.classifier.logits], image)[0]
    ae = model.auto_encoder
    flops, features = chain_flops(ae.encoder_layers, image)
    parts["encoder"] = flops + 2 * layer_flops(ae.latent_loc, features)[0]
    flops = chain_flops([ae.decoder_hidden, ae.decoder_output], (1, model.latent_dim))[0]
    if ae.decoder_deconvs:
        flops += chain_flops(ae.decoder_deconvs, (1, *ae.feature_shape))[0]
    parts["decoder"] = flops
    return parts


def training_flops(model):
    """FLOPs of one training step per example (about 3 forward passes)."""
    return TRAINING_FACTOR * sum(forward_flops(model).values())


def matmul_peak(size=2048, repeats=10):
    """The best float32 matrix-multiply throughput of this backend and machine, in FLOP/s."""
    a = ops.convert_to_tensor(np.random.default_rng(0).random((size, size), np.float32))
    b = ops.convert_to_tensor(np.random.default_rng(1).random((size, size), np.float32))
    ops.convert_to_numpy(ops.matmul(a, b)[0, 0])  # warm-up, compilation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ops.convert_to_numpy(ops.matmul(a, b)[0, 0])
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
