"""Where MNIST and CIFAR-10 come from: a local folder, the user's cache, or a download.

Lookup order for every data set: the `data_dir` argument, the environment variable
`KERAS_ACE_DATA`, the cache (`KERAS_ACE_CACHE`, default `~/.cache/keras_ace`), and last a
download through Keras' own loaders (`keras.datasets`) into the cache. The download is never tried
when `KERAS_ACE_OFFLINE=1` or when the dataset host does not answer within a few seconds:
instead a `DataNotFoundError` says where it looked and which file to put where.
"""

import io
import os
import threading
import zipfile

import numpy as np

from data_tools.files import DamagedFileError
from data_tools.files import atomic_save_npz
from data_tools.files import read_npz
from data_tools.files import reason
from data_tools.files import say

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# The host Keras downloads MNIST from; probed before any download.
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# How long to wait for the dataset host before calling the machine offline.
NETWORK_TIMEOUT_S = 3.0


class DataNotFoundError(FileNotFoundError):
    """Raised when a data set is neither on disk nor downloadable."""


def cache_dir():
    """The folder that holds downloaded and derived data sets."""
    path = os.environ.get("KERAS_ACE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "keras_ace"
    )
    os.makedirs(path, exist_ok=True)
    return path


def search_dirs(data_dir=None):
    """The folders searched, in order, for local copies of the data."""
    dirs = [data_dir, os.environ.get("KERAS_ACE_DATA"), cache_dir()]
    return [os.path.abspath(os.path.expanduser(d)) for d in dirs if d]


def network_available(url=MNIST_URL):
    """True when `url` answers an HTTP HEAD request within `NETWORK_TIMEOUT_S`.

    The check runs in a daemon thread because name resolution ignores socket
    timeouts; a machine without network must fail in seconds, not minutes.
    """
    import urllib.request

    result = []

    def probe():
        try:
            request = urllib.request.Request(url, method="HEAD")
            with urllib.request.urlopen(request, timeout=NETWORK_TIMEOUT_S) as response:
                result.append(response.status < 400)
        except Exception:  # Any failure means: do not try to download.
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(NETWORK_TIMEOUT_S + 0.5)
    return bool(result and result[0])


def _not_found(name, files, dirs, reason):
    return DataNotFoundError(
        f"{name} was not found and could not be downloaded ({reason}). Looked for "
        f"{' or '.join(files)} in: {', '.join(dirs)}. Put {files[0]} into one of these "
        f"folders, or point KERAS_ACE_DATA (or the data_dir argument) at the folder "
        f"that holds it."
    )


def _find(files, data_dir):
    for folder in search_dirs(data_dir):
        for file in files:
            path = os.path.join(folder, file)
            if os.path.isfile(path):
                return path
    return None


def _download_allowed(name, files, data_dir):
    if os.environ.get("KERAS_ACE_OFFLINE", "") not in ("", "0"):
        raise _not_found(name, files, search_dirs(data_dir), "KERAS_ACE_OFFLINE is set")
    if not network_available():
        raise _not_found(name, files, search_dirs(data_dir), "the network is unreachable")


SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _in_cache(path):
    return os.path.dirname(os.path.abspath(path)) == os.path.abspath(cache_dir())


def _load_splits(name, files, data_dir, download_as, rebuild=True):
    """A data set's two splits, from its file found locally or downloaded into the cache.

    A damaged file in the cache (a download or a decoded zip) is removed and made
    again, once, with one line saying so; a damaged file of the user's raises
    `DamagedFileError` naming it.
    """
    path = _find(files, data_dir)
    if path is None:
        _download_allowed(name, files, data_dir)
        path = _download_into_cache(download_as)
    if path.endswith(".zip"):
        path = _decoded_zip(path)
    try:
        data = read_npz(path, SPLIT_KEYS)
    except DamagedFileError as error:
        if not (rebuild and _in_cache(path)):
            raise DamagedFileError(f"{error}. Delete it, then put a good copy of {name} there or let keras_ace download it",
                                   error.cause) from None
        say(f"the cache file {path} was damaged ({error.cause}); removing and rebuilding it")
        os.remove(path)
        return _load_splits(name, files, data_dir, download_as, rebuild=False)
    return (data["x_train"], data["y_train"].astype(np.int64)), (data["x_test"], data["y_test"].astype(np.int64))


