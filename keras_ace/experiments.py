"""What the `reproduce/` scripts share: train a panel with resume, judge samples, draw grids.

The scripts stay thin (argument parsing and layout); everything they compute lives
here, so that it can be imported and tested.
"""

import dataclasses
import json
import math
import os
import shutil

import keras
import numpy as np

from data_tools.pictures import mosaic
from data_tools.pictures import save_annotated_png
from data_tools.pictures import save_png
from data_tools.pictures import side_by_side
from keras_ace.models.presets import PRESETS
from keras_ace.training import StopOnSkippedStep
from keras_ace.training import TRAIN_SIZES
from keras_ace.training import TrainingConfig
from keras_ace.training import from_preset

# Appendix A trains with batches of 250; the paper gives no epoch count.
DEFAULT_EPOCHS = 50
# Quick mode: a CPU run of minutes. The MNIST family keeps Appendix A's sizes and
# spends the budget on steps: narrowed layers trained for a few hundred steps draw
# blobs, while 240 full-size steps on RTS MNIST already draw clean digits
# (docs/results.md). On a 2-core CPU a full-size step takes about 0.65 s (MNIST),
# 1.35 s (RTS) and 2.75 s (TC), so the budget goes to MNIST 120 steps and RTS 240 (one
# epoch on the first 30,000 / 60,000 training images); TC MNIST, which 80 steps leave
# at 86 % test error, is drawn in full mode only.
# CIFAR10 keeps narrowed layers on a subset: at full size a CPU cannot train it far
# in minutes either way.
QUICK = {
    "train_size": None,  # per data set: QUICK_TRAIN_SIZES
    "test_size": 2000,
    "epochs": None,  # per data set: QUICK_EPOCHS
    "samples_per_class": 100,
    "judge_epochs": 2,
    "judge_train_size": 12000,
    "overrides": {},
}
QUICK_EPOCHS = {"mnist": 1, "rts_mnist": 1, "tc_mnist": 1, "cifar10": 5}
QUICK_SKIPPED_DATASETS = ("tc_mnist",)
QUICK_TRAIN_SIZES = {"mnist": 30000, "rts_mnist": 60000, "tc_mnist": 20000, "cifar10": 12000}
QUICK_CIFAR10 = {
    "overrides": {
        "encoder_units": (256, 256),
        "decoder_units": 256,
        "classifier_filters": (16, 32, 64),
        "classifier_units": 128,
    },
}
FULL = {
    "train_size": None,
    "test_size": None,
    "epochs": DEFAULT_EPOCHS,
    "samples_per_class": 1000,
    "judge_epochs": 5,
    "judge_train_size": None,
    "overrides": {},
}
# Bump when a change makes earlier saved panels unfit to reuse (checked by check_settings).
LAYOUT_VERSION = 2


@dataclasses.dataclass
class RunConfig:
    """The resolved settings of one figure run (written to `config.json`)."""

    figure: str
    output_dir: str
    quick: bool = False
    epochs: int = DEFAULT_EPOCHS  # or {data set: epochs}; None: the mode's default (quick: QUICK_EPOCHS)
    seed: int = 0
    data_dir: str = None
    train_size: int = None
    test_size: int = None
    samples_per_class: int = 1000
    judge_epochs: int = 5
    judge_train_size: int = None
    overrides: dict = dataclasses.field(default_factory=dict)
    distribution: str = None
    from_models: str = None
    panels: tuple = None  # None: every panel of the figure

    def for_dataset(self, dataset):
        """The settings one panel trains with: per-data-set epochs (and quick mode's sizes) resolved."""
        epochs = self.epochs.get(dataset) if isinstance(self.epochs, dict) else self.epochs
        if not self.quick:
            return dataclasses.replace(self, epochs=epochs or DEFAULT_EPOCHS)
        changes = {"epochs": epochs or QUICK_EPOCHS[dataset], "train_size": self.train_size or QUICK_TRAIN_SIZES[dataset]}
        if dataset == "cifar10":
            changes["overrides"] = {**QUICK_CIFAR10["overrides"], **self.overrides}
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_args(cls, figure, args):
        mode = dict(QUICK if args.quick else FULL)
        for key in ("epochs", "train_size", "test_size", "samples_per_class", "judge_epochs", "judge_train_size"):
            if getattr(args, key, None) is not None:
                mode[key] = getattr(args, key)
        overrides = {**mode.pop("overrides"), **json.loads(args.overrides or "{}")}
        return cls(
            figure=figure,
            output_dir=args.output_dir or os.path.join("results", figure),
            quick=args.quick,
            seed=args.seed,
            data_dir=args.data_dir,
            overrides=overrides,
            distribution=args.distribution,
            from_models=args.from_models,
            panels=tuple(args.panels) if args.panels else None,
            **mode,
        )


