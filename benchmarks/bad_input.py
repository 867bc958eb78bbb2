"""Tries bad input against the public API and prints what each case gives, as a Markdown table.

    KERAS_BACKEND=tensorflow python benchmarks/bad_input.py > docs/bad_input.md

A case passes when it raises `ValueError` or `TypeError` with a message naming the
argument, or (for a NaN batch inside a data set) when training skips the step and the
weights stay finite.
"""

import os
import sys
import tempfile

import keras
import numpy as np

import keras_ace
from data_tools import load_dataset

TINY = dict(encoder_units=(8, 8), decoder_units=8, classifier_filters=(2, 2, 2), classifier_units=4,
            ssn_filters=(2, 2), ssn_units=4, seed=0)


def batches(*items):
    """A Python generator of (x, y) batches: input `check_data` cannot look into."""
    yield from items  # in order: fit does not shuffle a generator


def model(**overrides):
    return keras_ace.build_ace("mnist", image_shape=(16, 16, 1), **{**TINY, **overrides})


def without_local_data(fn):
    """Runs fn with no data folder and an empty cache (KERAS_ACE_OFFLINE is set in main)."""
    saved = {k: os.environ.pop(k, None) for k in ("KERAS_ACE_DATA", "KERAS_ACE_CACHE")}
    os.environ["KERAS_ACE_CACHE"] = tempfile.mkdtemp()
    try:
        return fn()
    finally:
        os.environ.pop("KERAS_ACE_CACHE")
        os.environ.update({k: v for k, v in saved.items() if v is not None})


def data(n=8):
    rng = np.random.default_rng(0)
    return rng.random((n, 16, 16, 1)).astype(np.float32), rng.integers(0, 10, n)


def nan_dataset():
    x, y = data()
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    return batches((x, y), (bad, y))


def nan_batch_keeps_weights():
    m = model()
    m.fit(nan_dataset(), steps_per_epoch=2, epochs=1, verbose=0)
    finite = all(np.isfinite(w).all() for w in m.get_weights())
    skipped = int(keras.ops.convert_to_numpy(m.optimizer.skipped_steps))
    m.control(data(2)[0], translate=(1, 0))
    return f"step skipped ({skipped}), weights finite: {finite}, control still works"


def damaged_files_folder():
    """A temporary data folder and cache: a small MNIST and a small CIFAR-10 zip, as written whole."""
    import io
    import zipfile

    from PIL import Image

    folder = tempfile.mkdtemp()
    os.environ["KERAS_ACE_CACHE"] = os.path.join(folder, "cache")
    rng = np.random.default_rng(0)
    np.savez(os.path.join(folder, "mnist.npz"), x_train=rng.integers(0, 256, (40, 28, 28), np.uint8),
             y_train=rng.integers(0, 10, 40), x_test=rng.integers(0, 256, (20, 28, 28), np.uint8), y_test=rng.integers(0, 10, 20))
    with zipfile.ZipFile(os.path.join(folder, "cifar10-jpeg.zip"), "w") as archive:
        for split in ("train", "test"):
            jpeg = io.BytesIO()
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(jpeg, format="JPEG")
            archive.writestr(f"{split}/horse/0.jpg", jpeg.getvalue())
    return folder


def cut_short(path, keep=1 / 3):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


def with_damaged(file, load, damage=None):
    """Damages `file` of a fresh damaged_files_folder (default: cuts it short), then loads: what the user sees."""
    saved = {k: os.environ.get(k) for k in ("KERAS_ACE_DATA", "KERAS_ACE_CACHE")}
    os.environ.pop("KERAS_ACE_DATA", None)
    try:
        folder = damaged_files_folder()
        load(folder)  # whole: reads and fills the cache
        (damage or cut_short)(file(folder))
        return load(folder)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def damaged_cache_rebuilt():
    """The RTS MNIST cache cut in half: rebuilt, with the line the user sees."""
    import contextlib
    import io

    from data_tools.datasets import distorted_cache_path

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        x, _ = with_damaged(lambda folder: distorted_cache_path("rts_mnist", "test", 2),
                            lambda folder: load_dataset("rts_mnist", "test", folder))
    return f"rebuilt ({len(x)} images), one line: {err.getvalue().strip()[:150]}"


def cli_on_a_cut_model():
    """`python -m keras_ace info` on a .keras file cut in half: its status and line."""
    import contextlib
    import io

    from keras_ace.__main__ import main as cli_main

    path = os.path.join(tempfile.mkdtemp(), "ace.keras")
    model().save(path)
    cut_short(path, keep=0.5)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli_main(["info", path])
    if status != 2 or "damaged" not in err.getvalue():
        raise AssertionError(f"status {status}: {err.getvalue().strip()}")
    return f"status 2, one line: {err.getvalue().strip()[:170]}"


