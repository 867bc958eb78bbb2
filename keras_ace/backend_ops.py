"""The only backend-specific code of keras_ace: splitting a batch by class and its
per-class products, a rare correction inside a compiled step, gathering pixels,
convolution, dropout, max-pooling, a fused Adam step on TensorFlow and PyTorch, a
conditional optimizer update, and data parallelism (process settings: `runtime`)."""

import contextlib
import math

import keras
from keras import ops

DISTRIBUTIONS = (None, "data_parallel")
# Elements per piece of PyTorch's in-place Adam: 4 MB temporaries, which the allocator
# reuses (glibc returns blocks over 32 MB to the system and faults them in again).
ADAM_PIECE = 2**20


def uses_dynamic_shapes():
    """True where a tensor's shape may depend on the data: TensorFlow graphs (without XLA) and PyTorch.

    JAX compiles every step with XLA, which fixes shapes when it compiles.
    """
    return keras.backend.backend() in ("tensorflow", "torch")


def split_by_class(x, class_ids, num_classes):
    """The rows of each class, and the function that puts per-part outputs back in the rows' order.

    Where shapes may depend on the data (`uses_dynamic_shapes`): TensorFlow's
    `dynamic_partition` and `dynamic_stitch`; PyTorch's sort and split.

    Args:
        x: (B, ...).
        class_ids: (B,) int32 classes in [0, num_classes).
        num_classes: the number of classes K.

    Returns:
        `(parts, join)`: K arrays (n_k, ...), and `join(outputs)`, K arrays (n_k, ...) -> (B, ...).
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        parts = tf.dynamic_partition(x, class_ids, num_classes)
        positions = tf.dynamic_partition(tf.range(tf.shape(x)[0]), class_ids, num_classes)
        # The gradient of a transposed convolution of an empty batch has the wrong shape in
        # TensorFlow; one zero row per part keeps every part non-empty.
        padding = tf.zeros_like(x[:1])
        parts = [tf.concat([part, padding], 0) for part in parts]
        return parts, lambda outputs: tf.dynamic_stitch(positions, [out[:-1] for out in outputs])
    import torch

    order = torch.argsort(class_ids)
    counts = torch.bincount(class_ids, minlength=num_classes).tolist()

    def join(outputs):
        ordered = torch.cat(outputs)
        out = torch.empty_like(ordered)
        out[order] = ordered
        return out

    return list(torch.split(x[order], counts)), join


def matmul_parts(parts, kernel):
    """Part `k` times `kernel[k]`: K arrays (n_k, in) and a (K, in, out) kernel -> K arrays (n_k, out).

    The kernel's gradient is one (K, in, out) tensor. Built from K separate products, it
    would be copied once more to stack them (for CIFAR-10's output layer 250 MB every
    step), so TensorFlow and PyTorch build it without that copy: TensorFlow as one batched
    product of the parts padded with zero rows to the longest (`_tf_matmul_parts`), PyTorch
    writing each class's gradient into its slice of one tensor (`_PartsMatmul`). On JAX,
    whose parts all hold the same number of rows, one batched product, whose gradient is
    one batched product too (with ten products, XLA copied ten slices of the kernel and
    assembled the gradient from ten pieces: ~100 ms of Figure 3's step on a 2-core CPU).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tf_matmul_parts(parts, kernel)
    if backend == "torch":
        parts = [ops.convert_to_tensor(part) for part in parts]
        return list(_parts_matmul().apply(ops.convert_to_tensor(kernel), *parts))
    if len({part.shape[0] for part in parts}) == 1:  # JAX's parts: one batched product
        return list(ops.unstack(ops.einsum("kni,kio->kno", ops.stack(parts), kernel)))
    return [ops.matmul(part, one) for part, one in zip(parts, ops.unstack(kernel))]


def _tf_matmul_parts(parts, kernel):
    """`matmul_parts` on TensorFlow, the kernel's gradient one batched product of the zero-padded parts."""
    import tensorflow as tf

    @tf.custom_gradient
    def products(kernel, *parts):
        def gradient(*grads):
            grads = [tf.zeros_like(out) if grad is None else grad for grad, out in zip(grads, outputs)]
            longest = tf.reduce_max([tf.shape(part)[0] for part in parts])

            def padded(rows):  # K arrays (n_k, d) -> (K, longest, d), zero rows added
                return tf.stack([tf.pad(one, [[0, longest - tf.shape(one)[0]], [0, 0]]) for one in rows])

            grad_kernel = tf.matmul(padded(parts), padded(grads), transpose_a=True)
            grad_parts = [tf.matmul(grad, kernel[k], transpose_b=True) for k, grad in enumerate(grads)]
            return (grad_kernel, *grad_parts)

        outputs = [tf.matmul(part, kernel[k]) for k, part in enumerate(parts)]
        return outputs, gradient

    return list(products(tf.convert_to_tensor(kernel), *parts))


_PARTS_MATMUL = []


def _parts_matmul():
    """The `torch.autograd.Function` of `matmul_parts` (defined when first used: torch is imported only then)."""
    if _PARTS_MATMUL:
        return _PARTS_MATMUL[0]
    import torch

    class PartsMatmul(torch.autograd.Function):
        @staticmethod
        def forward(ctx, kernel, *parts):
            ctx.save_for_backward(kernel, *parts)
            return tuple(part @ kernel[k] for k, part in enumerate(parts))

        @staticmethod
        def backward(ctx, *grads):
            kernel, *parts = ctx.saved_tensors
            grad_kernel = torch.empty_like(kernel) if ctx.needs_input_grad[0] else None
            grad_parts = []
            for k, (part, grad) in enumerate(zip(parts, grads)):
                if grad is None:  # this part's output was not used
                    if grad_kernel is not None:
                        grad_kernel[k].zero_()
                    grad_parts.append(None)
                    continue
                if grad_kernel is not None:
                    torch.mm(part.t(), grad, out=grad_kernel[k])
                grad_parts.append(grad @ kernel[k].t() if ctx.needs_input_grad[k + 1] else None)
            return (grad_kernel, *grad_parts)

    _PARTS_MATMUL.append(PartsMatmul)
    return PartsMatmul


def with_rare_correction(compute, correct, keep):
    """`compute()` in the rows where `keep` holds, `correct()` in the others: a rare correction inside a compiled step.

    `correct()` runs only where some row is not kept. Both return (B, ...); `keep` is
    (B,) boolean. On JAX the two are differentiated together (a custom VJP): `compute`'s
    gradients as usual, and the correction, recomputed in a conditional of its own, adds
    its share to those same gradients only where it ran. Differentiated apart, the
    correction's conditional would hand on a zero gradient for every weight it uses
    (CIFAR10's decoder output kernel: 251 MB), written and added on every step.
    """

    def select(keep, out, other):
        return ops.where(ops.reshape(keep, (-1,) + (1,) * (len(out.shape) - 1)), out, other)

    if keras.backend.backend() != "jax":
        out = compute()
        return select(keep, out, ops.cond(ops.logical_not(ops.all(keep)), correct, lambda: ops.zeros_like(out)))
    import jax
    import numpy as np

    # call(*args) == fn(), with what fn closes over (the weights among it) as arguments.
    # An array both close over is one argument, so that it gets one gradient.
    call_compute, captured = jax.closure_convert(compute)
    call_correct, also = jax.closure_convert(correct)
    count = len(captured)  # compute's arguments come first
    captured = list(captured) + [a for a in also if not any(a is c for c in captured)]
    to_correct = [next(i for i, c in enumerate(captured) if c is a) for a in also]
    floating = [i for i, c in enumerate(captured) if jax.numpy.issubdtype(c.dtype, jax.numpy.inexact)]

    def corrected(keep, out, args):
        fixed = jax.lax.cond(
            ops.all(keep),
            lambda: jax.numpy.zeros_like(out),
            lambda: call_correct(*(args[i] for i in to_correct)),
        )
        return select(keep, out, fixed)

    @jax.custom_vjp
    def computed(keep, *args):
        return corrected(keep, call_compute(*args[:count]), args)

    def forward(keep, *args):
        out, compute_vjp = jax.vjp(call_compute, *args[:count])
        return corrected(keep, out, args), (keep, args, compute_vjp)

    def backward(saved, grad):
        keep, args, compute_vjp = saved
        zeros = jax.numpy.zeros_like(grad)
        grads = {i: g for i, g in enumerate(compute_vjp(select(keep, grad, zeros))) if i in floating}
        grads.update((i, jax.numpy.zeros_like(args[i])) for i in floating if i not in grads)  # correct's alone

        def add_correction(grads):
            _, correct_vjp = jax.vjp(call_correct, *(args[i] for i in to_correct))
            grads = dict(grads)
            for i, g in zip(to_correct, correct_vjp(select(keep, zeros, grad))):
                if i in grads:
                    grads[i] = grads[i] + g
            return grads

        grads = jax.lax.cond(ops.all(keep), lambda g: g, add_correction, grads)
        return (None, *(grads[i] if i in grads else np.zeros(a.shape, jax.dtypes.float0) for i, a in enumerate(args)))

    computed.defvjp(forward, backward)
    return computed(keep, *captured)


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


def fused_adam_step(optimizer, gradient, variable, learning_rate):
    """Adam's update in place, without Keras' temporaries; False where it does not apply.

    Keras' Adam runs about eight element-wise passes over every variable, each writing a
    temporary the size of the variable; JAX's compiled step fuses them, the others do not:

    - TensorFlow (no XLA on a CPU): `ResourceApplyAdam`, one kernel; without it the
      update is 17 % of an ACE step.
    - PyTorch: `torch._fused_adam_`, the one-pass kernel of `torch.optim.Adam(fused=True)`
      (4x faster than the passes below on a 46 M-float kernel on this CPU); where a
      PyTorch lacks it, in-place `mul_`, `addcmul_`, `addcdiv_` on pieces of `ADAM_PIECE`
      elements, one small temporary each (a stacked decoder kernel, CIFAR-10: 63 M
      floats, would otherwise pay a fresh 250 MB allocation, page faults included, per pass).

    Both compute Keras' update: `lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)`, the moments,
    `var -= lr_t m / (sqrt(v) + eps)`.
    """
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "torch") or optimizer.amsgrad:
        return False
    moments = adam_moments(optimizer, variable)
    if moments is None:
        return False
    m, v = moments
    if backend == "torch":
        import torch

        step = float(ops.convert_to_numpy(optimizer.iterations)) + 1
        beta_1, beta_2 = float(optimizer.beta_1), float(optimizer.beta_2)
        lr = float(ops.convert_to_numpy(learning_rate))
        correction = math.sqrt(1 - beta_2**step)
        gradient = gradient.to(variable.value.dtype).contiguous()
        fused = getattr(torch, "_fused_adam_", None)  # torch.optim.Adam(fused=True)'s kernel: one pass
        if fused is not None:
            # Keras adds epsilon to sqrt(v), PyTorch to sqrt(v) / sqrt(1 - b2^t): the same update
            # with epsilon scaled by that factor.
            with torch.no_grad():
                fused([variable.value], [gradient], [m.value], [v.value], [],
                      [torch.tensor(step, dtype=torch.float32, device=variable.value.device)],
                      lr=lr, beta1=beta_1, beta2=beta_2, weight_decay=0.0,
                      eps=float(optimizer.epsilon) / correction, amsgrad=False, maximize=False)
            return True
        lr_t = lr * correction / (1 - beta_1**step)
        flat = [t.reshape(-1).split(ADAM_PIECE) for t in (variable.value, m.value, v.value, gradient)]
        with torch.no_grad():
            for var_piece, m_piece, v_piece, g_piece in zip(*flat):
                m_piece.mul_(beta_1).add_(g_piece, alpha=1 - beta_1)
                v_piece.mul_(beta_2).addcmul_(g_piece, g_piece, value=1 - beta_2)
                var_piece.addcdiv_(m_piece, v_piece.sqrt().add_(optimizer.epsilon), value=-lr_t)
        return True
    import tensorflow as tf

    dtype = variable.dtype
    step = tf.cast(optimizer.iterations + 1, dtype)
    tf.raw_ops.ResourceApplyAdam(
        var=variable.handle,
        m=m.handle,
        v=v.handle,
        beta1_power=tf.pow(tf.cast(optimizer.beta_1, dtype), step),
        beta2_power=tf.pow(tf.cast(optimizer.beta_2, dtype), step),
        lr=tf.cast(learning_rate, dtype),
        beta1=tf.cast(optimizer.beta_1, dtype),
        beta2=tf.cast(optimizer.beta_2, dtype),
        epsilon=tf.cast(optimizer.epsilon, dtype),
        grad=tf.cast(gradient, dtype),
    )
    return True