def epochs_argument(text):
    """`--epochs`: `8` for every panel, or `mnist=4,rts_mnist=8` per data set (the others: the default)."""
    import argparse

    from data_tools.datasets import DATASETS

    try:
        if "=" not in text:
            return int(text)
        epochs = {name.strip(): int(n) for name, n in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or DATASET=N,... Received: {text!r}")
    unknown = set(epochs) - set(DATASETS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown data set {sorted(unknown)}. Expected some of {DATASETS}")
    return epochs


def add_arguments(parser, figure, panels=()):
    """The command-line flags every figure script shares (`panels`: the figure's)."""
    parser.add_argument("--quick", action="store_true", help="a CPU run of minutes (Appendix A sizes, few epochs)")
    parser.add_argument("--epochs", type=epochs_argument, metavar="N|DATASET=N,...",
                        help=f"training epochs, for every panel or per data set, e.g. mnist=4,rts_mnist=8 "
                        f"(default {DEFAULT_EPOCHS}, quick {QUICK_EPOCHS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", help=f"default results/{figure}/")
    parser.add_argument("--data-dir", help="folder with mnist.npz / cifar10-jpeg.zip (else KERAS_ACE_DATA, cache, download)")
    parser.add_argument("--train-size", type=int, help="use the first N training images")
    parser.add_argument("--test-size", type=int, help="use the first N test images")
    parser.add_argument("--samples-per-class", type=int, help="samples judged per class (default 1000)")
    parser.add_argument("--judge-epochs", type=int, help="epochs of the independent judge CNN (default 5, quick 2)")
    parser.add_argument("--judge-train-size", type=int, help="training images of the judge CNN (default all, quick 12000)")
    parser.add_argument("--overrides", help='JSON of ACE arguments, e.g. \'{"decoder_units": 512}\'')
    parser.add_argument("--distribution", choices=["data_parallel"], help="train on every local device")
    parser.add_argument("--from-models", metavar="DIR", help="redraw the figure from the .keras models in DIR, no training")
    parser.add_argument("--panels", nargs="+", choices=panels or None, metavar="PANEL",
                        help=f"train and draw only these panels (default all: {' '.join(panels)}); "
                        "metrics.json keeps the other panels' numbers")
    return parser


class TrainingStopped(RuntimeError):
    """A figure run stopped on a non-finite step; its message says where."""


def load_split(dataset, split, size, data_dir):
    from data_tools import load_dataset

    x, y = load_dataset(dataset, split, data_dir)
    return (x[:size], y[:size]) if size else (x, y)


def train_panel(preset, config, verbose=2):
    """Trains one preset (or loads it when its `.keras` file exists); resumes after interruption.

    The model is saved as `<output_dir>/<preset>.keras`; while training, a
    `BackupAndRestore` folder `<output_dir>/backup_<preset>` lets a rerun continue
    from the last finished epoch.
    """
    os.makedirs(config.output_dir, exist_ok=True)
    path = os.path.join(config.output_dir, f"{preset}.keras")
    dataset = PRESETS[preset]["dataset"]
    config = config.for_dataset(dataset)
    settings = check_settings(preset, config)
    if os.path.exists(path):
        return keras.saving.load_model(path)
    backup = os.path.join(config.output_dir, f"backup_{preset}")
    history = os.path.join(config.output_dir, f"history_{preset}.csv")
    if not os.path.exists(backup) and os.path.exists(history):
        os.remove(history)  # a fresh start: the old history belongs to no model here
    write_json(settings, os.path.join(config.output_dir, f"{preset}.settings.json"))
    x, y = load_split(dataset, "train", config.train_size, config.data_dir)
    x_test, y_test = load_split(dataset, "test", config.test_size, config.data_dir)
    training = TrainingConfig.for_dataset(dataset, steps_per_epoch=math.ceil(len(x) / TrainingConfig.batch_size))
    keras.utils.set_random_seed(config.seed)
    model = from_preset(preset, training=training, distribution=config.distribution, seed=config.seed, **config.overrides)
    print(f"Training {preset} on {len(x)} images for {config.epochs} epochs", flush=True)
    stop = StopOnSkippedStep()
    clock = TrainingClock(os.path.join(config.output_dir, f"{preset}.training.json"), resumed=os.path.exists(backup))
    model.fit(
        x,
        y,
        batch_size=training.batch_size,
        epochs=config.epochs,
        validation_data=(x_test, y_test),
        callbacks=[
            keras.callbacks.BackupAndRestore(backup),
            # Appends, so that a resumed run keeps the epochs before the interruption.
            keras.callbacks.CSVLogger(history, append=True),
            clock,
            stop,
        ],
        verbose=verbose,
    )
    if stop.stopped_at is not None:
        raise TrainingStopped(f"{preset}: {stop.message()}")
    model.save(path)
    shutil.rmtree(backup, ignore_errors=True)
    return model


class TrainingClock(keras.callbacks.Callback):
    """Writes the finished epochs and their wall time to a JSON file, summed across resumes."""

    def __init__(self, path, resumed):
        super().__init__()
        self.path = path
        self.record = json.load(open(path)) if resumed and os.path.exists(path) else {"epoch_wall_times_s": []}

    def on_epoch_begin(self, epoch, logs=None):
        import time

        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        import time

        times = self.record["epoch_wall_times_s"][:epoch] + [time.time() - self._start]
        self.record = {"epochs": len(times), "wall_time_s": float(sum(times)), "epoch_wall_times_s": times}
        write_json(self.record, self.path)


def training_record(preset, output_dir):
    """What `TrainingClock` wrote for a panel: epochs and wall time (empty if not recorded)."""
    path = os.path.join(output_dir, f"{preset}.training.json")
    return json.load(open(path)) if os.path.exists(path) else {}


class StaleModelError(ValueError):
    """A saved model or backup in the output folder was trained with other settings."""


def panel_settings(preset, config):
    """What decides a panel's weights, as JSON data (`<preset>.settings.json`)."""
    return json.loads(json.dumps(
        {"preset": preset, "epochs": config.epochs, "train_size": config.train_size, "seed": config.seed,
         "overrides": config.overrides, "keras_ace_layout": LAYOUT_VERSION},
        default=lambda o: list(o) if isinstance(o, tuple) else str(o),
    ))


def check_settings(preset, config):
    """The settings that decide a panel's weights; refuses a folder trained with others.

    A finished `<preset>.keras` or a `backup_<preset>` folder is reused only when
    `<preset>.settings.json` beside it records the same settings.
    """
    settings = panel_settings(preset, config)
    folder = config.output_dir
    recorded = os.path.join(folder, f"{preset}.settings.json")
    existing = [p for p in (os.path.join(folder, f"{preset}.keras"), os.path.join(folder, f"backup_{preset}")) if os.path.exists(p)]
    if existing:
        old = json.load(open(recorded)) if os.path.exists(recorded) else None
        if old != settings:
            differences = "no record of its settings" if old is None else ", ".join(
                f"{k} {old.get(k)!r} (now {v!r})" for k, v in settings.items() if old.get(k) != v
            )
            raise StaleModelError(
                f"{existing[0]} was trained with other settings: {differences}. Delete it, or choose another "
                f"--output-dir, to train {preset} afresh."
            )
    return settings


def trained_with(preset, config):
    """Whether the panel's model in the output folder was trained with `config`'s settings."""
    recorded = os.path.join(config.output_dir, f"{preset}.settings.json")
    dataset_config = config.for_dataset(PRESETS[preset]["dataset"])
    return os.path.exists(recorded) and json.load(open(recorded)) == panel_settings(preset, dataset_config)


def load_panel(preset, directory):
    path = os.path.join(directory, f"{preset}.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--from-models: no model {path}; train it first (without --from-models).")
    return keras.saving.load_model(path)


# ------------------------------------------------------------------ the independent judge


def judge_network(image_shape, num_classes=10):
    """A plain CNN, independent of the ACE, that judges whether samples look like their class."""
    return keras.Sequential(
        [
            keras.Input(image_shape),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalMaxPooling2D(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(num_classes, activation="softmax"),
        ],
        name="judge",
    )


def centred_on_canvas(images, canvas):
    """Undistorted 28x28 digits placed at the centre of a `canvas` x `canvas` frame."""
    pad = (canvas - images.shape[1]) // 2
    rest = canvas - images.shape[1] - pad
    return np.pad(images, ((0, 0), (pad, rest), (pad, rest), (0, 0)))


def train_judge(dataset, config, canonical=False):
    """The judge CNN for `dataset`, trained (once, then cached in the output folder).

    `canonical=False`: trained on the real training images, distorted as they are.
    `canonical=True`: trained on undistorted MNIST digits at the canvas centre, to judge
    canonical-frame outputs. Returns `(model, test_accuracy)`.
    """
    # Undistorted MNIST at the centre of MNIST's own canvas is MNIST: one judge serves both.
    canonical = canonical and dataset != "mnist"
    name = f"judge_{dataset}{'_canonical' if canonical else ''}"
    path = os.path.join(config.output_dir, f"{name}.keras")
    source = "mnist" if canonical else dataset
    # Undistorted digits go to the centre of the data set's canvas for the canonical judge.
    place = (lambda x: centred_on_canvas(x, PRESETS[f"fig1_{dataset}"]["image_shape"][0])) if canonical else (lambda x: x)
    x_test, y_test = load_split(source, "test", config.test_size, config.data_dir)
    x_test = place(x_test)
    if os.path.exists(path):
        judge = keras.saving.load_model(path)
    else:
        # The training split is read only when the judge is trained, not when it is reused.
        x, y = load_split(source, "train", config.judge_train_size, config.data_dir)
        x = place(x)
        keras.utils.set_random_seed(config.seed + 1)
        judge = judge_network(x.shape[1:])
        judge.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        print(f"Training the judge {name} on {len(x)} images", flush=True)
        judge.fit(x, y, batch_size=128, epochs=config.judge_epochs, verbose=2)
        judge.save(path)
    accuracy = float(np.mean(np.argmax(judge.predict(x_test, batch_size=500, verbose=0), -1) == y_test))
    return judge, accuracy


def judged_accuracy(judge, images, class_id):
    return float(np.mean(np.argmax(judge.predict(images, batch_size=500, verbose=0), -1) == class_id))


def panel_metrics(model, preset, config, grid_values):
    """Test error, NLL bound and sample plausibility of one trained panel (`metrics.json`).

    `grid_values`: the (K, G, latent_dim) latent values of the panel's drawn grid, or None.
    """
    dataset = PRESETS[preset]["dataset"]
    x_test, y_test = load_split(dataset, "test", config.test_size, config.data_dir)
    results = model.evaluate(x_test, y_test, batch_size=250, verbose=0, return_dict=True)
    judge, judge_accuracy = train_judge(dataset, config)
    per_class = [
        judged_accuracy(judge, model.sample(c, config.samples_per_class, seed=config.seed + c), c)
        for c in range(model.num_classes)
    ]
    metrics = {
        "test_classification_error": float(results["classification_error"]),
        "test_nll_bound_nats": float(results["nll_bound"]),
        "test_reconstruction_nats": float(results["reconstruction"]),
        "sample_plausibility": float(np.mean(per_class)),
        "sample_plausibility_per_class": per_class,
        "judge_test_accuracy": judge_accuracy,
        "test_images": int(len(x_test)),
        "training_steps": panel_steps(preset, config),
        **{f"training_{k}": v for k, v in training_record(preset, config.output_dir).items() if k != "epoch_wall_times_s"},
    }
    if dataset == "cifar10":
        metrics["horse_grid_background_saturation"] = background_saturation(centre_of_2d_grid(model, HORSE))
        if model.symmetry is not None:
            metrics["frame_spread"] = frame_spread(model, x_test)
        return metrics
    if grid_values is None:
        return metrics
    # The drawn grid, and the paper's [-4, 4] grid where quick mode draws another.
    grids = {"grid": grid_values, "prior_grid": np.repeat(MANIFOLD_GRID[None], model.num_classes, 0)}
    if model.symmetry is not None:
        grid_judge, grid_accuracy = train_judge(dataset, config, canonical=True)
        metrics["canonical_judge_test_accuracy"] = grid_accuracy
    else:
        grid_judge = judge  # without symmetry statistics the grid is in the observation frame
    for name, values in grids.items():
        metrics[f"{name}_plausibility"] = float(
            np.mean([judged_accuracy(grid_judge, model.latent_grid(c, values[c]), c) for c in range(model.num_classes)])
        )
    if model.symmetry is not None:
        metrics["canonical_grid_plausibility"] = metrics["grid_plausibility"]
        if dataset in ("rts_mnist", "tc_mnist"):
            metrics["theta_truth_correlation"] = truth_correlation(model, dataset, config)
    metrics["grid_ranges"] = [[float(v[0, 0]), float(v[-1, 0])] for v in grid_values]
    return metrics


def learned_geometry(theta, image_size):
    """`keras_ace.layers.frame_geometry` of thetas, with the shift split into `shift_x` and `shift_y`."""
    from keras_ace.layers import frame_geometry

    g = frame_geometry(theta, image_size)
    return {"angle": g["angle"], "scale": g["scale"], "shift_x": g["shift"][:, 0], "shift_y": g["shift"][:, 1],
            "aspect": g["aspect"]}


# Test images on which the learned frames are compared with the ground truth.
TRUTH_IMAGES = 5000


def truth_correlation(model, dataset, config):
    """Pearson correlation of the frame the symmetry net infers with the data's ground truth.

    On the first `TRUTH_IMAGES` test images of RTS MNIST (shift x and y, angle, scale)
    or TC MNIST (the digit's position). The canonical frame is learned, so only the
    correlation means something, not the values: near 1 where the net undoes the
    distortion, near 0 where it ignores it.
    """
    from data_tools import load_dataset
    from data_tools.distortions import truth_geometry

    x, _, truth = load_dataset(dataset, "test", config.data_dir, return_truth=True)
    count = min(TRUTH_IMAGES, config.test_size or TRUTH_IMAGES)
    learned = learned_geometry(model.symmetry_statistics(x[:count])["theta"], model.image_shape[:2])
    true = truth_geometry(dataset, {k: v[:count] for k, v in truth.items()}, model.image_shape[0])
    return {k: float(np.corrcoef(learned[k], v)[0, 1]) for k, v in true.items()}


# Outer ring of pixels read as the background of a CIFAR-10 picture.
BACKGROUND_BORDER = 4


def background_saturation(images, border=BACKGROUND_BORDER):
    """Mean HSV saturation, (max - min) / max over RGB, of the outer `border` pixels of (..., H, W, 3) images.

    Figure 4's claim: colour statistics subdue the background of the decoded horses.
    """
    images = np.asarray(images, np.float32).reshape(-1, *np.shape(images)[-3:])
    ring = np.ones(images.shape[1:3], bool)
    ring[border:-border, border:-border] = False
    pixels = images[:, ring]  # (N, ring pixels, 3)
    brightest = pixels.max(-1)
    saturation = np.where(brightest > 0, (brightest - pixels.min(-1)) / np.maximum(brightest, 1e-6), 0.0)
    return float(saturation.mean())


def frame_spread(model, x):
    """Median and spread of the frames the symmetry net infers on images x (no ground truth: CIFAR-10).

    A median scale above 1 means the net zooms out: the object shrinks inside the
    canonical frame, with empty borders around it.
    """
    geometry = learned_geometry(model.symmetry_statistics(x[:TRUTH_IMAGES])["theta"], model.image_shape[:2])
    return {f"{k}_{stat}": float(f(v)) for k, v in geometry.items() for stat, f in (("median", np.median), ("std", np.std))}


# ------------------------------------------------------------------ pictures


def class_manifold(model, values):
    """One row per class of the class's decoder over its `values[c]` (G, latent_dim): (K, G, H, W, C)."""
    return np.stack([model.latent_grid(c, values[c]) for c in range(model.num_classes)])


def centre_of_2d_grid(model, class_id, size=30, extent=6.0, shown=7):
    """The central `shown` x `shown` part of a `size` x `size` grid over [-extent, extent]^2: (shown, shown, H, W, C)."""
    axis = np.linspace(-extent, extent, size)
    start = (size - shown) // 2
    axis = axis[start : start + shown]
    # Rows go up the grid as the second latent grows, as in the paper's pictures.
    values = np.asarray([[a, b] for b in axis[::-1] for a in axis], np.float32)
    return model.latent_grid(class_id, values).reshape(shown, shown, *model.image_shape)


CURVES = ("reconstruction", "generative", "classification", "classification_error")


def read_history(path):
    """A `CSVLogger` file as {column: float array}; empty when there is none."""
    import csv

    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.asarray([float(r[k]) for r in rows]) for k in (rows[0] if rows else {})}


def save_curves(panels, output_dir, path):
    """Per panel, the loss terms and the classification error against epochs, train and test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(panels), len(CURVES), figsize=(3.2 * len(CURVES), 2.4 * len(panels)), squeeze=False)
    for row, preset in zip(axes, panels):
        history = read_history(os.path.join(output_dir, f"history_{preset}.csv"))
        for axis, key in zip(row, CURVES):
            for prefix, label in (("", "train"), ("val_", "test")):
                if prefix + key in history:
                    axis.plot(history["epoch"] + 1, history[prefix + key], marker="o", label=label)
            axis.set_title(f"{preset}: {key}", fontsize=8)
            axis.set_xlabel("epoch", fontsize=8)
        row[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def write_json(data, path):
    with open(path, "w") as f:
        json.dump(data, f, indent=2, default=lambda o: list(o) if isinstance(o, tuple) else str(o))


# ------------------------------------------------------------------ whole figures

MANIFOLD_GRID = np.linspace(-4.0, 4.0, 20, dtype=np.float32)[:, None]  # Figs. 1-2: 20 values in [-4, 4]
HORSE = 7  # CIFAR10's horse class (Figs. 3-4)


# Quick mode draws each class over its own latent range: the central 96 % of the
# posterior means of the class's training images. After a few hundred steps each
# class's posterior sits on one side of zero (e.g. 1.5 +/- 0.6) and the decoder's other
# side is an untrained photographic negative; the paper's [-4, 4] assumes the
# aggregate posterior has reached the prior, which takes several epochs.
QUICK_RANGE_IMAGES = 2000
QUICK_RANGE_PERCENTILES = (2.0, 98.0)


def manifold_values(model, preset, config):
    """The (K, 20, 1) latent values of each class's row in Figures 1-2 (None for 2-D latents)."""
    if model.latent_dim != 1:
        return None
    if not config.quick:
        return np.repeat(MANIFOLD_GRID[None], model.num_classes, 0)
    x, y = load_split(PRESETS[preset]["dataset"], "train", QUICK_RANGE_IMAGES, config.data_dir)
    means = model.latent_means(x, y)[:, 0]
    rows = []
    for c in range(model.num_classes):
        low, high = np.percentile(means[y == c], QUICK_RANGE_PERCENTILES) if np.any(y == c) else (-4.0, 4.0)
        rows.append(np.linspace(low, high, len(MANIFOLD_GRID), dtype=np.float32)[:, None])
    return np.stack(rows)


def class_manifold_panels(models, grids):
    """Figs. 1-2: per panel, one row per class over its grid of 20 values."""
    return [mosaic(class_manifold(m, g)) for m, g in zip(models, grids)]


def horse_panels(models, grids=None):
    """Figs. 3-4: per panel, the central 7x7 of the horse class's 30x30 grid."""
    return [mosaic(centre_of_2d_grid(m, HORSE)) for m in models]


def panel_steps(preset, config):
    """Training steps of a panel: epochs x batches per epoch."""
    resolved = config.for_dataset(PRESETS[preset]["dataset"])
    size = resolved.train_size or TRAIN_SIZES[PRESETS[preset]["dataset"]]
    return resolved.epochs * math.ceil(size / TrainingConfig.batch_size)


def panel_title(preset, metrics):
    """One panel's caption: what it is and how its samples and grid were judged."""
    lines = [f"{preset}: test error {metrics['test_classification_error']:.1%}, "
             f"NLL bound {metrics['test_nll_bound_nats']:.0f} nats"]
    judged = f"samples judged {metrics['sample_plausibility']:.0%} (judge {metrics['judge_test_accuracy']:.0%})"
    if "grid_plausibility" in metrics:
        judged += f", grid {metrics['grid_plausibility']:.0%}"
    return "\n".join(lines + [judged])


def machine():
    import platform

    # keras.distribution lists devices only where it supports the backend.
    if keras.backend.backend() in ("jax", "tensorflow"):
        devices = [str(d) for d in keras.distribution.list_devices()]
    else:
        devices = ["(not listed by Keras for this backend)"]
    return {"backend": keras.backend.backend(), "devices": devices,
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}


def run_figure(config, panels, picture):
    """Trains (or loads) each panel, writes `<figure>.png`, `config.json` and `metrics.json`.

    With `config.from_models`, loads the panels from that folder and only redraws.
    """
    import time

    start = time.time()
    os.makedirs(config.output_dir, exist_ok=True)
    panels = [p for p in panels if config.panels is None or p in config.panels]
    skipped = [p for p in panels if config.quick and PRESETS[p]["dataset"] in QUICK_SKIPPED_DATASETS]
    panels = [p for p in panels if p not in skipped]
    if skipped:
        print(f"Quick mode leaves out {', '.join(skipped)} (full mode draws it).", flush=True)
    if config.from_models:
        models = [load_panel(p, config.from_models) for p in panels]
    else:
        models = [train_panel(p, config) for p in panels]
    png = os.path.join(config.output_dir, f"{config.figure}.png")
    grids = [manifold_values(m, p, config) for p, m in zip(panels, models)]
    pictures = picture(models, grids)
    save_png(side_by_side(pictures), png)
    print(f"Wrote {png}", flush=True)
    if config.from_models:
        return None
    metrics = {p: panel_metrics(m, p, config, g) for p, m, g in zip(panels, models, grids)}
    figure_metrics = os.path.join(config.output_dir, "metrics.json")
    if config.panels is not None and os.path.exists(figure_metrics):
        # The panels not trained now keep their numbers (their models are in this folder).
        earlier = json.load(open(figure_metrics))
        kept = {p: earlier[p] for p in earlier if p in PRESETS and p not in metrics and trained_with(p, config)}
        metrics = {**kept, **metrics}
    metrics["wall_time_s"] = time.time() - start
    caption = (f"{config.figure}{' quick mode' if config.quick else ''}: "
               + "; ".join(f"{p} {panel_steps(p, config)} steps" for p in panels)
               + f"; {metrics['wall_time_s'] / 60:.1f} min on {keras.backend.backend()}. Samples and grids judged by an "
               "independent CNN: the fraction recognised as their class (chance 10%).")
    if skipped:
        caption += f" Not in quick mode: {', '.join(skipped)}."
    if config.quick and any(g is not None for g in grids):
        caption += ("\nQuick mode: each row spans its class's own latent range (central 96% of its training "
                    "posterior means), not the paper's [-4, 4], which a few hundred steps do not yet fill.")
    annotated = os.path.join(config.output_dir, f"{config.figure}_annotated.png")
    save_annotated_png(pictures, [panel_title(p, metrics[p]) for p in panels], caption, annotated)
    metrics["machine"] = machine()
    write_json(dataclasses.asdict(config), os.path.join(config.output_dir, "config.json"))
    write_json(metrics, figure_metrics)
    save_curves(panels, config.output_dir, os.path.join(config.output_dir, "curves.png"))
    for p in panels:
        m = metrics[p]
        extra = f", grid plausibility {m['grid_plausibility']:.1%}" if "grid_plausibility" in m else ""
        print(f"{p} ({panel_steps(p, config)} steps): test error {m['test_classification_error']:.2%}, NLL bound {m['test_nll_bound_nats']:.1f} nats, "
              f"sample plausibility {m['sample_plausibility']:.1%} (judge {m['judge_test_accuracy']:.1%}){extra}")
    return metrics


def main(figure, panels, picture, description, argv=None):
    """The whole command line of a figure script."""
    import argparse

    from data_tools.sources import DataNotFoundError

    parser = add_arguments(argparse.ArgumentParser(description=description), figure, panels)
    config = RunConfig.from_args(figure, parser.parse_args(argv))
    try:
        run_figure(config, panels, picture)
    except (DataNotFoundError, StaleModelError, TrainingStopped, FileNotFoundError) as error:
        # Errors of the user's data, folders or run: one line, no traceback.
        parser.exit(2, f"{figure}: error: {error}\n")
    return 0


# ------------------------------------------------------------------ control (beyond the paper)

MOVES = ((-4, 0), (4, 0), (0, -4), (0, 4))  # pixels (dx, dy)
TURNS = (-30.0, 30.0)  # degrees, counter-clockwise
SCALES = (0.8, 1.25)
# Recolourings for RGB models: a red/blue swap and a desaturating mix.
RECOLOURS = (
    np.eye(3, dtype=np.float32)[[2, 1, 0]],
    np.full((3, 3), 0.2, np.float32) + 0.4 * np.eye(3, dtype=np.float32),
)
RANDOM_FRAMES = 3


def control_columns(model, x, seed):
    """The columns of the control picture, each (N, H, W, C), and their names."""
    columns = [("input", x), ("reconstruction", model.reconstruct(x))]
    columns += [(f"move {d}", model.control(x, translate=d)) for d in MOVES]
    columns += [(f"turn {a:+.0f}", model.control(x, rotate=a)) for a in TURNS]
    columns += [(f"scale {s}", model.control(x, scale=s)) for s in SCALES]
    if model.symmetry == "spatial_color":
        columns += [(f"recolour {i}", model.control(x, color=m)) for i, m in enumerate(RECOLOURS)]
    columns += [(f"random frame {i}", model.vary_symmetry(x, seed=seed + i)) for i in range(RANDOM_FRAMES)]
    return columns


def control_obedience(columns):
    """How well the requested changes were obeyed, measured on the pictures' moments."""
    from data_tools import moments

    by_name = dict(columns)
    base = by_name["reconstruction"]
    com = moments.centre_of_mass(base)
    shifts = [moments.centre_of_mass(by_name[f"move {d}"]) - com - np.asarray(d) for d in MOVES]
    turns = {
        f"{a:+.0f}": float(np.median(_wrap(moments.orientation(by_name[f'turn {a:+.0f}']) - moments.orientation(base))))
        for a in TURNS
    }
    scales = {f"{s}": float(np.median(moments.spread(by_name[f"scale {s}"]) / moments.spread(base))) for s in SCALES}
    return {
        "translation_error_px_mean": float(np.mean(np.abs(shifts))),
        "translation_error_px_max": float(np.max(np.abs(shifts))),
        "requested_turn_vs_measured_median_deg": turns,
        "requested_scale_vs_measured_spread_ratio_median": scales,
        "note": "moments of the whole picture: parts pushed off the canvas shrink the measured change",
    }


def _wrap(degrees):
    """Differences of axis angles, wrapped into (-90, 90]."""
    return (np.asarray(degrees) + 90.0) % 180.0 - 90.0
