"""The only backend-specific code of keras_ace: per-class functions, a fused Adam step
on TensorFlow, a conditional optimizer update, and data parallelism.

An ACE has a decoder for every class, but in training each example only needs the
decoder of its true class. `per_class_apply` runs `fn(rows, c)` on the rows of class `c`
only, so 10 decoders cost about what one does:

- TensorFlow: `tf.dynamic_partition` / `tf.dynamic_stitch` (dynamic shapes, so the
  layers that use it turn off XLA compilation on TensorFlow);
- PyTorch (eager): a sort and a split by class;
- JAX (static shapes under `jit`): `fn` runs on every row for every class and the
  right output is selected, which costs `num_classes` times more.

Dense layers with small kernels (the decoders' first layer) skip all this with a
per-example kernel gather on every backend (see `ClassDense`).
"""

import contextlib

import keras
from keras import ops

DISTRIBUTIONS = (None, "data_parallel")


def per_class_apply(fn, x, class_ids, num_classes):
    """`out[i] = fn(x[i:i+1], class_ids[i])[0]`, computed class by class.

    Args:
        fn: `fn(rows, c) -> outputs` for a Python int `c`, row-wise.
        x: (B, ...) inputs.
        class_ids: (B,) integer classes in [0, num_classes).
        num_classes: the number of classes.

    Returns:
        (B, ...) outputs of `fn`.
    """
    backend = keras.backend.backend()
    class_ids = ops.cast(class_ids, "int32")
    if backend == "tensorflow":
        import tensorflow as tf

        parts = tf.dynamic_partition(x, class_ids, num_classes)
        positions = tf.dynamic_partition(tf.range(tf.shape(x)[0]), class_ids, num_classes)
        if len(x.shape) > 2:
            # The gradient of a transposed convolution of an empty batch has the wrong
            # shape in TensorFlow; one zero row per class keeps every part non-empty.
            outputs = [fn(tf.concat([part, tf.zeros_like(x[:1])], 0), c)[:-1] for c, part in enumerate(parts)]
        else:
            outputs = [fn(part, c) for c, part in enumerate(parts)]
        return tf.dynamic_stitch(positions, outputs)
    if backend == "torch":
        import torch

        order = torch.argsort(class_ids)
        counts = torch.bincount(class_ids, minlength=num_classes).tolist()
        parts = torch.split(x[order], counts)
        sorted_out = torch.cat([fn(part, c) for c, part in enumerate(parts)])
        out = torch.empty_like(sorted_out)
        out[order] = sorted_out
        return out
    outputs = ops.stack([fn(x, c) for c in range(num_classes)], axis=1)  # (B, K, ...)
    one_hot = ops.one_hot(class_ids, num_classes, dtype=outputs.dtype)  # (B, K)
    one_hot = ops.reshape(one_hot, (-1, num_classes) + (1,) * (len(outputs.shape) - 2))
    return ops.sum(outputs * one_hot, axis=1)


def uses_dynamic_shapes():
    """True where `per_class_apply` needs dynamic shapes (no XLA)."""
    return keras.backend.backend() == "tensorflow"


def fused_adam_step(optimizer, gradient, variable, learning_rate):
    """Adam's update in one fused TensorFlow kernel; False where it does not apply.

    Keras' Adam runs about eight element-wise passes over every variable; without XLA
    (the per-class layers keep TensorFlow from compiling) that is 17% of an ACE step.
    `ResourceApplyAdam` computes the same update (`lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)`,
    the moments, `var -= lr_t m / (sqrt(v) + eps)`) in one pass.
    """
    if keras.backend.backend() != "tensorflow" or optimizer.amsgrad:
        return False
    moments = adam_moments(optimizer, variable)
    if moments is None:
        return False
    import tensorflow as tf

    m, v = moments
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
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=keras.distribution.list_devices()))
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
