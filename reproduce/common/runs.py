"""Training a figure panel with resume (or on to more epochs), refusing a folder trained with other settings."""

import dataclasses
import json
import math
import os
import shutil
import time

import keras
import numpy as np

from data_tools import files
from data_tools import tfds_data
from keras_ace import distributed
from keras_ace.backend_ops import distribution_scope
from keras_ace.datasets import get_dataset
from keras_ace.models.generation import FRAME_PRIOR_IMAGES
from keras_ace.models.presets import PRESETS
from keras_ace.training import BackupAndRestore
from keras_ace.training import StopOnSkippedStep
from keras_ace.training import TrainingConfig
from keras_ace.training import build_preset
from common.config import LAYOUT_VERSION
from common.config import json_default
from common.config import load_split
from common.config import write_json


class TrainingStopped(RuntimeError):
    """A figure run stopped on a non-finite step; its message says where."""


class NoRoomError(RuntimeError):
    """The output folder has too little free space for what a panel will write."""


def check_room(model, preset, folder):
    """Refuses to train `preset` into `folder` when the disk cannot hold what it writes.

    Training writes the model twice (its backup, then the finished `.keras`), each with
    the optimizer's two Adam moments: about 2 x 3 x 4 bytes per parameter.
    """
    needed = 2 * 3 * 4 * model.count_params()
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise NoRoomError(
            f"{folder} has {free / 2**20:,.0f} MiB free; training {preset} writes about {needed / 2**20:,.0f} MiB "
            "(its backup and the finished model); free some space or choose another --output-dir"
        )


def train_panel(preset, config, verbose=2):
    """Trains one preset (or loads it when its `.keras` file exists); resumes after interruption.

    The model is saved as `<output_dir>/<preset>.keras`; while training, a
    `BackupAndRestore` folder `<output_dir>/backup_<preset>` (written at each epoch's
    end, every `config.backup_every` steps and on SIGTERM or SIGINT) lets a rerun go on
    from the step it holds, as if never stopped (`EpochBatches`). A saved model trained for fewer epochs, with
    otherwise the same settings, is trained on to `config.epochs`: its optimizer
    state and learning-rate decay carry on, its history and wall time grow.
    """
    os.makedirs(config.output_dir, exist_ok=True)
    path = os.path.join(config.output_dir, f"{preset}.keras")
    dataset = PRESETS[preset]["dataset"]
    config = config.for_dataset(dataset)
    settings = check_settings(preset, config)
    settings_path = os.path.join(config.output_dir, f"{preset}.settings.json")
    earlier = recorded_settings(preset, config.output_dir)
    if os.path.exists(path) and earlier == settings:
        return files.load_model(path)
    lengthened = os.path.exists(path) and shorter_run(earlier, settings)
    backup = os.path.join(config.output_dir, f"backup_{preset}")
    history = os.path.join(config.output_dir, f"history_{preset}.csv")
    if not lengthened:
        if not os.path.exists(backup) and os.path.exists(history):
            os.remove(history)  # a fresh start: the old history belongs to no model here
        write_json(settings, settings_path)
    data = TrainingData.for_panel(dataset, config)
    x_test, y_test = load_split(dataset, "test", config.test_size, config.data_dir)
    training = TrainingConfig.for_dataset(dataset, steps_per_epoch=data.steps_per_epoch())
    keras.utils.set_random_seed(config.seed)
    if lengthened:
        with distribution_scope(config.distribution):
            model = files.load_model(path)
        print(f"Training {preset} on {data.described()} from epoch {earlier['epochs']} to {config.epochs}", flush=True)
    else:
        model = build_preset(preset, training=training, distribution=config.distribution, seed=config.seed, **config.overrides)
        print(f"Training {preset} on {data.described()} for {config.epochs} epochs", flush=True)
    check_room(model, preset, config.output_dir)
    stop = StopOnSkippedStep()
    clock = TrainingClock(os.path.join(config.output_dir, f"{preset}.training.json"), resumed=lengthened or os.path.exists(backup))
    first_epoch = earlier["epochs"] if lengthened else 0
    # Where an interrupted run stopped: an epoch part-way is finished first, from the step it stopped at.
    epoch, steps_done = BackupAndRestore.position(backup) or (first_epoch, 0)
    if not data.resumes_within_epochs():
        steps_done = 0  # the epoch is trained again from its first step, as Keras' backup does
    spans = [(epoch, epoch + 1, steps_done), (epoch + 1, config.epochs, 0)] if steps_done else [(epoch, config.epochs, 0)]
    for start, end, skip in spans:  # (first epoch, end epoch, steps of the first already done)
        if start >= end:
            continue
        inputs, following = data.fit_inputs(start, skip)
        model.fit(
            **inputs,
            epochs=end,
            initial_epoch=start,
            validation_data=(x_test, y_test),
            callbacks=[
                *following,
                BackupAndRestore(backup, save_freq=config.backup_every or "epoch", steps_done=skip),
                HistoryFile(history),
                clock,
                stop,
            ],
            verbose=verbose,
        )
        if stop.stopped_at is not None:
            break
    if stop.stopped_at is not None:
        raise TrainingStopped(f"{preset}: {stop.message()}")
    data.after_fit(model)
    files.save_model(model, path)
    if lengthened:
        write_json(settings, settings_path)  # only now: until saved, the model on disk is the shorter one
    shutil.rmtree(backup, ignore_errors=True)
    return model


