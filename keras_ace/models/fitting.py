"""How an ACE trains: the paper's batch and decay, checked data, several processes, the frame prior after `fit`.

`PaperTraining` is mixed into `ACE`: `keras.Model`'s `fit`, `evaluate` and `predict`
with the data checked before any step, `fit`'s batch of 250 for arrays (Appendix A),
the learning-rate decay told the steps of an epoch, each process's share of the rows
over several processes, and the frame prior that `sample` draws from fitted after `fit`.
"""

import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_ace import distributed
from keras_ace import validation
from keras_ace.models.generation import FRAME_PRIOR_IMAGES
from keras_ace.optimizers import EpochDecay

# Appendix A trains with batches of 250: `ACE.fit`'s default for arrays.
BATCH_SIZE = 250
# `keras.Model.fit`'s arguments after `validation_data`, in its order: passed on by name.
FIT_ARGUMENTS = ("shuffle", "class_weight", "sample_weight", "initial_epoch", "steps_per_epoch", "validation_steps",
                 "validation_batch_size", "validation_freq")


def steps_per_epoch(x, batch_size, validation_split=0.0):
    """Optimizer steps in one epoch of `fit(x)`: arrays and a batch size, a `PyDataset`'s
    `steps_per_epoch` or length, or a `tf.data` data set's cardinality; None where it is not known."""
    if len(getattr(x, "shape", ())) == 4:
        return max(1, math.ceil(len(x) * (1.0 - validation_split) / batch_size))
    if isinstance(x, keras.utils.PyDataset):
        # One that resumes an epoch part-way holds fewer steps and says the whole epoch's.
        return getattr(x, "steps_per_epoch", None) or len(x)
    cardinality = getattr(x, "cardinality", None)  # tf.data; -1 infinite, -2 unknown
    if cardinality is not None and int(cardinality()) > 0:
        return int(cardinality())
    return None


def first_images(x, count):
    """The first `count` finite images of `fit`'s input as NumPy (N, H, W, C): arrays, a `PyDataset` or a data set
    of `(images, labels)` or images batches. A batch with NaN or Inf is left out, as training skipped it."""
    if len(getattr(x, "shape", ())) == 4:
        x = np.asarray(x[:count], np.float32)
        return x[np.isfinite(x).reshape(len(x), -1).all(axis=1)]
    batches = (x[i] for i in range(len(x))) if isinstance(x, keras.utils.PyDataset) else iter(x)
    images, seen = [], 0
    for batch in batches:
        batch = np.asarray(ops.convert_to_numpy(batch[0] if isinstance(batch, (tuple, list)) else batch), np.float32)
        if not np.isfinite(batch).all():
            continue
        images.append(batch)
        seen += len(batch)
        if seen >= count:
            break
    return np.concatenate(images)[:count] if images else np.zeros((0,), np.float32)


