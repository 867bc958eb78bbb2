"""Splitting a batch by class and the per-class products, and a rare correction inside a compiled step (JAX)."""

import keras
from keras import ops


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

    JAX only (where shapes are fixed when a step compiles; the other backends split the
    rows by class exactly). `correct()` runs only where some row is not kept. Both return (B, ...); `keep` is
    (B,) boolean. On JAX the two are differentiated together (a custom VJP): `compute`'s
    gradients as usual, and the correction, recomputed in a conditional of its own, adds
    its share to those same gradients only where it ran. Differentiated apart, the
    correction's conditional would hand on a zero gradient for every weight it uses
    (CIFAR10's decoder output kernel: 251 MB), written and added on every step.
    """

    def select(keep, out, other):
        return ops.where(ops.reshape(keep, (-1,) + (1,) * (len(out.shape) - 1)), out, other)

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
