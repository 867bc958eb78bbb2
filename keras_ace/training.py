"""Training settings of Appendix A and the user-facing constructors `build_ace` and `build_preset`."""

import dataclasses
import json
import math
import os
import signal
import sys
import threading

import keras
import numpy as np
from keras import ops

from keras_ace.backend_ops import distribution_scope
from keras_ace.datasets import get_dataset
from keras_ace.models.ace import ACE
from keras_ace.models.fitting import BATCH_SIZE
from keras_ace.models.presets import PRESETS
from keras_ace.models.presets import paper_settings
from keras_ace.optimizers import Adam
from keras_ace.optimizers import EpochDecay

@dataclasses.dataclass
class TrainingConfig:
    """How an ACE is trained (Appendix A)."""

    # Adam's learning rate: 0.0015 for the MNIST family, 0.0005 for CIFAR10.
    learning_rate: float = 0.0015
    # "decay = 50 epochs": read as the e-folding time of an exponential decay,
    # lr(epoch) = learning_rate * decay_rate ** (epoch / decay_epochs), applied per step.
    decay_epochs: float = 50.0
    decay_rate: float = math.exp(-1.0)
    batch_size: int = BATCH_SIZE
    # Steps per epoch, to turn decay_epochs into steps: training set size / batch_size
    # (`ACE.fit` resets it from the data and batch size it is given).
    steps_per_epoch: int = 240
    # Keras' `compile` arguments: train steps run per call of the compiled function (fewer
    # callbacks and host round trips; Keras allows only 1 on PyTorch), and XLA compilation ("auto": Keras').
    steps_per_execution: int = 1
    jit_compile: object = "auto"

    @classmethod
    def for_dataset(cls, dataset, **overrides):
        """Appendix A's settings for a data set; `steps_per_epoch` counts its training set at the batch size given."""
        record = get_dataset(dataset)
        batch_size = overrides.get("batch_size", cls.batch_size)
        config = cls(learning_rate=record.learning_rate, steps_per_epoch=math.ceil(record.train_size / batch_size))
        return dataclasses.replace(config, **overrides)

    def schedule(self):
        """The learning rate per step, decaying per epoch."""
        return EpochDecay(self.learning_rate, self.decay_epochs, self.decay_rate, self.steps_per_epoch)

    def optimizer(self):
        return Adam(learning_rate=self.schedule())


def compile_ace(model, training=None, dataset="mnist"):
    """Compiles `model` with Adam and the decay schedule of `training` (a `TrainingConfig`)."""
    training = training or TrainingConfig.for_dataset(dataset)
    model.compile(optimizer=training.optimizer(), steps_per_execution=training.steps_per_execution,
                  jit_compile=training.jit_compile)
    model.batch_size = training.batch_size
    return model


def build_preset(name, training=None, distribution=None, **overrides):
    """A compiled, untrained ACE of one figure panel (see `keras_ace.models.presets.PRESETS`).

    A trained panel is a `.keras` file of a figure run's folder: `keras.saving.load_model`.

    Args:
        name: the preset, e.g. `"fig2_rts_mnist"`.
        training: a `TrainingConfig`; default: Appendix A's for the preset's data set.
        distribution: `None` or `"data_parallel"` (every local device; see
            `keras_ace.backend_ops.distribution_scope`).
        **overrides: `ACE` constructor arguments that replace the preset's.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset. Expected one of {tuple(PRESETS)}. Received: name={name!r}")
    return _build({**PRESETS[name], **overrides}, training, distribution)


def build_ace(dataset="cifar10", encoder="dense", training=None, distribution=None, **overrides):
    """A compiled ACE for a data set, with the paper's settings as defaults.

    Starts from `keras_ace.models.presets.paper_settings(dataset, encoder)`: Figure 2's
    net for the MNIST family, Figure 3's (dense) or Figure 4's (conv) for CIFAR10, each
    with its symmetry statistics; any `ACE` argument overrides it.

    Args:
        dataset: `"mnist"`, `"rts_mnist"`, `"tc_mnist"` or `"cifar10"`.
        encoder: `"dense"` (Figures 1-3) or `"conv"` (Figure 4).
        training: a `TrainingConfig`; default: Appendix A's for the data set.
        distribution: `None` (one device) or `"data_parallel"`: every local device,
            through `keras.distribution.DataParallel` on JAX and
            `tf.distribute.MirroredStrategy` on TensorFlow.
        **overrides: `ACE` arguments, e.g. `symmetry=None` (Figure 1), `"spatial"` or
            `"spatial_color"` (default `"spatial"`, and `"spatial_color"` for the conv
            CIFAR10 net); `sampling="laplacian"`; `latent_dim=2`; smaller layers.

    Example:
    >>> model = build_ace(dataset="rts_mnist", symmetry="spatial")
    >>> model.fit(x_train, y_train, batch_size=250, epochs=1)   # doctest: +SKIP
    """
    return _build({**paper_settings(dataset, encoder), **overrides}, training, distribution)


def _build(config, training, distribution):
    """The one way an ACE is made from settings: `config` is a preset's data (with its `dataset`) plus overrides."""
    config = dict(config)
    dataset = config.pop("dataset")
    with distribution_scope(distribution):
        model = ACE(**config)
        model.build()
        return compile_ace(model, training, dataset)