def adam_moments(optimizer, variable):
    """Keras Adam's first and second moment variables of `variable`; None where this Keras keeps them otherwise.

    The only reader of the optimizer's private attributes (`_get_variable_index`,
    `_momentums`, `_velocities`, Keras 3.0 to 3.15 at least): a Keras that renames them
    makes `fused_adam_step` fall back to Keras' own update, and
    tests/test_optimizers.py fail, so that the fallback is noticed.
    """
    try:
        index = optimizer._get_variable_index(variable)
        return optimizer._momentums[index], optimizer._velocities[index]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def apply_if(pred, apply_fn, skip_fn, args=()):
    """Runs `apply_fn(*args)` where `pred` holds, else `skip_fn()`; both return nothing.

    An optimizer's update inside a conditional: `ops.cond` on TensorFlow and PyTorch, a
    Python `if` on JAX (where the stateful update runs eagerly), except
    under a `tf.distribute` strategy that synchronises its replicas with merge calls
    (e.g. `MirroredStrategy`), which cannot run inside a replica's `tf.cond`; there the
    replicas vote (any replica's `pred` false skips every replica) and the conditional
    runs in cross-replica context, as Keras' `LossScaleOptimizer` does.
    """

    def run(fn, *fn_args):
        def branch():
            fn(*fn_args)

        return branch

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        if not tf.__internal__.distribute.strategy_supports_no_merge_call():

            def cross_replica(distribution, pred, args):
                votes = distribution.extended.call_for_each_replica(lambda p: tf.cast(p, tf.float32), args=(pred,))
                agreed = distribution.reduce(tf.distribute.ReduceOp.MEAN, votes, axis=None) > 0.999
                tf.cond(
                    agreed,
                    run(distribution.extended.call_for_each_replica, apply_fn, args),
                    run(skip_fn),
                )

            tf.distribute.get_replica_context().merge_call(cross_replica, args=(pred, args))
            return
    if keras.backend.backend() == "jax":
        # Stateful updates happen eagerly on JAX (its compiled train step goes through
        # `stateless_apply`), and a traced cond cannot assign variables.
        return run(apply_fn, *args)() if bool(pred) else run(skip_fn)()
    ops.cond(pred, run(apply_fn, *args), run(skip_fn))