class TrainingData:
    """A panel's training images: NumPy arrays, or with `--tfds-dir` this process's tensorflow-datasets shard.

    The choice is made once, by `for_panel`; `train_panel` asks only for what `fit` takes,
    the steps of an epoch, a description, and what to do after `fit`.
    """

    @staticmethod
    def for_panel(dataset, config):
        return ArrayData(dataset, config) if config.tfds_dir is None else ShardData(dataset, config)

    def __init__(self, dataset, config):
        self.dataset, self.config = dataset, config


class ArrayData(TrainingData):
    """The first `config.train_size` training images and labels, batched at the paper's 250 in an order drawn from the seed."""

    def __init__(self, dataset, config):
        super().__init__(dataset, config)
        self.x, self.y = load_split(dataset, "train", config.train_size, config.data_dir)

    def fit_inputs(self, epoch=0, steps_done=0):
        """`fit`'s data arguments and the callbacks they need."""
        if distributed.process_count() > 1:  # `fit` shares whole arrays out among the processes
            return dict(x=self.x, y=self.y, batch_size=TrainingConfig.batch_size), []
        batches = EpochBatches(self.x, self.y, TrainingConfig.batch_size, self.config.seed, epoch, steps_done)
        return dict(x=batches, shuffle=False), [EpochBatches.Follow(batches)]

    def resumes_within_epochs(self):
        return distributed.process_count() == 1

    def steps_per_epoch(self):
        return math.ceil(len(self.x) / TrainingConfig.batch_size)

    def described(self):
        return f"{len(self.x)} images"

    def after_fit(self, model):
        """The frame prior fitted to the first training images, as `fit` fits it to arrays."""
        if model.symmetry is not None:
            model.fit_frame_prior(self.x[:FRAME_PRIOR_IMAGES])