class StopOnSkippedStep(keras.callbacks.Callback):
    """Stops `fit` cleanly after a step whose loss or gradients were not finite.

    `keras_ace.optimizers.Adam` already skipped that step's update, so the weights are
    those from before the bad batch (Keras' `TerminateOnNaN` stops too, but after the
    NaN reached the weights). `stopped_at` names the epoch and batch; `fit` returns
    normally and the caller decides what to do (the figure scripts exit with a message).
    """

    def __init__(self):
        super().__init__()
        self.stopped_at = None

    def on_batch_end(self, batch, logs=None):
        skipped = getattr(self.model.optimizer, "skipped_steps", None)
        if skipped is not None and int(ops.convert_to_numpy(skipped)) > self._skipped_before:
            self.stopped_at = (self._epoch, batch)
            self.model.stop_training = True

    def on_train_begin(self, logs=None):
        skipped = getattr(self.model.optimizer, "skipped_steps", None)
        self._skipped_before = 0 if skipped is None else int(ops.convert_to_numpy(skipped))
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def message(self):
        epoch, batch = self.stopped_at
        return (
            f"Training stopped: the loss or gradients of epoch {epoch + 1}, batch {batch + 1} were not finite "
            f"(NaN or Inf). That update was skipped, so the weights are those from before the bad batch."
        )


def from_preset(name, training=None, distribution=None, **overrides):
    """Deprecated: `build_preset` (it builds an untrained model, where keras-hub's `from_preset` loads weights)."""
    import warnings

    warnings.warn("keras_ace.from_preset is renamed build_preset: it builds an untrained model.", DeprecationWarning,
                  stacklevel=2)
    return build_preset(name, training, distribution, **overrides)


