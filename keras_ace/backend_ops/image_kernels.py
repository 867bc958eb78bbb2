"""The image kernels of the spatial transformer, the convolutions, dropout and max-pooling."""

import keras
from keras import ops


def gather_pixels(pixels, index):
    """Each example's pixels at its own indices: pixels (B, N, C), index (B, P) -> (B, P, C).

    The spatial transformer's bilinear corners. PyTorch: `take_along_axis`, a gather whose
    gradient is a scatter-add; Keras' `take` of rows of a 2-D table is an embedding lookup
    there, whose gradient is twice as slow on a CPU (`benchmarks/spatial_transformer.py`,
    60x60: 501 against 239 ms). TensorFlow and JAX: `take` from the flattened batch,
    10-20 % faster there than `take_along_axis`.
    """
    batch, count, channels = ops.shape(pixels)[0], pixels.shape[1], pixels.shape[2]
    if keras.backend.backend() == "torch":
        index = ops.broadcast_to(ops.expand_dims(index, -1), (batch, index.shape[1], channels))
        return ops.take_along_axis(pixels, index, axis=1)
    offset = ops.expand_dims(ops.arange(batch, dtype="int32") * count, 1)  # (B, 1)
    return ops.take(ops.reshape(pixels, (-1, channels)), offset + index, axis=0)


def conv2d(x, kernel, strides, padding, bias=None):
    """A 2-D convolution of channels-last images: (B, H, W, C) and (kh, kw, C, F) -> (B, H', W', F), plus `bias` (F,).

    PyTorch: Keras' `ops.conv` copies the images to channels-first and back to
    channels-last memory before convolving, and its output leaves the next layers
    working on a strided view; here the images are viewed as channels-first tensors in
    channels-last memory, which PyTorch's oneDNN convolution takes and gives back as they
    are (no copy either way), and adds the bias as it convolves. Elsewhere `ops.conv`.
    """
    if keras.backend.backend() != "torch":
        out = ops.conv(x, kernel, strides=strides, padding=padding)
        return out if bias is None else out + bias
    import torch

    x = ops.convert_to_tensor(x)
    kernel = ops.convert_to_tensor(kernel)
    strides = tuple(strides) if isinstance(strides, (tuple, list)) else (strides, strides)
    pad = 0
    if padding == "same":
        # As Keras pads: the extra row and column, where the total is odd, at the end.
        totals = [max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
                  for k, s, size in zip(kernel.shape[:2], strides, x.shape[1:3])]
        if all(t % 2 == 0 for t in totals):
            pad = tuple(t // 2 for t in totals)
        else:
            (th, tw) = totals
            x = torch.nn.functional.pad(x, (0, 0, tw // 2, tw - tw // 2, th // 2, th - th // 2))  # (B, H+, W+, C)
    images = x.permute(0, 3, 1, 2)  # (B, C, H, W), channels-last memory
    weights = kernel.permute(3, 2, 0, 1)  # (F, C, kh, kw)
    bias = None if bias is None else ops.convert_to_tensor(bias)
    return torch.nn.functional.conv2d(images, weights, bias, stride=strides, padding=pad).permute(0, 2, 3, 1)


def dropout(x, rate, seed):
    """Inverted dropout of `x` at `rate`, drawn from `seed` (a `keras.random.SeedGenerator`).

    PyTorch: the mask is uniform noise turned in place into 0 or 1 / (1 - rate), then one
    product: two fresh arrays instead of Keras' six (its `uniform` scales and shifts the
    noise, its `dropout` calls `bernoulli_`, 4x slower than `torch.rand` on a CPU); fresh
    arrays are what cost here, each one faulted in page by page (forward and backward at
    250 x 21 x 21 x 32: 14 against 29 ms). The generator is seeded from `seed.next()`, so
    a seed gives the same masks every run. Elsewhere `keras.random.dropout`.
    """
    if keras.backend.backend() != "torch":
        return keras.random.dropout(x, rate, seed=seed)
    import torch

    x = ops.convert_to_tensor(x)
    if x.device.type == "meta":  # shape inference: no generator on the meta device
        noise = torch.rand(x.shape, dtype=x.dtype, device=x.device)
    else:
        first, second = (int(v) for v in ops.convert_to_numpy(seed.next()))
        generator = torch.Generator(device=x.device)
        generator.manual_seed((first + second) & 0xFFFFFFFF)
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x * noise.ge_(rate).mul_(1.0 / (1.0 - rate))


def max_pool_2x2(x):
    """2x2 max-pooling, stride 2, "valid": (B, H, W, C) -> (B, H // 2, W // 2, C).

    JAX: the larger of larger pairs among the four strided slices of the windows: XLA
    fuses it forward and backward into element-wise loops, where the gradient of
    `max_pool`'s window reduction (select-and-scatter) is 8x slower on a CPU and that of a
    reshape into windows and a max 3x slower (it counts ties: 43 against 13 ms forward and
    backward at 250 x 42 x 42 x 32). Ties share the gradient (half to each of a tied pair)
    where the others give it to the first; both are gradients of the max. TensorFlow: its
    own pooling kernel (the reshape is 7x slower); PyTorch: its pooling of a channels-first
    view of channels-last memory (Keras' `max_pool` copies to channels-first and returns a
    strided view).
    """
    if keras.backend.backend() == "torch":
        import torch

        x = ops.convert_to_tensor(x)
        return torch.nn.functional.max_pool2d(x.permute(0, 3, 1, 2), 2, 2).permute(0, 2, 3, 1)
    if keras.backend.backend() != "jax":
        return ops.max_pool(x, 2, 2, "valid")
    _, h, w, _ = x.shape
    h, w = h // 2 * 2, w // 2 * 2
    top = ops.maximum(x[:, 0:h:2, 0:w:2], x[:, 0:h:2, 1:w:2])
    bottom = ops.maximum(x[:, 1:h:2, 0:w:2], x[:, 1:h:2, 1:w:2])
    return ops.maximum(top, bottom)
