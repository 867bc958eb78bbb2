"""The project's own files: written atomically, and read with one clear line when damaged.

Every file keras_ace writes for itself (data caches, settings, training records,
metrics, pictures, models) goes to a temporary name in its folder and is renamed into
place, so a process killed while writing leaves the old file or none, never half a
file. A file that cannot be read raises `DamagedFileError`, whose message names the
file, says what is wrong with it and how to fix it.
"""

import contextlib
import glob
import os
import sys
import tempfile
import time
import zipfile

# A temporary file older than this was left by a killed writer (no write takes this long): removed.
STALE_PARTIAL_S = 3600


class DamagedFileError(ValueError):
    """A file that exists but cannot be read: cut short, damaged, or of another kind.

    `cause`: what was wrong with it, in a few words (the message also names the file
    and what to do).
    """

    def __init__(self, message, cause=None):
        super().__init__(message)
        self.cause = cause or message


def say(line):
    """One line to the user on stderr (what the library did about a damaged cache)."""
    print(f"keras_ace: {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def atomic_write(path, mode="w"):
    """Opens a temporary file beside `path`, renamed to `path` when the block ends without error.

    Example:
    >>> with atomic_write("metrics.json") as f:  # doctest: +SKIP
    ...     json.dump(metrics, f)
    """
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f


@contextlib.contextmanager
def atomic_path(path):
    """A temporary file name beside `path` (same suffix) for a writer that takes a name; renamed into place.

    What killed writers left for the same `path` more than `STALE_PARTIAL_S` ago is removed.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    suffix = os.path.splitext(name)[1]  # writers such as Keras' model.save check it
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.partial{glob.escape(suffix)}")):
        with contextlib.suppress(OSError):  # another process may remove it first
            if time.time() - os.path.getmtime(stale) > STALE_PARTIAL_S:
                os.remove(stale)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=f".partial{suffix}")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save_npz(path, **arrays):
    """Writes an `.npz` so that an interrupted write never leaves a file at `path`."""
    import numpy as np

    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def read_npz(path, keys=None):
    """Every array of an `.npz` (or those in `keys`), read in full: a dict of NumPy arrays.

    Raises `DamagedFileError` (the file named, the reason given) when the file is cut
    short, not an `.npz`, or lacks one of `keys`.
    """
    import numpy as np

    if not zipfile.is_zipfile(path):  # what an .npz is; NumPy would read other files as pickles
        cause = "not a complete zip archive"
        raise DamagedFileError(f"{path} is damaged or not the expected .npz file: {cause}", cause)
    try:
        with np.load(path) as data:
            missing = [k for k in keys or () if k not in data.files]
            if missing:
                raise KeyError(f"it has no {', '.join(missing)} (it holds {', '.join(data.files) or 'nothing'})")
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise DamagedFileError(f"{path} is damaged or not the expected .npz file: {reason(error)}", reason(error)) from None


def save_model(model, path):
    """`model.save(path)`, atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def load_model(path, compile=True):
    """`keras.saving.load_model`, with errors that tell a missing file from a damaged one (`compile=False`: to predict only).

    Raises `FileNotFoundError` when nothing is at `path` and `DamagedFileError` when the
    file is cut short, fails its checksums or is not a Keras archive; errors of a whole
    file's contents (e.g. a class that is not registered) are Keras' own.
    """
    import keras

    check_keras_archive(path)
    return keras.saving.load_model(path, compile=compile)


def check_keras_archive(path):
    """Raises `FileNotFoundError` or `DamagedFileError` unless `path` is a whole `.keras` archive.

    Whole: a zip archive whose members pass their checksums and that holds a
    `config.json`; what the archive holds is left to its reader.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such model file: {path}")
    fix = "save or copy it again"
    try:
        with zipfile.ZipFile(path) as archive:
            broken, names = archive.testzip(), archive.namelist()
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise DamagedFileError(f"{path} is damaged or not a .keras file ({reason(error)}); {fix}", reason(error)) from None
    if broken is not None:
        raise DamagedFileError(f"{path} is damaged: {broken} inside it fails its checksum; {fix}", "a bad checksum")
    if "config.json" not in names:
        raise DamagedFileError(f"{path} is a zip archive but not a .keras file (it holds no config.json)", "no config.json")


def unwritable(error):
    """One line for an `OSError` raised while writing: the path, what went wrong and what to do."""
    import errno

    path = error.filename or "a file"
    advice = {
        errno.ENOSPC: "free some space or write elsewhere",
        errno.EFBIG: "the file is larger than this system allows (a full disk or a file-size limit); write elsewhere",
        errno.EROFS: "the file system is read-only; write elsewhere",
        errno.EACCES: "no permission to write there; write elsewhere",
        errno.EPERM: "no permission to write there; write elsewhere",
        errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
        errno.EISDIR: "a folder is in the way; choose another path",
    }.get(error.errno, "check the path and the disk")
    return f"cannot write {path}: {error.strerror or reason(error)}; {advice}"


def reason(error):
    """The first line of an exception's message, with its type when the message is empty."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def write_json(data, path, **dump_options):
    """`json.dump` into `path`, atomically."""
    import json

    with atomic_write(path) as f:
        json.dump(data, f, **dump_options)


def read_json(path):
    """`json.load` of `path`, or `DamagedFileError` naming it when it is cut short or not JSON."""
    import json

    try:
        with open(path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        raise DamagedFileError(f"{path} is damaged or not a JSON file: {reason(error)}; delete it and run again") from None
