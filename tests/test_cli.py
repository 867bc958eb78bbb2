"""`python -m keras_ace` on the shared tiny saved model: each subcommand in-process, the entry point in fresh processes (slow)."""

import json
import os
import re
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from keras_ace.__main__ import main as cli_main
from tests.helpers import cut_short
from tests.test_model import dense_ae

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args):
    """`python -m keras_ace ARGS` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "keras_ace", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_sample_writes_a_grid_and_arrays(trained_ace, tmp_path):
    assert cli_main(["sample", str(trained_ace.path), "--class", "3", "-n", "5", "--out", str(tmp_path / "s.png"),
                     "--npz", str(tmp_path / "s.npz")]) == 0
    assert matplotlib.image.imread(tmp_path / "s.png").shape[0] > 42
    data = np.load(tmp_path / "s.npz")
    assert data["images"].shape == (5, 42, 42, 1) and (data["labels"] == 3).all()
    np.testing.assert_allclose(data["images"], trained_ace.model.sample(3, 5, seed=0), atol=1e-5)


def test_many_samples_go_to_the_npz_in_batches(trained_ace, tmp_path, monkeypatch):
    import keras_ace.__main__ as command_line

    monkeypatch.setattr(command_line, "SAMPLE_BATCH", 40)
    monkeypatch.setattr(command_line, "MAX_PICTURE_IMAGES", 16)
    assert cli_main(["sample", str(trained_ace.path), "--class", "2", "-n", "100", "--out", str(tmp_path / "s.png"),
                     "--npz", str(tmp_path / "s.npz")]) == 0
    data = np.load(tmp_path / "s.npz")
    assert data["images"].shape == (100, 42, 42, 1) and (data["labels"] == 2).all()
    # Three batches of one stream: no batch repeats another's draws.
    assert not np.allclose(data["images"][:40], data["images"][40:80])
    assert set(os.listdir(tmp_path)) == {"s.png", "s.npz"}  # the scratch file is gone


def test_grid_and_control_and_info(trained_ace, tmp_path, capsys):
    folder = trained_ace.folder
    assert cli_main(["grid", str(trained_ace.path), "--class", "7", "--range", "-4", "4", "--steps", "5",
                     "--out", str(tmp_path / "g.png")]) == 0
    assert os.path.exists(tmp_path / "g.png")
    assert cli_main(["control", str(trained_ace.path), "--images", str(folder / "images.npz"), "--index", "0:3",
                     "--translate", "4", "0", "--rotate", "30", "--out", str(tmp_path / "c.png")]) == 0
    assert os.path.exists(tmp_path / "c.png")
    capsys.readouterr()
    assert cli_main(["info", str(trained_ace.path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data set"] == "rts_mnist" and report["symmetry"] == "spatial"
    assert report["frames of sample()"] == "fitted to the training data"
    assert report["parameters"]["auto-encoder"] == dense_ae(42 * 42, 1, hidden=32)


def user_error_files(folder):
    import keras

    if not os.path.exists(folder / "not_ace.keras"):
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(folder / "not_ace.keras")
        np.savez(folder / "wrong.npz", x=np.zeros((2, 28, 28, 1), np.float32))
        # What an interrupted copy leaves, and files of another kind under the right names.
        cut_short(folder / "ace.keras", keep=0.5, out=folder / "cut.keras")
        (folder / "text.keras").write_text("not a model")
        (folder / "cut.npz").write_bytes((folder / "images.npz").read_bytes()[:100])
        np.savez(folder / "many.npz", x=np.zeros((300, 42, 42, 1), np.float32))


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
        (["info", "{saved}/cut.keras"], r"cut\.keras is damaged or not a \.keras file"),
        (["sample", "{saved}/text.keras", "--class", 1], r"text\.keras is damaged or not a \.keras file"),
        (["convert", "{saved}/cut.keras", "{saved}/out.keras"], r"cut\.keras is damaged or not a \.keras file"),
        (["control", "{saved}/ace.keras", "--images", "{saved}/cut.npz"], r"cut\.npz is damaged or not the expected \.npz"),
        # Absurd sizes: refused before any work.
        (["sample", "{saved}/ace.keras", "--class", 1, "-n", 10_000_000], "more than a picture shows.*--npz"),
        (["sample", "{saved}/ace.keras", "--class", 1, "-n", 10**12, "--npz", "{saved}/big.npz"], r"needs [\d.]+ GiB in .* free"),
        (["grid", "{saved}/ace.keras", "--class", 1, "--steps", 1_000_000], "--steps from 2 to 100"),
        (["control", "{saved}/ace.keras", "--images", "{saved}/many.npz", "--index", "0:300"], "selects 300 images.*at most 256"),
    ],
)
def test_user_errors_are_one_line_and_status_2(trained_ace, args, message, capsys, monkeypatch):
    user_error_files(trained_ace.folder)
    monkeypatch.chdir(ROOT)
    assert cli_main([a.format(saved=trained_ace.folder) if isinstance(a, str) else str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if line.startswith("python -m keras_ace")]) == 1
    assert re.search(message, err), err


def test_a_full_disk_is_one_line_and_status_2(trained_ace, tmp_path, capsys, monkeypatch):
    import errno

    from data_tools import pictures

    def disk_full(panels, titles, caption, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(pictures, "save_annotated_png", disk_full)
    out = tmp_path / "s.png"
    assert cli_main(["sample", str(trained_ace.path), "--class", "3", "-n", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"cannot write {out}: No space left on device; free some space" in err[0], err
    assert not out.exists()


def test_convert_rewrites_a_0_1_file(tmp_path, capsys):
    legacy = os.path.join(ROOT, "tests", "data", "legacy_dense_spatial.keras")
    assert cli_main(["convert", legacy, str(tmp_path / "new.keras")]) == 0
    capsys.readouterr()
    assert cli_main(["info", str(tmp_path / "new.keras")]) == 0
    assert json.loads(capsys.readouterr().out)["frames of sample()"] == "fitted to the training data"


@pytest.mark.slow
def test_the_entry_point_in_fresh_processes(trained_ace, tmp_path):
    """`python -m keras_ace`: a subcommand's output, and a user error as one line, status 2, no traceback."""
    result = cli("sample", trained_ace.path, "--class", 3, "-n", 5, "--out", tmp_path / "s.png", "--npz", tmp_path / "s.npz")
    assert result.returncode == 0, result.stderr[-2000:]
    assert np.load(tmp_path / "s.npz")["images"].shape == (5, 42, 42, 1)
    result = cli("info", trained_ace.path)
    assert result.returncode == 0 and json.loads(result.stdout)["data set"] == "rts_mnist", result.stderr[-2000:]
    # User errors and damaged files: one line of ours each (the backend may log its own start-up lines before it).
    cut_short(trained_ace.path, keep=0.5, out=tmp_path / "cut.keras")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    for args, message in [
        (("sample", trained_ace.path, "--class", 12), "--class must lie"),
        (("info", tmp_path / "cut.keras"), "cut.keras is damaged or not a .keras file"),
        (("control", trained_ace.path, "--dataset", "rts_mnist", "--data-dir", tmp_path / "data"), "mnist.npz is damaged"),
    ]:
        result = cli(*args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        ours = [line for line in result.stderr.splitlines() if line.startswith("python -m keras_ace")]
        assert len(ours) == 1 and message in ours[0], result.stderr[-2000:]
