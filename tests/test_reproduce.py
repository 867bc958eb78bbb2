"""Every reproduce/ script end to end, in quick mode on tiny data (slow: fresh processes), and the parts they share."""

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest

from data_tools import files
from common import config as run_config
from common import metrics as run_metrics
from common import pictures as run_pictures
from common import runs
from tests.conftest import requires_cifar10
from tests.conftest import requires_mnist
from tests.helpers import cut_short

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--quick", "--train-size", "60", "--test-size", "30", "--epochs", "1", "--samples-per-class", "2", "--judge-epochs", "1", "--judge-train-size", "60",
        "--overrides", json.dumps({"encoder_units": [16, 16], "decoder_units": 16, "classifier_filters": [4, 4, 4],
                                   "classifier_units": 8, "ssn_filters": [4, 4], "ssn_units": 8, "conv_filters": [4, 8]})]
PANEL_KEYS = {"test_classification_error", "test_nll_bound_nats", "test_nll_estimate_nats", "nll_estimate_samples",
              "sample_plausibility", "sample_plausibility_per_class", "judge_test_accuracy"}


def built(model):
    """A model saved as training leaves it: its weights and its optimizer's."""
    model.build()
    model.optimizer.build(model.trainable_variables)
    return model


def run(script, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "reproduce", script), *args],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


def pixel_size(path):
    return matplotlib.image.imread(path).shape[:2]


def check_figure(out, figure, panels, expected_size, canonical):
    for file in (f"{figure}.png", "config.json", "metrics.json", *[f"{p}.keras" for p in panels]):
        assert os.path.exists(out / file), file
    assert pixel_size(out / f"{figure}.png") == expected_size
    metrics = json.loads((out / "metrics.json").read_text())
    for panel in panels:
        assert PANEL_KEYS <= set(metrics[panel])
        assert ("canonical_grid_plausibility" in metrics[panel]) == (canonical and "fig2" in panel)
    assert metrics["wall_time_s"] > 0 and "backend" in metrics["machine"]


@pytest.mark.slow
@requires_mnist
def test_fig2_draws_and_measures_its_panels(tmp_path):
    out = tmp_path / "fig2"
    run("fig2.py", *TINY, "--output-dir", str(out))
    # Quick mode draws RTS MNIST without and with symmetry statistics (Figure 1's panel against Figure 2's).
    panels = ["fig1_rts_mnist", "fig2_rts_mnist"]
    assert not (out / "fig2_mnist.keras").exists() and not (out / "fig2_tc_mnist.keras").exists()
    # 10 rows per class, 20 columns of 42x42: 420 px high, 840 + 840 px wide plus a gap of 4.
    check_figure(out, "fig2", panels, (420, 840 + 840 + 4), canonical=True)
    metrics = json.loads((out / "metrics.json").read_text())
    for panel in panels:
        assert {"grid_plausibility", "prior_grid_plausibility", "grid_ranges"} <= set(metrics[panel])
    # Learned frames against the RTS ground truth: only the panel that learns frames.
    assert "theta_truth_correlation" not in metrics["fig1_rts_mnist"]
    # Where each number comes from: the command, the machine and the package version.
    assert {"command", "keras_ace_version", "backend", "wall_time_s"} <= set(metrics["run"])
    # What the correlations are is tested on known frames (test_truth_correlation_of_known_frames).
    assert set(metrics["fig2_rts_mnist"]["theta_truth_correlation"]) == {"angle", "scale", "shift_x", "shift_y"}
    # The -log p(x) written is the saved model's estimate on the first test images, measured again here.
    x_test, _ = run_config.load_split("rts_mnist", "test", 30, None)
    estimate = runs.load_panel("fig2_rts_mnist", str(out)).nll_estimate(x_test, samples=20, seed=0)
    m = metrics["fig2_rts_mnist"]
    assert (m["nll_estimate_samples"], m["nll_estimate_images"]) == (20, 30)
    assert m["test_nll_estimate_nats"] == pytest.approx(estimate.mean(), rel=1e-5)
    np.testing.assert_allclose(np.load(out / "fig2_rts_mnist.nll_estimate.npy"), estimate, rtol=1e-5)
    for name in ("fig2_annotated.png", "curves.png", "history_fig1_rts_mnist.csv", "fig2_rts_mnist.settings.json"):
        assert (out / name).exists(), name
    # --from-models redraws without training: no new models, no metrics rewritten.
    before = (out / "metrics.json").stat().st_mtime
    redraw = tmp_path / "redraw"
    stdout = run("fig2.py", "--quick", "--from-models", str(out), "--output-dir", str(redraw))
    assert "Training" not in stdout
    assert pixel_size(redraw / "fig2.png") == (420, 1684)
    assert (out / "metrics.json").stat().st_mtime == before


