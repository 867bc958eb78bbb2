"""Argument checks of the public API, each raising a message that names what it received."""

import math
import numbers

import keras
import numpy as np


def check_images(x, image_shape, name="x"):
    """NumPy images: (N, *image_shape), N > 0, finite, in [0, 1]."""
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"Expected {name} as images of shape (N, {', '.join(map(str, image_shape))}). Received: shape={x.shape}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"Expected at least one image in {name}. Received: shape={x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"Expected {name} as float images in [0, 1]. Received: dtype={x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError(f"Images contain NaN or Inf: {int((~np.isfinite(x)).sum())} values.")
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"Image intensities must lie in [0, 1]. Received: min={x.min()}, max={x.max()}")


def check_labels(y, count, num_classes, name="y"):
    """NumPy labels: one class index per image (not one-hot), integers in [0, num_classes)."""
    if y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1:
        raise ValueError(
            f"Labels must be class indices of shape (N,), not one-hot. Received: {name}.shape={y.shape}; "
            f"use np.argmax({name}, axis=-1)."
        )
    if y.ndim > 1 and not (y.ndim == 2 and y.shape[1] == 1):
        raise ValueError(f"Labels must be class indices of shape (N,). Received: {name}.shape={y.shape}")
    if y.shape[0] != count:
        raise ValueError(f"Expected one label per image ({count}). Received: {name}.shape={y.shape}")
    if y.size and (
        not np.issubdtype(y.dtype, np.number)
        or y.min() < 0
        or y.max() >= num_classes
        or not np.all(np.equal(np.mod(y, 1), 0))
    ):
        raise ValueError(
            f"Labels must be integers in [0, {num_classes}). Received: dtype={y.dtype}, min={y.min()}, max={y.max()}"
        )


def check_model_shape(image_shape, num_classes):
    """A model's `image_shape` as a tuple of 3 positive ints, and at least two classes."""
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (height, width, channels). Received: image_shape={image_shape}")
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2. Received: num_classes={num_classes}")
    return image_shape


def check_symbolic_images(x, image_shape):
    """Trace-time check of a batch of images (any backend tensor): shape and dtype."""
    if len(x.shape) != 4 or tuple(x.shape[1:]) != tuple(image_shape):
        raise ValueError(
            f"Expected images of shape (batch, {', '.join(map(str, image_shape))}). Received: shape={tuple(x.shape)}"
        )
    dtype = str(getattr(x, "dtype", "float32"))
    if "float" not in dtype:
        raise TypeError(f"Expected float images in [0, 1] (divide uint8 images by 255). Received: dtype={dtype}")


def check_symbolic_labels(y, num_classes):
    """Trace-time check of a batch of labels: class indices, not one-hot."""
    shape = tuple(y.shape)
    if len(shape) == 2 and shape[1] == num_classes:
        raise ValueError(f"Labels must be class indices of shape (batch,), not one-hot. Received: labels.shape={shape}")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise ValueError(f"Labels must be class indices of shape (batch,). Received: labels.shape={shape}")


def check_training_data(x, y, image_shape, num_classes):
    """What `fit` can check before training: NumPy arrays in full, a `PyDataset` by its first batch.

    A data set's first batch is read once, before Keras builds on it, for a clear
    message instead of the wrapped one of Keras' first symbolic call: shapes, dtypes
    and label layout only (a non-finite batch is the optimizer's to skip).
    """
    if isinstance(x, np.ndarray):
        check_images(x, image_shape)
        if isinstance(y, np.ndarray):
            check_labels(y, x.shape[0], num_classes)
    elif isinstance(x, keras.utils.PyDataset) and len(x):
        first = x[0]
        images, labels = (first[0], first[1]) if isinstance(first, tuple) and len(first) > 1 else (first, None)
        check_symbolic_images(np.asarray(images), image_shape)
        if labels is not None:
            check_symbolic_labels(np.asarray(labels), num_classes)


def check_class_id(class_id, num_classes):
    if isinstance(class_id, (bool, np.bool_)) or not isinstance(class_id, numbers.Integral):
        raise TypeError(f"class_id must be an integer. Received: class_id={class_id!r}")
    if not 0 <= int(class_id) < num_classes:
        raise ValueError(f"class_id must lie in [0, {num_classes}). Received: class_id={class_id}")
    return int(class_id)


def check_count(n, name="n"):
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={n!r}")
    return int(n)


def check_number(value, name, positive=False):
    """A finite real number (and > 0 when `positive`)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number. Received: {name}={value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive. Received: {name}={value!r}")
    return float(value)


def check_pair(value, name):
    """Two finite numbers, e.g. `translate=(dx, dy)`."""
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != 2:
        raise ValueError(f"{name} must be two numbers (dx, dy). Received: {name}={value!r}")
    return tuple(check_number(v, name) for v in items)


def check_latent_values(values, latent_dim):
    """(G, latent_dim) latent values; with one latent dimension, (G,) too."""
    values = np.asarray(values, np.float32)
    if latent_dim == 1 and values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or values.shape[1] != latent_dim or values.shape[0] == 0:
        raise ValueError(
            f"values must have shape (G, latent_dim={latent_dim}), G > 0. Received: values.shape={values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError("values contain NaN or Inf.")
    return values