def random_streams(model):
    """The state variables of the model's random streams (`SeedGenerator`s), in a fixed order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


class TrainingInterrupted(RuntimeError):
    """`fit` stopped on SIGTERM or SIGINT after `BackupAndRestore` saved a backup at the running step."""


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' `BackupAndRestore` whose backup is whole or absent, which sets a damaged one aside, and saves on SIGTERM.

    Keras writes `latest.weights.h5` in place: a process killed or a disk filled while
    it writes leaves half a file, and every later run then fails to load it. Here each
    file is written under a temporary name and renamed into place (weights first, then
    the epoch, so an interruption between them repeats an epoch rather than skipping
    one). A backup that cannot be loaded at the start is moved to `<backup_dir>.damaged`
    with one line on stderr, the model keeps the weights it had, and training starts
    afresh.

    On SIGTERM or SIGINT (a preemption notice, Ctrl-C) during `fit`, the backup is saved
    when the running step ends and `fit` raises `TrainingInterrupted`; a second signal
    stops at once. The backup records the epoch and the steps of it already done
    (`position`); Keras restarts that epoch from its first step, and a caller that feeds
    only the steps still to do says so with `steps_done` (as `reproduce/common/runs.py`
    does), so that the run goes on at the step it stopped at.

    Args:
        backup_dir, save_freq, double_checkpoint, delete_checkpoint: as Keras'
            (`save_freq=N`: a backup every N steps too).
        steps_done: steps of the first epoch that the data given to `fit` leaves out,
            done before an interruption.
        save_on_signals: the signals that save and stop; () for none.
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True, steps_done=0,
                 save_on_signals=(signal.SIGTERM, signal.SIGINT)):
        super().__init__(backup_dir, save_freq, double_checkpoint, delete_checkpoint)
        self.steps_done = int(steps_done)
        self.save_on_signals = tuple(save_on_signals)
        self._signal, self._handlers, self._steps_in_epoch = None, {}, 0

    @staticmethod
    def position(backup_dir):
        """`(epoch, steps done in it)` where the backup in `backup_dir` stands; None when there is none."""
        path = os.path.join(backup_dir, "training_metadata.json")
        try:
            with open(path) as f:
                saved = json.load(f)
            return int(saved["epoch"]), int(saved.get("batch", 0))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def on_train_begin(self, logs=None):
        self._signal = None
        self._install_handlers()
        if not os.path.exists(self.backup_dir):  # nothing to restore: no copy of the weights needed
            return super().on_train_begin(logs)
        variables = list(self.model.variables)
        before = [keras.ops.convert_to_numpy(v) for v in variables]
        try:
            super().on_train_begin(logs)
            self._restore_random_streams()
        except Exception as error:  # any failure to read the backup: h5py's, Keras' or JSON's
            for variable, value in zip(variables, before):
                variable.assign(value)
            self.model._initial_epoch = 0
            aside = f"{self.backup_dir.rstrip(os.sep)}.damaged"
            if os.path.exists(aside):
                import shutil

                shutil.rmtree(aside)
            os.replace(self.backup_dir, aside)
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            print(f"keras_ace: the backup {self.backup_dir} could not be loaded ({reason}); set aside as {aside}, "
                  "training starts afresh", file=sys.stderr, flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch
        # A resumed epoch's data starts after the steps done before the interruption.
        self._steps_in_epoch = self.steps_done if epoch == getattr(self.model, "_initial_epoch", None) else 0

    def on_train_batch_end(self, batch, logs=None):
        self._steps_in_epoch += 1
        super().on_train_batch_end(batch, logs)
        if self._signal is not None:
            self._save_model()
            self._stop(f"epoch {self._current_epoch + 1}, step {self._steps_in_epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self._steps_in_epoch = 0
        super().on_epoch_end(epoch, logs)
        if self._signal is not None:  # it came during validation: the epoch's backup is saved
            if self.save_freq != "epoch":  # Keras saved only by steps
                self._save_model()
            self._stop(f"the end of epoch {epoch + 1}")

    def on_train_end(self, logs=None):
        self.release_signals()
        super().on_train_end(logs)

    def _stop(self, where):
        name = signal.Signals(self._signal).name
        self.release_signals()
        raise TrainingInterrupted(
            f"{name}: stopped at {where} with a backup in {self.backup_dir}; run the same command again to go on from there"
        )

    def _restore_random_streams(self):
        with open(self._training_metadata_path) as f:
            saved = json.load(f).get("random_streams")
        streams = random_streams(self.model)
        if saved is not None and len(saved) == len(streams):
            for variable, value in zip(streams, saved):
                variable.assign(np.asarray(value, variable.dtype))

    def _install_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return  # Python delivers signals to the main thread only

        def note(signum, frame):
            if self._signal is not None:  # the second signal: stop now
                self.release_signals()
                raise KeyboardInterrupt
            self._signal = signum
            print(f"keras_ace: {signal.Signals(signum).name} received; saving a backup when this step ends",
                  file=sys.stderr, flush=True)

        for signum in self.save_on_signals:
            self._handlers[signum] = signal.signal(signum, note)

    def release_signals(self):
        """Hands SIGTERM and SIGINT back to the handlers they had before `fit` (`fit` calls it however it ends)."""
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        partial_weights = os.path.join(self.backup_dir, "partial.weights.h5")  # Keras wants the .weights.h5 suffix
        partial_metadata = f"{self._training_metadata_path}.partial"
        try:
            self.model.save_weights(filepath=partial_weights, overwrite=True)
            # The random streams (dropout, samplers) too: Keras saves no `SeedGenerator` state with the weights.
            streams = [keras.ops.convert_to_numpy(v).tolist() for v in random_streams(self.model)]
            with open(partial_metadata, "w") as f:
                json.dump({"epoch": self._current_epoch, "batch": self._steps_in_epoch, "random_streams": streams}, f)
            os.replace(partial_weights, self._weights_path)
            os.replace(partial_metadata, self._training_metadata_path)
        finally:
            for path in (partial_weights, partial_metadata):
                if os.path.exists(path):
                    os.remove(path)