class PaperTraining:
    """`fit`, `evaluate` and `predict` as an ACE trains (mixed into `ACE`)."""

    # `fit`'s batch size for arrays when the caller gives none (`compile_ace` sets its TrainingConfig's).
    batch_size = BATCH_SIZE
    # True inside `evaluate`, which alone reports the bound.
    _evaluating = False

    def check_data(self, x, y):
        """Refuses NumPy data with wrong shapes or dtypes, NaN, values outside [0, 1] or bad labels.

        A `PyDataset` is checked by its first batch; tensors and other data sets when
        the step is traced (shapes, dtypes, one-hot labels). A non-finite step among
        them is skipped by the optimizer (`keras_ace.optimizers.Adam`), so that it
        never reaches the weights.
        """
        validation.check_training_data(x, y, self.image_shape, self.num_classes)

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, *args, **kwargs):
        """`keras.Model.fit`; NumPy images and labels are checked before training starts.

        For arrays, `batch_size` defaults to the paper's 250 (`self.batch_size`, which
        `compile_ace` sets from its `TrainingConfig`), not Keras' 32; and an `EpochDecay`
        learning rate is told how many steps an epoch has, from the arrays and the batch
        size, a `PyDataset`'s length, a data set's cardinality or `steps_per_epoch`, so
        that it decays over the same epochs whatever the batch size (one per run).

        With symmetry statistics, the frame prior that `sample` draws from is fitted
        afterwards to the statistics the net infers on the first `FRAME_PRIOR_IMAGES`
        training images, whatever the input (arrays, a `PyDataset`, a `tf.data` data set),
        except a process's shard over several processes (call `fit_frame_prior` there).

        Over several processes (`keras_ace.distributed`), every process passes the whole
        arrays and feeds its share of each global batch of `batch_size` rows (validation
        data too); a data set must already be the process's shard.
        """
        kwargs = {**dict(zip(FIT_ARGUMENTS, args)), **kwargs}  # the rest of Keras' arguments, by name
        self.check_data(x, y)
        if isinstance(validation_data, tuple) and len(validation_data) >= 2:
            self.check_data(validation_data[0], validation_data[1])
        if not self.built:
            self.build()  # weights exist before callbacks (e.g. BackupAndRestore) look
        if len(getattr(x, "shape", ())) == 4:  # arrays, not a data set
            batch_size = batch_size or self.batch_size
        steps = kwargs.get("steps_per_epoch") or steps_per_epoch(x, batch_size, validation_split)
        if steps:
            self._count_epochs_in_steps(steps)
        arrays = x
        if distributed.process_count() > 1:
            x, y, batch_size, validation_data = self._process_share(x, y, batch_size, validation_data)
        try:
            with distributed.failure_named():
                history = super().fit(
                    x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                    validation_split=validation_split, validation_data=validation_data, **kwargs,
                )  # fmt: skip
        finally:  # Keras ends callbacks only when fit ends normally: signals a backup took are handed back here
            for callback in callbacks or ():
                getattr(callback, "release_signals", lambda: None)()
        # Over several processes a data set is each process's own shard: a prior fitted to it would differ
        # between processes, so there the caller fits it to the same images everywhere (`fit_frame_prior`).
        shard = distributed.process_count() > 1 and len(getattr(arrays, "shape", ())) != 4
        if self.symmetry is not None and not shard:
            images = first_images(arrays, FRAME_PRIOR_IMAGES)
            if len(images):
                self.fit_frame_prior(images)
            else:
                warnings.warn("fit could not read back training images to fit the frame prior of `sample`: "
                              "call `fit_frame_prior(x_train)`.", stacklevel=2)
        return history

    def _process_share(self, x, y, batch_size, validation_data=None):
        """Over several processes, this process's rows of each global batch (`distributed.process_rows`).

        Every process holds the whole data as NumPy arrays; a data set (e.g. `tf.data`)
        must already be this process's shard, batched at the global batch divided by
        the process count.
        """
        if not isinstance(x, np.ndarray):
            return x, y, batch_size, validation_data
        rows, share = distributed.process_rows(len(x), batch_size)
        if isinstance(validation_data, tuple) and isinstance(validation_data[0], np.ndarray):
            held_out, _ = distributed.process_rows(len(validation_data[0]), batch_size)
            validation_data = tuple(part[held_out] for part in validation_data)
        return x[rows], None if y is None else np.asarray(y)[rows], share, validation_data

    def _count_epochs_in_steps(self, steps):
        """Tells an `EpochDecay` learning rate the steps per epoch of this `fit`."""
        schedule = getattr(self.optimizer, "learning_rate_schedule", None)
        if isinstance(schedule, EpochDecay) and schedule.steps_per_epoch != steps:
            schedule.steps_per_epoch = steps
            # A compiled step holds the old count as a constant: `fit` traces a new one
            # (Keras' `make_train_function` builds one when none is set).
            self.train_function = None

    def evaluate(self, x=None, y=None, batch_size=None, *args, **kwargs):
        """`keras.Model.evaluate`, also reporting `nll_bound` (nats per image)."""
        self.check_data(x, y)
        # Inside `fit`, Keras validates on the data `fit` already shared out (its cached iterator).
        if distributed.process_count() > 1 and not kwargs.get("_use_cached_eval_dataset"):
            x, y, batch_size, _ = self._process_share(x, y, batch_size or self.batch_size)
        self._evaluating = True
        try:
            return super().evaluate(x, y, batch_size, *args, **kwargs)
        finally:
            self._evaluating = False

    def get_metrics_result(self):
        results = super().get_metrics_result()
        # The bound needs every class's decoder: evaluation computes it, training does not.
        return results if self._evaluating else {k: v for k, v in results.items() if k != "nll_bound"}

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`; NumPy images are checked first."""
        self.check_data(x, None)
        return super().predict(x, *args, **kwargs)
