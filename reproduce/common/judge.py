"""The independent judge: a plain CNN that tells whether generated pictures look like their class."""

import os

import keras
import numpy as np

from data_tools import files
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
    settings = {"judge_epochs": config.judge_epochs, "judge_train_size": config.judge_train_size, "seed": config.seed}
    settings_path = os.path.join(config.output_dir, f"{name}.settings.json")
    recorded = files.read_json(settings_path) if os.path.exists(settings_path) else settings
    if os.path.exists(path) and recorded == settings:
        judge = files.load_model(path)
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
    accuracy = float(np.mean(np.argmax(judge.predict(x_test, batch_size=500, verbose=0), -1) == y_test))
    return judge, accuracy


def judged_accuracy(judge, images, class_id):
    return float(np.mean(np.argmax(judge.predict(images, batch_size=500, verbose=0), -1) == class_id))