def scale_loss_for_replicas(loss):
    """Divides a replica's loss by the number of replicas under `tf.distribute`.

    Keras does this in its own `compute_loss`; a model that overrides it must too, or
    `MirroredStrategy` sums the replicas' gradients into N times the mean.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / replicas
    return loss


@contextlib.contextmanager
def distribution_scope(distribution=None):
    """Builds (and, on JAX, trains) models inside on every local device, data-parallel.

    - JAX: `keras.distribution.DataParallel` over `keras.distribution.list_devices()`,
      set as the global distribution (it stays set, so that `fit` after the scope
      shards the batches too).
    - TensorFlow: `tf.distribute.MirroredStrategy`; a model built in its scope keeps
      training on it.
    - PyTorch: Keras has no multi-device training for PyTorch; a `ValueError` says so.

    Args:
        distribution: `None` (one device) or `"data_parallel"`.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"Unknown distribution. Expected one of {DISTRIBUTIONS}. Received: distribution={distribution!r}")
    if distribution is None:
        yield
        return
    backend = keras.backend.backend()
    if backend == "jax":
        # Over several processes `ACE.fit` shards NumPy data itself (`distributed.process_rows`),
        # and a data set must be each process's shard: Keras' auto-sharding only takes tf.data.
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=keras.distribution.list_devices(), auto_shard_dataset=False))
        yield
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy().scope():
            yield
    else:
        raise ValueError(
            f"distribution='data_parallel' needs the JAX or TensorFlow backend: Keras has no multi-device "
            f"training for {backend}. Received: KERAS_BACKEND={backend}"
        )


def guard_determinant(det, min_determinant):
    """Determinants smaller than `min_determinant` in magnitude replaced by `+/- min_determinant` (sign kept, 0 as +)."""
    sign = ops.where(det < 0, -ops.ones_like(det), ops.ones_like(det))
    return ops.where(ops.abs(det) < min_determinant, sign * min_determinant, det)
