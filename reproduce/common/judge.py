"""The independent judges: CNNs, independent of the ACE, that tell whether generated pictures look like their class.

MNIST family: a plain CNN trained by each run (minutes). CIFAR-10 in full mode: a small
residual CNN trained once with flips and crops and kept in the data cache
(`cifar10_judge`), since the plain CNN (57 % on real test images) cannot tell a horse
from a brown blur.
"""

import math
import os
import time

import keras
import numpy as np

from data_tools import files
from data_tools.sources import cache_dir
from keras_ace.models.presets import PRESETS
from common.config import load_split


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

    The cached `judge_<...>.keras` is reused while `judge_<...>.settings.json` beside it
    records this run's judge settings (epochs, training images, seed), or records none (a
    judge copied in alone); a judge trained with other settings is trained again.

    `canonical=False`: trained on the real training images, distorted as they are.
    `canonical=True`: trained on undistorted MNIST digits at the canvas centre, to judge
    canonical-frame outputs. Returns `(model, test_accuracy, test_accuracy_per_class)`.
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
    settings = {"judge_epochs": config.judge_epochs, "judge_train_size": config.judge_train_size, "seed": config.seed}
    settings_path = os.path.join(config.output_dir, f"{name}.settings.json")
    recorded = files.read_json(settings_path) if os.path.exists(settings_path) else settings
    if os.path.exists(path) and recorded == settings:
        judge = files.load_model(path, compile=False)  # a judge only predicts
    else:
        # The training split is read only when the judge is trained, not when it is reused.
        x, y = load_split(source, "train", config.judge_train_size, config.data_dir)
        x = place(x)
        keras.utils.set_random_seed(config.seed + 1)
        judge = judge_network(x.shape[1:])
        judge.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        print(f"Training the judge {name} on {len(x)} images", flush=True)
        judge.fit(x, y, batch_size=128, epochs=config.judge_epochs, verbose=2)
        files.save_model(judge, path)
        files.write_json(settings, settings_path)
    return (judge, *accuracies(judge, x_test, y_test))


def panel_judge(dataset, config):
    """The judge of a panel's samples: `(model, test accuracy, test accuracy per class)`.

    CIFAR-10 in full mode: the cached residual CNN (`cifar10_judge`); otherwise the plain
    CNN trained by the run (`train_judge`).
    """
    if dataset == "cifar10" and not config.quick:
        judge, record = cifar10_judge(config.data_dir)
        return judge, record["test_accuracy"], record["test_accuracy_per_class"]
    return train_judge(dataset, config)


def judged_accuracy(judge, images, class_id):
    return float(np.mean(np.argmax(judge.predict(images, batch_size=500, verbose=0), -1) == class_id))


# The cached CIFAR-10 judge: bump the version when its network or recipe changes (a new file is trained).
CIFAR10_JUDGE_NAME = "judge_cifar10_resnet_v1"
CIFAR10_JUDGE_EPOCHS = 18
CIFAR10_JUDGE_BATCH = 512
CIFAR10_JUDGE_PEAK_RATE = 0.2  # SGD with Nesterov momentum, one cycle: up over the first fifth, then down to 0
CIFAR10_JUDGE_WIDTH = 32  # channels of the first block; half the width of Page's "ResNet-9" (DAWNBench)


def residual_judge_network(image_shape=(32, 32, 3), num_classes=10, width=CIFAR10_JUDGE_WIDTH):
    """A ResNet-9-style CNN (conv-BN-ReLU blocks, two residual blocks) for [0, 1] images; 1.6M weights at width 32."""

    def block(x, filters, pool):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        return keras.layers.MaxPooling2D(2)(x) if pool else x

    def residual(x, filters):
        return keras.layers.Add()([x, block(block(x, filters, False), filters, False)])

    inputs = keras.Input(image_shape)
    x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)  # [0, 1] -> [-1, 1]
    x = block(x, width, False)
    x = residual(block(x, 2 * width, True), 2 * width)  # (16, 16)
    x = block(x, 4 * width, True)  # (8, 8)
    x = residual(block(x, 8 * width, True), 8 * width)  # (4, 4)
    x = keras.layers.GlobalMaxPooling2D()(x)
    x = keras.layers.Dense(num_classes)(x)
    outputs = keras.layers.Activation("softmax")(keras.layers.Rescaling(0.125)(x))  # ResNet-9's scaled logits
    return keras.Model(inputs, outputs, name="residual_judge")


