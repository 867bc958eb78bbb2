"""Adam as the paper trains with it: updated in place on TensorFlow and PyTorch, and
never fed a non-finite gradient."""

import keras
from keras import ops

from keras_ace import backend_ops
from keras_ace.api_export import keras_ace_export


def all_finite(grads):
    """True when no gradient holds NaN or Inf (a scalar boolean tensor).

    A gradient's sum is finite exactly when its elements are (NaN and Inf propagate,
    +Inf and -Inf give NaN), unless finite elements overflow float32 together, which
    also calls for skipping: one reduction per gradient, where an element-wise
    `isfinite` writes a temporary of the gradient's size (PyTorch: three).
    """
    checks = [ops.isfinite(ops.sum(g)) for g in grads if g is not None]
    return ops.all(ops.stack(checks)) if checks else ops.convert_to_tensor(True)


@keras_ace_export
class EpochDecay(keras.optimizers.schedules.LearningRateSchedule):
    """An exponential learning-rate decay counted in epochs, whatever the batch size.

    `lr(step) = initial_learning_rate * decay_rate ** (step / (decay_epochs * steps_per_epoch))`.
    Appendix A's "decay = 50 epochs" with `decay_rate = 1/e`. `ACE.fit` sets
    `steps_per_epoch` from the data and the batch size it trains with, so that a run
    with another batch size decays over the same number of epochs.

    Args:
        initial_learning_rate: the rate at step 0.
        decay_epochs: epochs over which the rate falls by `decay_rate`.
        decay_rate: the factor per `decay_epochs`.
        steps_per_epoch: optimizer steps in one epoch.
    """

    def __init__(self, initial_learning_rate, decay_epochs, decay_rate, steps_per_epoch):
        if not (initial_learning_rate > 0 and decay_epochs > 0 and decay_rate > 0 and steps_per_epoch >= 1):
            raise ValueError(
                "EpochDecay needs positive rates and epochs and at least one step per epoch. Received: "
                f"initial_learning_rate={initial_learning_rate}, decay_epochs={decay_epochs}, "
                f"decay_rate={decay_rate}, steps_per_epoch={steps_per_epoch}"
            )
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_epochs = float(decay_epochs)
        self.decay_rate = float(decay_rate)
        self.steps_per_epoch = int(steps_per_epoch)

    def __call__(self, step):
        epoch = ops.cast(step, "float32") / float(self.steps_per_epoch)
        return self.initial_learning_rate * ops.power(self.decay_rate, epoch / self.decay_epochs)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_epochs": self.decay_epochs,
                "decay_rate": self.decay_rate, "steps_per_epoch": self.steps_per_epoch}


@keras_ace_export
class Adam(keras.optimizers.Adam):
    """`keras.optimizers.Adam` that skips non-finite steps, updated in place on TensorFlow and PyTorch.

    A step whose gradients hold NaN or Inf (a corrupt batch, an overflow) changes
    nothing: not the weights, not Adam's moments, not the iteration count. It is
    counted in `skipped_steps` instead, so that one bad batch never loses a trained
    model. `keras_ace.training.StopOnSkippedStep` turns a skipped step into a clean
    stop of `fit`.

    The same update as Keras' Adam, without its temporaries (`backend_ops.fused_adam_step`);
    on JAX the train step is compiled and XLA fuses Keras' update anyway, and with
    `amsgrad=True` the update is Keras' own.
    """

    def __init__(self, learning_rate=0.001, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        # The schedule, where there is one (`ACE.fit` tells an `EpochDecay` the steps of an epoch).
        schedule = keras.optimizers.schedules.LearningRateSchedule
        self.learning_rate_schedule = learning_rate if isinstance(learning_rate, schedule) else None

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