@pytest.mark.slow
@requires_mnist
def test_fig1_panels_train_one_at_a_time(tmp_path):
    """--panels trains and draws only the named panels; metrics.json keeps the others' numbers.

    Figure 1's whole run is this test's two runs (the same drawing code as Figure 2's).
    """
    out = tmp_path / "fig1"
    run("fig1.py", *TINY, "--output-dir", str(out), "--panels", "fig1_mnist")
    assert (out / "fig1_mnist.keras").exists() and not (out / "fig1_rts_mnist.keras").exists()
    assert pixel_size(out / "fig1.png") == (280, 560)
    run("fig1.py", *TINY, "--output-dir", str(out), "--panels", "fig1_rts_mnist")
    check_figure(out, "fig1", ["fig1_rts_mnist"], (420, 840), canonical=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"fig1_mnist", "fig1_rts_mnist"} <= set(metrics)
    for panel in ("fig1_mnist", "fig1_rts_mnist"):
        assert PANEL_KEYS | {"grid_plausibility", "grid_ranges"} <= set(metrics[panel])
        assert "theta_truth_correlation" not in metrics[panel]  # no learned frame without symmetry statistics
    assert metrics["fig1_mnist"]["training_epochs"] == 1 and metrics["fig1_mnist"]["training_wall_time_s"] > 0
    for name in ("fig1_annotated.png", "curves.png", "history_fig1_mnist.csv", "history_fig1_rts_mnist.csv"):
        assert (out / name).exists(), name
    # A panel whose recorded settings differ from the run's is not carried over.
    config = run_config.RunConfig.from_args("fig1", run_config.add_arguments(argparse.ArgumentParser(), "fig1").parse_args(TINY))
    config = dataclasses.replace(config, output_dir=str(out))
    assert runs.trained_with("fig1_mnist", config)
    assert not runs.trained_with("fig1_mnist", dataclasses.replace(config, seed=1))


@pytest.mark.slow
@requires_cifar10
# Figure 4's spatial panel differs from its colour panel only by the colour statistics:
# the colour panel alone tests what Figure 3 does not. The mirror panel is drawn when named.
@pytest.mark.parametrize("figure, panels", [("fig3", ["fig3_cifar10", "fig3_cifar10_sss", "fig3_cifar10_sss_mirror"]),
                                            ("fig4", ["fig4_cifar10_spatial_color"])],
                         ids=["fig3", "fig4"])
def test_cifar10_figures(figure, panels, tmp_path):
    out = tmp_path / figure
    chosen = ["--panels", *panels]
    run(f"{figure}.py", *TINY, *chosen, "--output-dir", str(out))
    # Panels of 7x7 images of 32x32, with gaps of 4.
    check_figure(out, figure, panels, (224, len(panels) * 228 - 4), canonical=False)
    metrics = json.loads((out / "metrics.json").read_text())
    for panel in panels:
        # The number written is the saved model's canonical horse grid, measured again here.
        model = runs.load_panel(panel, str(out))
        grid = run_pictures.centre_of_2d_grid(model, run_pictures.HORSE)
        saturation = run_metrics.background_saturation(grid)
        assert metrics[panel]["horse_grid_background_saturation"] == pytest.approx(saturation, abs=1e-5)
        assert ("frame_spread" in metrics[panel]) == (panel != "fig3_cifar10")
        assert ("real_horse_mirrored_fraction" in metrics[panel]) == panel.endswith("mirror")
        assert (out / f"{panel}_orientation.png").exists() == panel.endswith("mirror")
        assert 0 <= metrics[panel]["horse_grid_plausibility"] <= 1
    stdout = run(f"{figure}.py", *chosen, "--from-models", str(out), "--output-dir", str(tmp_path / "redraw"))
    assert "Training" not in stdout