class FlipsAndCrops(keras.utils.PyDataset):
    """Shuffled batches of images flipped left-right at random and cropped from a 4-pixel reflected border."""

    def __init__(self, x, y, batch_size, seed):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.x))

    def __getitem__(self, index):
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        x = np.pad(self.x[chosen], ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")  # (B, 40, 40, 3)
        dy, dx = self.rng.integers(0, 9, (2, len(chosen)))
        rows = dy[:, None] + np.arange(32)  # (B, 32)
        cols = dx[:, None] + np.arange(32)
        x = x[np.arange(len(chosen))[:, None, None], rows[:, :, None], cols[:, None, :]]  # (B, 32, 32, 3)
        flip = self.rng.random(len(chosen)) < 0.5
        x[flip] = x[flip, :, ::-1]
        return x, self.y[chosen]


@keras.saving.register_keras_serializable(package="keras_ace_reproduce")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over the first fifth of `steps` to `peak`, then linearly down to 0."""

    def __init__(self, steps, peak):
        self.steps, self.peak = int(steps), float(peak)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        up = step / (0.2 * self.steps)
        down = (self.steps - step) / (0.8 * self.steps)
        return self.peak * keras.ops.maximum(keras.ops.minimum(up, down), 0.0)

    def get_config(self):
        return {"steps": self.steps, "peak": self.peak}


def train_cifar10_judge(x, y, epochs=CIFAR10_JUDGE_EPOCHS, seed=0, verbose=2):
    """The residual judge trained on (x, y) with flips and crops. Returns the model."""
    keras.utils.set_random_seed(seed)
    judge = residual_judge_network(x.shape[1:])
    data = FlipsAndCrops(x, y, CIFAR10_JUDGE_BATCH, seed)
    rate = OneCycle(epochs * len(data), CIFAR10_JUDGE_PEAK_RATE)
    optimizer = keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=5e-4)
    # TensorFlow's own CPU convolutions (oneDNN) beat XLA's here: 33 against 42 s for 40 steps on 2 cores.
    jit_compile = False if keras.backend.backend() == "tensorflow" else "auto"
    judge.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=jit_compile)
    judge.fit(data, epochs=epochs, verbose=verbose)
    return judge


def accuracies(judge, x, y, num_classes=10):
    """The judge's accuracy on images x of classes y, and on the images of each class (None where a class has none)."""
    predicted = np.argmax(judge.predict(x, batch_size=500, verbose=0), -1)
    per_class = [float(np.mean(predicted[y == c] == c)) if np.any(y == c) else None for c in range(num_classes)]
    return float(np.mean(predicted == y)), per_class


def cifar10_judge(data_dir=None, epochs=CIFAR10_JUDGE_EPOCHS, train_size=None):
    """The cached CIFAR-10 judge and its record (test accuracy, per class, training time), trained on first use.

    Kept in the data cache as `<CIFAR10_JUDGE_NAME>.keras` with a `.json` record beside
    it; a damaged or record-less file is set aside with one line and trained again
    (about 30 minutes on a 2-core CPU with TensorFlow, a minute on a GPU).
    """
    path = os.path.join(cache_dir(), f"{CIFAR10_JUDGE_NAME}.keras")
    record_path = os.path.join(cache_dir(), f"{CIFAR10_JUDGE_NAME}.json")
    if os.path.exists(path):
        try:
            record = files.read_json(record_path)
            return files.load_model(path, compile=False), record  # a judge only predicts
        except (files.DamagedFileError, FileNotFoundError) as error:
            files.say(f"the cached CIFAR-10 judge is unusable ({files.reason(error)}); training it again")
    x, y = load_split("cifar10", "train", train_size, data_dir)
    x_test, y_test = load_split("cifar10", "test", None, data_dir)
    print(f"Training the CIFAR-10 judge {CIFAR10_JUDGE_NAME} ({epochs} epochs, flips and crops); "
          "once, then kept in the data cache", flush=True)
    start = time.time()
    judge = train_cifar10_judge(x, y, epochs)
    accuracy, per_class = accuracies(judge, x_test, y_test)
    record = {
        "name": CIFAR10_JUDGE_NAME,
        "test_accuracy": accuracy,
        "test_accuracy_per_class": per_class,
        "epochs": epochs,
        "training_images": len(x),
        "training_wall_time_s": time.time() - start,
        "backend": keras.backend.backend(),
    }
    judge.compile(loss="sparse_categorical_crossentropy")  # kept for judging only: no optimizer state to save
    files.save_model(judge, path)
    files.write_json(record, record_path, indent=2)  # last: a model without its record is trained again
    return judge, record
