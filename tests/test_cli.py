"""`python -m keras_ace` on a tiny saved model, each subcommand in a fresh process."""

import json
import os
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from tests.test_model import TINY
from tests.test_model import dense_ae
from tests.test_model import tiny_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "keras_ace", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import keras_ace

    folder = tmp_path_factory.mktemp("cli")
    model = keras_ace.build_ace("rts_mnist", symmetry="spatial", seed=1, **TINY)
    x, y = tiny_data(32, (42, 42, 1))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    model.save(folder / "ace.keras")
    np.savez(folder / "images.npz", x=x[:4])
    return folder


def test_sample_writes_a_grid_and_arrays(saved, tmp_path):
    result = cli("sample", saved / "ace.keras", "--class", 3, "-n", 5, "--out", tmp_path / "s.png", "--npz", tmp_path / "s.npz")
    assert result.returncode == 0, result.stderr[-2000:]
    assert matplotlib.image.imread(tmp_path / "s.png").shape[0] > 42
    data = np.load(tmp_path / "s.npz")
    assert data["images"].shape == (5, 42, 42, 1) and (data["labels"] == 3).all()


def test_grid_and_control_and_info(saved, tmp_path):
    result = cli("grid", saved / "ace.keras", "--class", 7, "--range", -4, 4, "--steps", 5, "--out", tmp_path / "g.png")
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.exists(tmp_path / "g.png")
    result = cli("control", saved / "ace.keras", "--images", saved / "images.npz", "--index", "0:3",
                 "--translate", 4, 0, "--rotate", 30, "--out", tmp_path / "c.png")
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.exists(tmp_path / "c.png")
    result = cli("info", saved / "ace.keras")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["data set"] == "rts_mnist" and report["symmetry"] == "spatial"
    assert report["frames of sample()"] == "fitted to the training data"
    assert report["parameters"]["auto-encoder"] == dense_ae(42 * 42, 1, hidden=32)


@pytest.mark.parametrize(
    "args, message",
    [
        (["sample", "missing.keras", "--class", 1], "no such model file"),
        (["sample", "{saved}/ace.keras", "--class", 12], r"--class must lie in \[0, 10\)"),
        (["sample", "{saved}/not_ace.keras", "--class", 1], "not a keras_ace ACE model"),
        (["sample", "tests/data/legacy_dense_spatial.keras", "--class", 1], "0.1.*python -m keras_ace convert"),
        (["convert", "{saved}/ace.keras", "{saved}/again.keras"], "already in the current layout"),
        (["control", "{saved}/ace.keras", "--images", "{saved}/wrong.npz"], r"images must have shape \(N, 42, 42, 1\)"),
        (["control", "{saved}/ace.keras", "--images", "{saved}/images.npz", "--index", "9:12"], "selects no image"),
    ],
)
def test_user_errors_are_one_line_and_status_2(saved, args, message):
    import keras

    if not os.path.exists(saved / "not_ace.keras"):
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(saved / "not_ace.keras")
        np.savez(saved / "wrong.npz", x=np.zeros((2, 28, 28, 1), np.float32))
    result = cli(*[a.format(saved=saved) if isinstance(a, str) else a for a in args])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    # One line of ours (the backend may log its own start-up lines before it).
    assert len([line for line in result.stderr.splitlines() if line.startswith("python -m keras_ace")]) == 1
    import re

    assert re.search(message, result.stderr), result.stderr


def test_convert_rewrites_a_0_1_file(tmp_path):
    result = cli("convert", "tests/data/legacy_dense_spatial.keras", tmp_path / "new.keras")
    assert result.returncode == 0, result.stderr[-2000:]
    result = cli("info", tmp_path / "new.keras")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["frames of sample()"] == "fitted to the training data"