def cli_status(*args, npz_images=0):
    """`python -m keras_ace ARGS` on a tiny saved model ({model}; {images}: an .npz of N zero images): status and line."""
    import contextlib
    import io

    from keras_ace.__main__ import main as cli_main

    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "ace.keras")
    model().save(path)
    np.savez(os.path.join(folder, "images.npz"), x=np.zeros((npz_images, 16, 16, 1), np.float32))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = cli_main([str(a).format(model=path, images=os.path.join(folder, "images.npz"), folder=folder) for a in args])
    ours = [line for line in err.getvalue().splitlines() if line.startswith("python -m keras_ace")]
    if status != 2 or len(ours) != 1:
        raise AssertionError(f"status {status}: {err.getvalue().strip()[:150]}")
    return f"status 2, one line: {ours[0][:170]}"


def figure_option(*args):
    """A figure script's options parsed as `reproduce/fig3.py ARGS` parses them: argparse's status and line."""
    import argparse
    import contextlib
    import io

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reproduce"))
    from common.config import add_arguments

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            add_arguments(argparse.ArgumentParser(prog="fig3.py"), "fig3").parse_args(list(args))
        except SystemExit as stopped:
            return f"status {stopped.code}, one line: {err.getvalue().strip().splitlines()[-1][:170]}"
    raise AssertionError("accepted")