class EpochBatches(keras.utils.PyDataset):
    """Arrays in batches, each epoch in its own order drawn from `(seed, epoch)`: the same steps whether or not the run was interrupted.

    `epoch`: the epoch of the first pass; `steps_done`: its steps to leave out (done
    before an interruption), so a `fit` over it trains that one epoch. `fit` must not
    shuffle it, and tells it each epoch by the `EpochBatches.Follow` callback.
    """

    def __init__(self, x, y, batch_size, seed, epoch=0, steps_done=0):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed = x, y, batch_size, seed
        self.epoch, self.steps_done = epoch, steps_done
        self.steps_per_epoch = math.ceil(len(x) / batch_size)
        self._orders = {}

    def __len__(self):
        return self.steps_per_epoch - self.steps_done

    def __getitem__(self, index):
        if self.epoch not in self._orders:
            self._orders = {self.epoch: np.random.default_rng([self.seed, self.epoch]).permutation(len(self.x))}
        start = (index + self.steps_done) * self.batch_size
        rows = np.sort(self._orders[self.epoch][start : start + self.batch_size])
        return self.x[rows], self.y[rows]

    class Follow(keras.callbacks.Callback):
        """Tells the batches which epoch `fit` is in (Keras calls a `PyDataset`'s `on_epoch_end` once more, for its first look)."""

        def __init__(self, batches):
            super().__init__()
            self.batches = batches

        def on_epoch_begin(self, epoch, logs=None):
            self.batches.epoch = epoch

