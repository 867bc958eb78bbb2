"""Adam as the paper trains with it: fused into one kernel per variable on TensorFlow,
and never fed a non-finite gradient."""

import keras
from keras import ops

from keras_ace import backend_ops
from keras_ace.api_export import keras_ace_export


def all_finite(grads):
    """True when no gradient holds NaN or Inf (a scalar boolean tensor)."""
    checks = [ops.all(ops.isfinite(g)) for g in grads if g is not None]
    return ops.all(ops.stack(checks)) if checks else ops.convert_to_tensor(True)


@keras_ace_export
class Adam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` that skips non-finite steps, fused into one kernel on TensorFlow.

    A step whose gradients hold NaN or Inf (a corrupt batch, an overflow) changes
    nothing: not the weights, not Adam's moments, not the iteration count. It is
    counted in `skipped_steps` instead, so that one bad batch never loses a trained
    model. `keras_ace.training.StopOnSkippedStep` turns a skipped step into a clean
    stop of `fit`.

    On JAX the train step is compiled and XLA fuses the update anyway; on PyTorch and
    with `amsgrad=True` the update itself is Keras' own Adam.
    """

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self.skipped_steps = self.add_variable((), initializer="zeros", dtype="int32", name="skipped_steps")

    def update_step(self, gradient, variable, learning_rate):
        if not backend_ops.fused_adam_step(self, gradient, variable, learning_rate):
            super().update_step(gradient, variable, learning_rate)

    def apply(self, grads, trainable_variables=None):
        if getattr(self, "_in_stateless_apply", False):
            # JAX: `stateless_apply` below already chose the finite branch.
            return super().apply(grads, trainable_variables)
        if not self.built:
            self.build(trainable_variables)  # variables must not be created inside a cond
        grads = list(grads)
        backend_ops.apply_if(
            all_finite(grads),
            lambda g: super(Adam, self).apply(g, trainable_variables),
            lambda: self.skipped_steps.assign_add(1),
            args=(grads,),
        )

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        # JAX's functional step: both branches return the new (weights, optimizer state).
        counter = next(i for i, v in enumerate(self.variables) if v is self.skipped_steps)

        def apply():
            self._in_stateless_apply = True
            try:
                return super(Adam, self).stateless_apply(optimizer_variables, grads, trainable_variables)
            finally:
                self._in_stateless_apply = False

        def skip():
            state = list(optimizer_variables)
            state[counter] = state[counter] + 1
            return list(trainable_variables), state

        return ops.cond(all_finite(grads), apply, skip)