def sigterm_during_fit():
    """SIGTERM at the second step of `fit` with keras_ace's BackupAndRestore: a backup at that step, then one error."""
    import signal

    folder = os.path.join(tempfile.mkdtemp(), "backup")

    class Terminate(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 1:
                os.kill(os.getpid(), signal.SIGTERM)

    x16, y16 = data(16)
    try:
        model().fit(x16, y16, batch_size=4, epochs=2, verbose=0, callbacks=[Terminate(), keras_ace.BackupAndRestore(folder)])
    except keras_ace.TrainingInterrupted as error:
        return f"backup at {keras_ace.BackupAndRestore.position(folder)} (epoch, steps done); `TrainingInterrupted`: {error}"[:200]
    raise AssertionError("fit went on")


x, y = data()
CASES = [
    ("build_ace(dataset='svhn')", lambda: keras_ace.build_ace("svhn")),
    ("build_ace(encoder='rnn')", lambda: keras_ace.build_ace("mnist", encoder="rnn")),
    ("build_ace(symmetry='colour')", lambda: keras_ace.build_ace("mnist", symmetry="colour")),
    ("build_ace(sampling='cauchy')", lambda: model(sampling="cauchy")),
    ("build_ace(latent_dim=0)", lambda: model(latent_dim=0)),
    ("build_ace(distribution='ddp')", lambda: keras_ace.build_ace("mnist", distribution="ddp")),
    ("spatial_color on grey images", lambda: model(symmetry="spatial_color")),
    ("build_ace(padding='reflect')", lambda: model(padding="reflect")),
    ("build_ace(color_inverse='both')", lambda: model(color_inverse="both")),
    ("build_preset('fig9')", lambda: keras_ace.build_preset("fig9")),
    ("fit: wrong image shape", lambda: model().fit(np.zeros((8, 16, 16, 3), np.float32), y, verbose=0)),
    ("fit: NaN in a NumPy image", lambda: model().fit(np.where(x > 0.99, np.nan, x), y, verbose=0)),
    ("fit: intensities 0-255", lambda: model().fit(x * 255, y, verbose=0)),
    ("fit: uint8 NumPy images", lambda: model().fit((x * 255).astype(np.uint8), y, verbose=0)),
    ("fit: label 10 of 10 classes", lambda: model().fit(x, np.full(8, 10), verbose=0)),
    ("fit: one-hot labels", lambda: model().fit(x, np.eye(10)[y], verbose=0)),
    ("fit: one-hot labels in a data set", lambda: model().fit(batches((x, np.eye(10)[y])), steps_per_epoch=1, verbose=0)),
    ("fit: uint8 images in a data set", lambda: model().fit(batches(((x * 255).astype(np.uint8), y)), steps_per_epoch=1, verbose=0)),
    ("fit: labels of another length", lambda: model().fit(x, y[:5], verbose=0)),
    ("fit: zero images", lambda: model().fit(np.zeros((0, 16, 16, 1), np.float32), np.zeros(0, int), verbose=0)),
    ("fit: a NaN batch inside a data set", nan_batch_keeps_weights),
    ("evaluate: wrong image shape", lambda: model().evaluate(np.zeros((4, 8, 8, 1), np.float32), y[:4], verbose=0)),
    ("predict: NaN images", lambda: model().predict(np.full((2, 16, 16, 1), np.nan, np.float32), verbose=0)),
    ("sample(3, n=-1)", lambda: model().sample(3, -1)),
    ("sample('3', 2)", lambda: model().sample("3", 2)),
    ("sample(10, 2)", lambda: model().sample(10, 2)),
    ("sample(1, 2, frames='data')", lambda: model().sample(1, 2, frames="data")),
    ("sample(1, 2, frames='fitted') before fit", lambda: model().sample(1, 2, frames="fitted")),
    ("latent_grid(1, values of shape (3, 2)) on latent_dim=1", lambda: model().latent_grid(1, np.zeros((3, 2)))),
    ("latent_grid(1, [nan])", lambda: model().latent_grid(1, [np.nan])),
    ("control(rotate=inf)", lambda: model().control(x[:2], rotate=np.inf)),
    ("control(translate=(1, 2, 3))", lambda: model().control(x[:2], translate=(1, 2, 3))),
    ("control(scale=0)", lambda: model().control(x[:2], scale=0)),
    ("control(color=...) on grey images", lambda: model().control(x[:2], color=np.eye(3))),
    ("control(translate=...) without symmetry", lambda: model(symmetry=None).control(x[:2], translate=(1, 0))),
    ("symmetry_statistics without symmetry", lambda: model(symmetry=None).symmetry_statistics(x[:2])),
    ("classify: images without a channel axis", lambda: model().classify(np.zeros((2, 16, 16)))),
    ("classify(batch_size=0)", lambda: model().classify(x[:2], batch_size=0)),
    ("load_dataset('svhn')", lambda: load_dataset("svhn", "train")),
    ("load_dataset('mnist', 'valid')", lambda: load_dataset("mnist", "valid")),
    ("load_dataset with no data and no network", lambda: without_local_data(lambda: load_dataset("mnist", "train"))),
    ("load_dataset: mnist.npz cut short", lambda: with_damaged(lambda folder: os.path.join(folder, "mnist.npz"),
                                                                lambda folder: load_dataset("mnist", "test", folder))),
    ("load_dataset: mnist.npz of another kind (text)", lambda: with_damaged(
        lambda folder: os.path.join(folder, "mnist.npz"), lambda folder: load_dataset("mnist", "test", folder),
        damage=lambda path: open(path, "w").write("not MNIST"))),
    ("load_dataset: cifar10-jpeg.zip cut short", lambda: with_damaged(
        lambda folder: os.path.join(folder, "cifar10-jpeg.zip"), lambda folder: load_dataset("cifar10", "test", folder))),
    ("load_dataset: the RTS MNIST cache cut in half", damaged_cache_rebuilt),
    ("python -m keras_ace info on a .keras cut in half", cli_on_a_cut_model),
    ("python -m keras_ace sample -n 10000000", lambda: cli_status("sample", "{model}", "--class", 1, "-n", 10_000_000)),
    ("python -m keras_ace sample -n 10^12 --npz (more than the disk holds)",
     lambda: cli_status("sample", "{model}", "--class", 1, "-n", 10**12, "--npz", "{folder}/s.npz")),
    ("python -m keras_ace grid --steps 1000000", lambda: cli_status("grid", "{model}", "--class", 1, "--steps", 1_000_000)),
    ("python -m keras_ace control --index 0:300",
     lambda: cli_status("control", "{model}", "--images", "{images}", "--index", "0:300", npz_images=300)),
    ("reproduce/fig3.py --samples-per-class 10000000", lambda: figure_option("--samples-per-class", "10000000")),
    ("reproduce/fig3.py --test-size -3", lambda: figure_option("--test-size", "-3")),
    ("fit: SIGTERM in the middle of an epoch", sigterm_during_fit),
    ("SpatialTransformer: NaN in theta", lambda: "reads zeros: " + str(float(np.abs(keras.ops.convert_to_numpy(
        keras_ace.layers.SpatialTransformer()([x[:1], np.asarray([[np.nan, 0, 0, 0, 1, 0]], np.float32)]))).max()))),
]


def main():
    os.environ["KERAS_ACE_OFFLINE"] = "1"
    rows, good = [], 0
    for name, case in CASES:
        try:
            result = case()
            outcome, ok = f"no error: {result}" if isinstance(result, str) else "no error", isinstance(result, str)
        except (ValueError, TypeError, FileNotFoundError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            outcome, ok = f"`{type(error).__name__}`: {first[:160]}", True
        except RuntimeError as error:
            # JAX and PyTorch wrap errors of Keras' first symbolic call; ours is inside.
            text = str(error)
            ours = next((line.strip("\x1b[0m").strip() for line in text.splitlines() if "Received" in line), "")
            outcome, ok = f"`RuntimeError` (Keras' wrapper) around: {ours[:140]}", bool(ours)
        except Exception as error:  # an unclear failure: what this table is for
            outcome, ok = f"**{type(error).__name__}**: {str(error).splitlines()[0][:160]}", False
        good += ok
        rows.append(f"| {name} | {'clear' if ok else '**unclear**'} | {outcome.replace('|', '/')} |")
    print(f"# Bad input against the public API ({keras.backend.backend()})\n")
    print(f"`KERAS_BACKEND={keras.backend.backend()} python benchmarks/bad_input.py`: {len(CASES)} cases, "
          f"{good} give a clear message or a correct result.\n")
    print("| case | outcome | what the user sees |\n|---|---|---|")
    print("\n".join(rows))
    return 0 if good == len(CASES) else 1


if __name__ == "__main__":
    sys.exit(main())
