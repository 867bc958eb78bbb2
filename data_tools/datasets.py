"""`load_dataset`: the four data sets of the paper as float32 (N, H, W, C) in [0, 1]."""

import os

import numpy as np

from data_tools import distortions
from data_tools import files
from data_tools import sources

# Bump when a distortion recipe changes, so that stale caches are never read.
RECIPE_VERSION = 2  # 2: RTS resampled by scipy.ndimage (33 of 8.8M pixels move by one grey level)
# Train and test splits are distorted with different seeds (DESIGN.md, "Data").
DEFAULT_SEEDS = {"train": 1, "test": 2}
DISTORTIONS = {"rts_mnist": distortions.make_rts_mnist, "tc_mnist": distortions.make_tc_mnist}
DATASETS = ("mnist", "rts_mnist", "tc_mnist", "cifar10")
SPLITS = ("train", "test")
IMAGE_SHAPES = {
    "mnist": (28, 28, 1),
    "rts_mnist": (distortions.RTS_CANVAS, distortions.RTS_CANVAS, 1),
    "tc_mnist": (distortions.TC_CANVAS, distortions.TC_CANVAS, 1),
    "cifar10": (32, 32, 3),
}


def check_name(name):
    if name not in DATASETS:
        raise ValueError(f"Unknown data set. Expected one of {DATASETS}. Received: name={name!r}")


def check_split(split):
    if split not in SPLITS:
        raise ValueError(f"Unknown split. Expected one of {SPLITS}. Received: split={split!r}")


def distorted_cache_path(name, split, seed):
    return os.path.join(
        sources.cache_dir(), f"{name}-{split}-seed{seed}-recipe{RECIPE_VERSION}.npz"
    )


def load_raw(name, split, data_dir=None, seed=None, progress=False):
    """The uint8 images (N, H, W) or (N, H, W, 3), labels and, for distorted sets, truth.

    Distorted sets are built once and cached under a key of recipe version, split and
    seed; the cache file is written atomically, and rebuilt when found damaged.
    """
    check_name(name)
    check_split(split)
    if name == "cifar10":
        train, test = sources.load_cifar10(data_dir)
        return (*(train if split == "train" else test), {})
    train, test = sources.load_mnist(data_dir)
    images, labels = train if split == "train" else test
    if name == "mnist":
        return images, labels, {}
    seed = DEFAULT_SEEDS[split] if seed is None else seed
    path = distorted_cache_path(name, split, seed)
    if os.path.isfile(path):
        try:
            data = files.read_npz(path, ("images", "labels"))
        except files.DamagedFileError as error:
            files.say(f"the cache file {path} was damaged ({error.cause}); removing and rebuilding it")
            os.remove(path)
    if not os.path.isfile(path):
        canvases, labels, truth = DISTORTIONS[name](images, labels, seed, progress=progress)
        files.atomic_save_npz(path, images=canvases, labels=labels, **truth)
        data = {"images": canvases, "labels": labels, **truth}
    truth = {k: v for k, v in data.items() if k not in ("images", "labels")}
    return data["images"], data["labels"], truth


def load_dataset(name, split, data_dir=None, seed=None, return_truth=False):
    """Loads one split of `mnist`, `rts_mnist`, `tc_mnist` or `cifar10`.

    Args:
        name: the data set.
        split: `"train"` or `"test"`.
        data_dir: a folder with `mnist.npz` / `cifar10-jpeg.zip`, searched first.
        seed: the distortion seed (distorted sets only); default 1 for train, 2 for test.
        return_truth: also return the per-image distortion parameters.

    Returns:
        `(images, labels)`: float32 (N, H, W, C) in [0, 1] and int64 (N,); with
        `return_truth`, a third element, the dict of ground truth (empty for undistorted
        sets).

    Example:
    >>> x, y = load_dataset("rts_mnist", "test")  # doctest: +SKIP
    >>> x.shape
    (10000, 42, 42, 1)
    """
    images, labels, truth = load_raw(name, split, data_dir, seed)
    images = images.astype(np.float32) / 255.0
    if images.ndim == 3:
        images = images[..., None]
    return (images, labels, truth) if return_truth else (images, labels)
