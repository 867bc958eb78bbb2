"""Adam's update in place (TensorFlow, PyTorch) and a conditional update that skips non-finite steps."""

import math

import keras
from keras import ops


# Elements per piece of PyTorch's in-place Adam: 4 MB temporaries, which the allocator
# reuses (glibc returns blocks over 32 MB to the system and faults them in again).
ADAM_PIECE = 2**20


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