def test_table_puts_figure_1_next_to_figure_2(tmp_path, capsys):
    import table

    def panel(error, **extra):
        return {"test_classification_error": error, "test_nll_bound_nats": 150.0, "sample_plausibility": 0.5,
                "grid_plausibility": 0.75, "training_epochs": 8, "training_wall_time_s": 600.0, **extra}

    for figure, metrics in (("fig1", {"fig1_rts_mnist": panel(0.05)}),  # measured before the estimate existed
                            ("fig2", {"fig2_rts_mnist": panel(0.02, theta_truth_correlation={"angle": 0.9},
                                                              test_nll_estimate_nats=140.25, nll_estimate_samples=100)})):
        (tmp_path / figure).mkdir()
        (tmp_path / figure / "metrics.json").write_text(json.dumps(metrics))
        # Per-image estimates on the same three test images: Fig. 2 lower by 2, 4 and 6 nats.
        np.save(tmp_path / figure / f"{figure}_rts_mnist.nll_estimate.npy", [140.0, 150.0, 160.0] if figure == "fig2"
                else [142.0, 154.0, 166.0])
    table.main([str(tmp_path / "fig1"), str(tmp_path / "fig2")])
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 3  # header, rule, RTS MNIST (no MNIST or TC panels in either folder)
    assert rows[2].startswith("| RTS MNIST | 8 / 8 | 10 min / 10 min | 5.00% / 2.00% | - / 140.2 (k=100) | 150.0 / 150.0 |")
    assert "| -4.0 ± 0.9 | angle +0.90" in rows[2]  # the differences' standard deviation 1.63 over sqrt(3)