def load_mnist(data_dir=None):
    """Loads MNIST as uint8 images (N, 28, 28) and int64 labels (N,).

    Args:
        data_dir: a folder holding `mnist.npz` (Keras' layout); searched first.

    Returns:
        `(x_train, y_train), (x_test, y_test)`.
    """
    return _load_splits("MNIST", ["mnist.npz"], data_dir, "mnist")


# The image-folder zip lists its images class by class; each split is put in this fixed
# mixed order, so that its first N images (quick mode's subsets) hold every class, as in
# the original CIFAR-10 batches and `keras.datasets.cifar10`.
ZIP_ORDER_SEED = 0


def _read_image_folder_zip(path):
    """Reads `train/<class>/*.jpg` and `test/<class>/*.jpg` from a zip, each split in a fixed mixed order."""
    from PIL import Image

    splits = {"train": ([], []), "test": ([], [])}
    fix = "delete it and put a good copy of CIFAR-10 there (train/<class>/*.jpg and test/<class>/*.jpg)"
    try:
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist()):
                parts = name.split("/")
                if len(parts) != 3 or not parts[2] or parts[0] not in splits:
                    continue
                if parts[1] not in CIFAR10_CLASSES:
                    raise DamagedFileError(f"{path} is not the CIFAR-10 image-folder zip: unknown class folder {parts[1]!r}; {fix}")
                image = Image.open(io.BytesIO(archive.read(name))).convert("RGB")
                splits[parts[0]][0].append(np.asarray(image, dtype=np.uint8))
                splits[parts[0]][1].append(CIFAR10_CLASSES.index(parts[1]))
    except DamagedFileError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:  # PIL's UnidentifiedImageError is an OSError
        raise DamagedFileError(f"{path} is damaged or not a zip of JPEG images ({reason(error)}); {fix}") from None
    if not all(labels for _, labels in splits.values()):
        raise DamagedFileError(f"{path} holds no train/ and test/ images of CIFAR-10; {fix}")
    mixed = []
    for images, labels in splits.values():
        order = np.random.default_rng(ZIP_ORDER_SEED).permutation(len(labels))
        mixed.append((np.stack(images)[order], np.asarray(labels, dtype=np.int64)[order]))
    return tuple(mixed)


def _download_into_cache(name):
    """Keras' own loader (`keras.datasets.<name>.load_data`), saved into the cache as `<name>.npz`."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        keras_cache = os.path.join(os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")), "datasets")
        raise DamagedFileError(
            f"Keras' download of {name} in {keras_cache} is damaged ({reason(error)}); delete it there and run again"
        ) from None
    target = os.path.join(cache_dir(), f"{name}.npz")
    atomic_save_npz(target, x_train=x_train, y_train=y_train.reshape(-1), x_test=x_test, y_test=y_test.reshape(-1))
    return target


def load_cifar10(data_dir=None):
    """Loads CIFAR-10 as uint8 images (N, 32, 32, 3) and int64 labels (N,).

    Reads `cifar10.npz` (MNIST's keys) or `cifar10-jpeg.zip` (image-folder layout).
    A zip is decoded once, its images put in a fixed mixed order (its folders list
    them class by class), and kept in the cache.

    Args:
        data_dir: a folder holding one of those files; searched first.

    Returns:
        `(x_train, y_train), (x_test, y_test)`.
    """
    return _load_splits("CIFAR-10", ["cifar10.npz", "cifar10-jpeg.zip"], data_dir, "cifar10")


def _decoded_zip(path):
    """The cache file of an image-folder zip's images, decoded once (in the fixed mixed order)."""
    # "mixed": caches decoded before the fixed order was introduced (class by class) are not reused.
    decoded = os.path.join(cache_dir(), f"cifar10-from-zip-mixed-{os.path.getsize(path)}.npz")
    if not os.path.isfile(decoded):
        (x_train, y_train), (x_test, y_test) = _read_image_folder_zip(path)
        atomic_save_npz(decoded, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return decoded