class ShardData(TrainingData):
    """This process's shard of a prepared tensorflow-datasets split, already batched (`data_tools.tfds_data`)."""

    def __init__(self, dataset, config):
        super().__init__(dataset, config)
        split = "train" if config.train_size is None else f"train[:{config.train_size}]"
        self.shard = tfds_data.load_shard(dataset, split, config.tfds_dir, TrainingConfig.batch_size, shuffle_seed=config.seed)

    def fit_inputs(self, epoch=0, steps_done=0):
        """`fit`'s data arguments and the callbacks they need."""
        return dict(x=self.shard), []

    def resumes_within_epochs(self):
        return False

    def steps_per_epoch(self):
        """The whole global batches of the split (every process takes as many)."""
        images = tfds_data.num_examples(self.dataset, "train", self.config.tfds_dir)
        return max(1, min(images, self.config.train_size or images) // TrainingConfig.batch_size)

    def described(self):
        return (f"this process's TFDS shard ({self.steps_per_epoch()} global batches of {TrainingConfig.batch_size} "
                "an epoch)")

    def after_fit(self, model):
        """The frame prior fitted again to the first images of the split, the same in every process (not the shard's)."""
        if model.symmetry is not None:
            model.fit_frame_prior(tfds_data.first_images(self.dataset, "train", self.config.tfds_dir, FRAME_PRIOR_IMAGES))


def train_panels_over_processes(panels, config):
    """`--distribute`: every process trains each panel with the others; process 0 goes on alone.

    All processes train data-parallel over the devices of all of them (the same global
    batches as one process). Process 0 writes the run's files; the others keep theirs
    (backups, for resuming) in `<output_dir>/process_<i>/`. After training the models
    are loaded again outside the distribution, so that process 0 measures and draws on
    its own devices; the other processes return None and wait (`distributed.wait_for_all`).
    """
    index = distributed.process_index()
    own = config if index == 0 else dataclasses.replace(config, output_dir=os.path.join(config.output_dir, f"process_{index}"))
    for preset in panels:
        train_panel(preset, dataclasses.replace(own, distribution="data_parallel"), verbose=2 if index == 0 else 0)
    keras.distribution.set_distribution(None)
    if index != 0:
        return None
    return [files.load_model(os.path.join(config.output_dir, f"{preset}.keras")) for preset in panels]


class HistoryFile(keras.callbacks.Callback):
    """Each finished epoch's logs as a row of a CSV file (Keras' `CSVLogger` columns), rewritten atomically.

    `CSVLogger` appends in place, so a run killed while writing leaves half a row for
    the resumed run to append after. Here the rows of earlier epochs are kept (a resumed
    or lengthened run continues the file) and an epoch run again replaces its row.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        import csv

        rows = [row for row in read_history_rows(self.path) if int(row["epoch"]) < epoch]
        rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        columns = ["epoch"] + sorted({k for row in rows for k in row} - {"epoch"})
        with files.atomic_write(self.path, "w") as f:
            writer = csv.DictWriter(f, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)


def read_history_rows(path):
    """The rows of a history CSV as dicts of floats (epoch an int); none when there is no file."""
    import csv

    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    # A row cut short (a CSVLogger killed while writing, before this class) holds None or "": left out.
    return [
        {k: int(v) if k == "epoch" else float(v) for k, v in row.items() if v not in (None, "")}
        for row in rows
        if None not in row.values() and row.get("epoch") not in (None, "")
    ]


class TrainingClock(keras.callbacks.Callback):
    """Writes the finished epochs and their wall time to a JSON file, summed across resumes."""

    def __init__(self, path, resumed):
        super().__init__()
        self.path = path
        self.record = files.read_json(path) if resumed and os.path.exists(path) else {"epoch_wall_times_s": []}

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        times = self.record["epoch_wall_times_s"][:epoch] + [time.time() - self._start]
        self.record = {"epochs": len(times), "wall_time_s": float(sum(times)), "epoch_wall_times_s": times}
        write_json(self.record, self.path)


def training_record(preset, output_dir):
    """What `TrainingClock` wrote for a panel: epochs and wall time (empty if not recorded)."""
    path = os.path.join(output_dir, f"{preset}.training.json")
    return files.read_json(path) if os.path.exists(path) else {}


class StaleModelError(ValueError):
    """A saved model or backup in the output folder was trained with other settings."""


def panel_settings(preset, config):
    """What decides a panel's weights, as JSON data (`<preset>.settings.json`)."""
    return json.loads(json.dumps(
        {"preset": preset, "epochs": config.epochs, "train_size": config.train_size, "seed": config.seed,
         "overrides": config.overrides, "keras_ace_layout": LAYOUT_VERSION},
        default=json_default,
    ))


def recorded_settings(preset, folder):
    """The settings `<preset>.settings.json` in `folder` records (None when there is none)."""
    path = os.path.join(folder, f"{preset}.settings.json")
    return files.read_json(path) if os.path.exists(path) else None


def check_settings(preset, config):
    """The settings that decide a panel's weights; refuses a folder trained with others.

    A finished `<preset>.keras` or a `backup_<preset>` folder is reused only when
    `<preset>.settings.json` beside it records the same settings, or the same
    but fewer epochs (`train_panel` then trains it on).
    """
    settings = panel_settings(preset, config)
    folder = config.output_dir
    existing = [p for p in (os.path.join(folder, f"{preset}.keras"), os.path.join(folder, f"backup_{preset}")) if os.path.exists(p)]
    if existing:
        old = recorded_settings(preset, folder)
        if old != settings and not shorter_run(old, settings):
            differences = "no record of its settings" if old is None else ", ".join(
                f"{k} {old.get(k)!r} (now {v!r})" for k, v in settings.items() if old.get(k) != v
            )
            raise StaleModelError(
                f"{existing[0]} was trained with other settings: {differences}. Delete it, or choose another "
                f"--output-dir, to train {preset} afresh (more epochs than before would train it on)."
            )
    return settings


def shorter_run(old, settings):
    """Whether the recorded settings `old` are `settings` with fewer epochs: a run to train on."""
    return old is not None and old["epochs"] < settings["epochs"] and {**old, "epochs": settings["epochs"]} == settings


def trained_with(preset, config):
    """Whether the panel's model in the output folder was trained with `config`'s settings."""
    recorded = recorded_settings(preset, config.output_dir)
    return recorded is not None and recorded == panel_settings(preset, config.for_dataset(PRESETS[preset]["dataset"]))


def load_panel(preset, directory):
    path = os.path.join(directory, f"{preset}.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--from-models: no model {path}; train it first (without --from-models).")
    return files.load_model(path)


def panel_steps(preset, config):
    """Training steps of a panel: epochs x batches per epoch."""
    resolved = config.for_dataset(PRESETS[preset]["dataset"])
    size = resolved.train_size or get_dataset(PRESETS[preset]["dataset"]).train_size
    return resolved.epochs * math.ceil(size / TrainingConfig.batch_size)