def test_epochs_per_data_set():
    parser = run_config.add_arguments(argparse.ArgumentParser(), "fig2")
    config = run_config.RunConfig.from_args("fig2", parser.parse_args(["--epochs", "mnist=4,rts_mnist=8"]))
    assert config.for_dataset("mnist").epochs == 4 and config.for_dataset("rts_mnist").epochs == 8
    assert config.for_dataset("tc_mnist").epochs == run_config.DEFAULT_EPOCHS
    quick = run_config.RunConfig.from_args("fig2", parser.parse_args(["--quick", "--epochs", "mnist=3"]))
    assert quick.for_dataset("mnist").epochs == 3 and quick.for_dataset("rts_mnist").epochs == run_config.QUICK_EPOCHS["rts_mnist"]
    assert run_config.RunConfig.from_args("fig2", parser.parse_args(["--epochs", "6"])).for_dataset("tc_mnist").epochs == 6
    for bad in ("svhn=3", "mnist=four", "mnist:3"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--epochs", bad])


def test_background_saturation_reads_the_outer_ring():
    import numpy as np

    grey = np.full((2, 32, 32, 3), 0.5, np.float32)
    assert run_metrics.background_saturation(grey) == 0.0
    red_ring, red_centre = grey.copy(), grey.copy()
    red_ring[:, :, :4] = (1.0, 0.0, 0.0)  # the left 4 columns: 128 of the ring's 448 pixels
    red_centre[:, 4:-4, 4:-4] = (1.0, 0.0, 0.0)
    assert run_metrics.background_saturation(red_ring) == pytest.approx(4 * 32 / (32 * 32 - 24 * 24))
    assert run_metrics.background_saturation(red_centre) == 0.0


@pytest.mark.slow
@requires_mnist
def test_control_and_frames_scripts(trained_ace, tmp_path):
    """control.py and frames.py on the shared tiny RTS MNIST model."""
    out = tmp_path / "control"
    run("control.py", "--model", str(trained_ace.path), "--count", "3", "--output-dir", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    # input, reconstruction, 4 moves, 2 turns, 2 scales, 3 random frames: 13 columns of 42 px, gaps of 2.
    assert len(metrics["columns"]) == 13
    assert pixel_size(out / "control.png") == (3 * 42 + 2 * 2, 13 * 42 + 12 * 2)
    assert {"translation_error_px_mean", "requested_turn_vs_measured_median_deg",
            "requested_scale_vs_measured_spread_ratio_median"} <= set(metrics)
    # The frames of sample() against the data's, on the same model.
    run("frames.py", "--model", str(trained_ace.path), "--count", "50", "--output-dir", str(tmp_path / "frames"))
    frames = json.loads((tmp_path / "frames" / "frames.json").read_text())
    assert set(frames["data (ground truth)"]) == {"angle", "scale", "shift_x", "shift_y"}
    assert "aspect" in frames["sample(), fitted frames"] and (tmp_path / "frames" / "frames.png").exists()


@requires_mnist
def test_truth_correlation_of_known_frames():
    """Frames built from the RTS ground truth correlate 1 with it; the same frames shuffled, about 0."""
    import numpy as np

    from data_tools import load_dataset

    _, _, truth = load_dataset("rts_mnist", "test", return_truth=True)
    count = run_metrics.TRUTH_IMAGES
    angle = np.radians(truth["angle"][:count])
    scale = truth["scale"][:count]
    shift = truth["shift"][:count] / ((42 - 1) / 2.0)
    # theta maps canonical to observation: A = scale * R(angle), R turning counter-clockwise on screen.
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    theta = np.stack([cos, sin, shift[:, 0], -sin, cos, shift[:, 1]], axis=1).astype(np.float32)

    class Known:
        image_shape = (42, 42, 1)

        def __init__(self, theta):
            self.theta = theta

        def symmetry_statistics(self, x):
            return {"theta": self.theta[: len(x)]}

    config = run_config.RunConfig(figure="fig2", output_dir="unused")
    exact = run_metrics.truth_correlation(Known(theta), "rts_mnist", config)
    assert set(exact) == {"angle", "scale", "shift_x", "shift_y"}
    assert min(exact.values()) > 0.999, exact
    shuffled = run_metrics.truth_correlation(Known(np.random.default_rng(0).permutation(theta)), "rts_mnist", config)
    assert max(abs(r) for r in shuffled.values()) < 0.1, shuffled


def test_resume_skips_a_finished_panel(tmp_path, monkeypatch):
    """A rerun loads the saved panel instead of training it again."""
    import keras

    from tests.test_model import tiny_ace

    config = run_config.RunConfig(figure="fig2", output_dir=str(tmp_path))
    built(tiny_ace((28, 28, 1))).save(str(tmp_path / "fig2_mnist.keras"))
    run_config.write_json(runs.panel_settings("fig2_mnist", config), str(tmp_path / "fig2_mnist.settings.json"))
    monkeypatch.setattr(runs, "load_split", lambda *a, **k: pytest.fail("tried to load data to train"))
    model = runs.train_panel("fig2_mnist", config)
    assert isinstance(model, keras.Model) and model.image_shape == (28, 28, 1)


def fig2_error(capsys, args):
    """Figure 2's command line on `args` (panel fig2_mnist), which must end in status 2 and one line on stderr: that line."""
    from common.figure import main
    from common.pictures import class_manifold_panels

    with pytest.raises(SystemExit) as stopped:
        main("fig2", ("fig2_mnist",), class_manifold_panels, "", [*args, "--panels", "fig2_mnist"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and len(err) == 1, err
    return err[0]


def test_a_figure_run_names_a_damaged_file_in_one_line(tmp_path, capsys, monkeypatch):
    """A data file cut short, and a saved panel cut short: exit status 2, one line naming the file."""
    from tests.test_model import tiny_ace

    data = tmp_path / "data"
    data.mkdir()
    (data / "mnist.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    monkeypatch.setenv("KERAS_ACE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "fig2"
    line = fig2_error(capsys, ["--quick", "--data-dir", str(data), "--output-dir", str(out)])
    assert re.search(r"^fig2: error: .*mnist\.npz is damaged", line), line

    config = run_config.RunConfig(figure="fig2", output_dir=str(out))
    built(tiny_ace((28, 28, 1))).save(str(out / "fig2_mnist.keras"))
    cut_short(out / "fig2_mnist.keras", keep=0.5)
    run_config.write_json(runs.panel_settings("fig2_mnist", config), str(out / "fig2_mnist.settings.json"))
    with pytest.raises(files.DamagedFileError, match=r"fig2_mnist\.keras is damaged or not a \.keras file"):
        runs.train_panel("fig2_mnist", config)


def test_an_output_folder_that_cannot_be_made_is_one_line_before_training(tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    line = fig2_error(capsys, ["--quick", "--output-dir", str(tmp_path / "a_file" / "fig2")])
    assert re.search(r"^fig2: error: cannot write .*a_file.*a part of the path is a file", line), line


@requires_mnist
def test_a_disk_without_room_for_the_models_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))  # 1 MiB free
    monkeypatch.setattr(runs.TrainingClock, "on_train_begin", lambda *a: pytest.fail("training started"))
    line = fig2_error(capsys, [*TINY, "--output-dir", str(tmp_path / "fig2")])
    assert re.search(r"^fig2: error: .*fig2 has 1 MiB free; training fig2_mnist writes about \d+ MiB", line), line


@requires_mnist
def test_a_judge_is_reused_only_with_its_settings(tmp_path, monkeypatch):
    from common import judge as run_judge

    config = run_config.RunConfig(figure="fig1", output_dir=str(tmp_path), test_size=30, judge_epochs=1, judge_train_size=60)
    trained = []
    network = run_judge.judge_network
    monkeypatch.setattr(run_judge, "judge_network", lambda *a, **k: trained.append(1) or network(*a, **k))
    run_judge.train_judge("mnist", config)
    run_judge.train_judge("mnist", config)  # the cached judge: its settings are this run's
    assert len(trained) == 1
    run_judge.train_judge("mnist", dataclasses.replace(config, judge_epochs=2))
    assert len(trained) == 2 and files.read_json(str(tmp_path / "judge_mnist.settings.json"))["judge_epochs"] == 2
    (tmp_path / "judge_mnist.settings.json").unlink()  # a judge copied in alone is reused
    run_judge.train_judge("mnist", config)
    assert len(trained) == 2


def test_history_file_continues_across_resumes_and_drops_a_cut_row(tmp_path):
    path = str(tmp_path / "history_fig2_mnist.csv")
    first = runs.HistoryFile(path)
    for epoch in range(2):
        first.on_epoch_end(epoch, {"loss": 10.0 - epoch, "val_loss": 11.0 - epoch})
    with open(path, "a") as f:
        f.write("2,8.0")  # what CSVLogger leaves when killed in the middle of a row
    resumed = runs.HistoryFile(path)  # BackupAndRestore repeats epoch 1, then goes on
    resumed.on_epoch_end(1, {"loss": 8.5, "val_loss": 9.5})
    resumed.on_epoch_end(2, {"loss": 7.5, "val_loss": 8.5})
    history = run_pictures.read_history(path)
    np.testing.assert_array_equal(history["epoch"], [0, 1, 2])
    np.testing.assert_array_equal(history["loss"], [10.0, 8.5, 7.5])
    assert open(path).readline().strip() == "epoch,loss,val_loss" and os.listdir(tmp_path) == ["history_fig2_mnist.csv"]


def test_a_model_trained_with_other_settings_is_not_reused(tmp_path, monkeypatch):
    from tests.test_model import tiny_ace

    config = run_config.RunConfig(figure="fig2", output_dir=str(tmp_path), epochs=3)
    built(tiny_ace((28, 28, 1))).save(str(tmp_path / "fig2_mnist.keras"))
    monkeypatch.setattr(runs, "load_split", lambda *a, **k: pytest.fail("tried to load data to train"))
    with pytest.raises(runs.StaleModelError, match="no record of its settings"):
        runs.train_panel("fig2_mnist", config)
    run_config.write_json(runs.panel_settings("fig2_mnist", config), str(tmp_path / "fig2_mnist.settings.json"))
    other = run_config.RunConfig(figure="fig2", output_dir=str(tmp_path), epochs=5, overrides={"decoder_units": 8})
    with pytest.raises(runs.StaleModelError, match=r"epochs 3 \(now 5\), overrides \{\} \(now \{'decoder_units': 8\}\)"):
        runs.train_panel("fig2_mnist", other)


SIGTERM_RUN = dict(train_size=1000, test_size=30, epochs=2, seed=3, overrides={
    "encoder_units": [16, 16], "decoder_units": 16, "classifier_filters": [4, 4, 4], "classifier_units": 8,
    "ssn_filters": [4, 4], "ssn_units": 8})  # 4 steps an epoch


@requires_mnist
def test_a_run_stopped_by_sigterm_goes_on_from_that_step_as_if_uninterrupted(tmp_path, monkeypatch):
    """SIGTERM at epoch 1, step 3 of 4; the same call goes on from there to the same weights, bit for bit."""
    import signal

    import keras_ace
    from keras_ace import training

    whole = runs.train_panel("fig2_mnist", run_config.RunConfig(figure="fig2", output_dir=str(tmp_path / "a"), **SIGTERM_RUN),
                             verbose=0)
    config = run_config.RunConfig(figure="fig2", output_dir=str(tmp_path / "b"), **SIGTERM_RUN)
    step_end = training.BackupAndRestore.on_train_batch_end
    ended = []

    def terminated_at_step_3(self, batch, logs=None):
        ended.append(batch)
        if len(ended) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return step_end(self, batch, logs)

    monkeypatch.setattr(training.BackupAndRestore, "on_train_batch_end", terminated_at_step_3)
    with pytest.raises(keras_ace.TrainingInterrupted, match=r"SIGTERM: stopped at epoch 1, step 3 .*run the same command"):
        runs.train_panel("fig2_mnist", config, verbose=0)
    assert keras_ace.BackupAndRestore.position(str(tmp_path / "b" / "backup_fig2_mnist")) == (0, 3)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is handed back
    monkeypatch.setattr(training.BackupAndRestore, "on_train_batch_end", step_end)
    resumed = runs.train_panel("fig2_mnist", config, verbose=0)
    assert int(resumed.optimizer.iterations) == int(whole.optimizer.iterations) == 8
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    history = runs.read_history_rows(str(tmp_path / "b" / "history_fig2_mnist.csv"))
    assert [row["epoch"] for row in history] == [0, 1]


@pytest.mark.slow
@requires_mnist
def test_sigterm_to_a_figure_script_ends_in_one_line_and_the_same_command_goes_on(tmp_path):
    """A real process: backed up every step, terminated in epoch 2; exits in seconds with status 2, then finishes."""
    import signal
    import time

    out = tmp_path / "fig2"
    command = [sys.executable, os.path.join(ROOT, "reproduce", "fig2.py"), "--quick", "--panels", "fig2_mnist",
               "--train-size", "1000", "--test-size", "30", "--epochs", "2", "--samples-per-class", "2",
               "--judge-epochs", "1", "--judge-train-size", "60", "--backup-every", "1",
               "--overrides", json.dumps(SIGTERM_RUN["overrides"]), "--output-dir", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    backup = str(out / "backup_fig2_mnist")
    from keras_ace import BackupAndRestore

    while (BackupAndRestore.position(backup) or (0, 0)) < (1, 1) and process.poll() is None:
        time.sleep(0.05)
    sent = time.time()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and time.time() - sent < 30, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("fig2: error:")]
    assert len(lines) == 1 and re.search(r"SIGTERM: stopped at epoch 2, step \d.*run the same command", lines[0]), err[-2000:]
    stopped_at = BackupAndRestore.position(backup)
    finished = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert (out / "fig2_mnist.keras").exists() and not os.path.exists(backup) and stopped_at[0] == 1


@pytest.mark.slow
@requires_mnist
def test_an_interrupted_panel_resumes_and_a_finished_one_trains_on(tmp_path, monkeypatch):
    """Resumes after the last finished epoch; more epochs later train the saved panel on.

    The history, wall time and optimizer (whose iterations drive the decay) carry on
    across the interruptions and the lengthening.
    """
    import keras

    small = {"encoder_units": [8, 8], "decoder_units": 8, "classifier_filters": [2, 2, 2], "classifier_units": 4,
             "ssn_filters": [2, 2], "ssn_units": 4}

    def config(epochs):
        return run_config.RunConfig(figure="fig2", output_dir=str(tmp_path), epochs=epochs, train_size=40, test_size=20,
                                     overrides=small, seed=5)

    def interrupted_after(last_epoch):
        class Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch == last_epoch:
                    raise KeyboardInterrupt

        return lambda self, *a, callbacks=(), **k: real_fit(self, *a, callbacks=[*callbacks, Interrupt()], **k)

    def steps_taken(model):  # one step per epoch: 40 images, batch 250
        return int(keras.ops.convert_to_numpy(model.optimizer.iterations))

    def check_record(epochs):
        history = (tmp_path / "history_fig2_mnist.csv").read_text().strip().splitlines()
        assert [line.split(",")[0] for line in history[1:]] == [str(e) for e in range(epochs)]
        record = runs.training_record("fig2_mnist", str(tmp_path))
        assert record["epochs"] == epochs and len(record["epoch_wall_times_s"]) == epochs
        assert record["wall_time_s"] == pytest.approx(sum(record["epoch_wall_times_s"]))

    real_fit = keras.Model.fit
    monkeypatch.setattr(keras.Model, "fit", interrupted_after(1))
    with pytest.raises(KeyboardInterrupt):
        runs.train_panel("fig2_mnist", config(3))
    monkeypatch.setattr(keras.Model, "fit", real_fit)
    assert steps_taken(runs.train_panel("fig2_mnist", config(3))) == 3  # epoch 3 only, after the backup of 2
    check_record(3)
    # Lengthened to 5 epochs, interrupted after the 4th, then finished.
    monkeypatch.setattr(keras.Model, "fit", interrupted_after(3))
    with pytest.raises(KeyboardInterrupt):
        runs.train_panel("fig2_mnist", config(5))
    assert runs.recorded_settings("fig2_mnist", str(tmp_path))["epochs"] == 3  # the saved model is still the 3-epoch one
    monkeypatch.setattr(keras.Model, "fit", real_fit)
    assert steps_taken(runs.train_panel("fig2_mnist", config(5))) == 5
    check_record(5)
    assert runs.trained_with("fig2_mnist", config(5)) and not (tmp_path / "backup_fig2_mnist").exists()
    with pytest.raises(runs.StaleModelError, match=r"epochs 5 \(now 3\)"):
        runs.train_panel("fig2_mnist", config(3))


@pytest.mark.slow
@requires_cifar10
def test_the_cifar10_judge_is_trained_once_and_kept_in_the_cache(tmp_path, monkeypatch):
    """Trained on first use (here: one epoch on 512 images), saved to the cache, loaded after; a damaged file is trained again."""
    from common import judge as run_judge

    monkeypatch.setenv("KERAS_ACE_CACHE", str(tmp_path))
    monkeypatch.setattr(run_judge, "CIFAR10_JUDGE_BATCH", 128)
    model, record = run_judge.cifar10_judge(epochs=1, train_size=512)
    assert record["training_images"] == 512 and len(record["test_accuracy_per_class"]) == 10
    again, same = run_judge.cifar10_judge(epochs=1, train_size=512)
    assert same == record and "Training" not in str(same)
    x, _ = run_config.load_split("cifar10", "test", 8, None)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    cut_short(str(tmp_path / f"{run_judge.CIFAR10_JUDGE_NAME}.keras"))
    _, retrained = run_judge.cifar10_judge(epochs=1, train_size=512)
    assert retrained["training_images"] == 512
