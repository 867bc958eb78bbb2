"""One figure script from end to end: train or load its panels, draw, measure, write the files."""

import dataclasses
import os

import keras

from data_tools import files
from data_tools.pictures import save_annotated_png
from data_tools.pictures import save_png
from data_tools.pictures import side_by_side
from keras_ace import distributed
from keras_ace import runtime
from keras_ace.models.presets import PRESETS
from keras_ace.training import TrainingInterrupted
from common.config import RunConfig
from common.config import add_arguments
from common.config import write_json
from common.metrics import machine
from common.metrics import run_record
from common.metrics import panel_metrics
from common.pictures import manifold_values
from common.pictures import panel_title
from common.pictures import save_orientation_picture
from common.pictures import save_curves
from common.runs import StaleModelError
from common.runs import NoRoomError
from common.runs import TrainingStopped
from common.runs import load_panel
from common.runs import panel_steps
from common.runs import train_panel
from common.runs import train_panels_over_processes
from common.runs import trained_with


def training_minutes(metrics):
    """`" (N min of training)"` where a panel's metrics hold its recorded training time, else `""`."""
    seconds = metrics.get("training_wall_time_s")
    return f" ({seconds / 60:.0f} min of training)" if seconds is not None else ""


def chosen_panels(config, panels, quick_panels, more_panels=()):
    """The panels a run draws: `--panels` (any of the figure's, `more_panels` too), else quick mode's or the full figure's."""
    if config.panels is not None:
        return [p for p in dict.fromkeys((*panels, *quick_panels, *more_panels)) if p in config.panels]
    if config.quick and quick_panels:
        print(f"Quick mode draws {', '.join(quick_panels)} (full mode: {', '.join(panels)}).", flush=True)
        return list(quick_panels)
    return list(panels)


def run_figure(config, panels, picture, quick_panels=(), more_panels=()):
    """Trains (or loads) each panel, writes `<figure>.png`, `config.json` and `metrics.json`.

    `quick_panels`: what quick mode draws instead of `panels` (empty: the same);
    `more_panels`: drawn only when `--panels` names them (beyond the paper). With
    `config.from_models`, loads the panels from that folder and only redraws.
    """
    import time

    start = time.time()
    os.makedirs(config.output_dir, exist_ok=True)
    panels = chosen_panels(config, panels, quick_panels, more_panels)
    if config.from_models:
        models = [load_panel(p, config.from_models) for p in panels]
    elif config.distribute:
        models = train_panels_over_processes(panels, config)
        if models is None:  # not process 0: it trained its share
            return None
    else:
        models = [train_panel(p, config) for p in panels]
    png = os.path.join(config.output_dir, f"{config.figure}.png")
    grids = [manifold_values(m, p, config) for p, m in zip(panels, models)]
    pictures = picture(models, grids)
    save_png(side_by_side(pictures), png)
    print(f"Wrote {png}", flush=True)
    if config.from_models:
        return None
    metrics = {p: panel_metrics(m, p, config, g) for p, m, g in zip(panels, models, grids)}
    figure_metrics = os.path.join(config.output_dir, "metrics.json")
    earlier = {}
    if config.panels is not None and os.path.exists(figure_metrics):
        # The panels not trained now keep their numbers (their models are in this folder).
        earlier = files.read_json(figure_metrics)
        kept = {p: earlier[p] for p in earlier if p in PRESETS and p not in metrics and trained_with(p, config)}
        metrics = {**kept, **metrics}
    metrics["wall_time_s"] = time.time() - start
    caption = (f"{config.figure}{' quick mode' if config.quick else ''}: "
               + "; ".join(f"{p} {panel_steps(p, config)} steps{training_minutes(metrics[p])}" for p in panels)
               + f"; {metrics['wall_time_s'] / 60:.1f} min for this run on {keras.backend.backend()}. Samples and grids "
               "judged by an independent CNN: the fraction recognised as their class (chance 10%).")
    if all(g is None for g in grids):
        caption += ("\nEach horse grid is the horse decoder's output over its 2-D latent grid, drawn in the canonical "
                    "frame: no frame or colour statistics applied.")
    if config.quick and any(g is not None for g in grids):
        caption += ("\nQuick mode: each row spans its class's own latent range (central 96% of its training "
                    "posterior means), not the paper's [-4, 4], which a few hundred steps do not yet fill.")
    annotated = os.path.join(config.output_dir, f"{config.figure}_annotated.png")
    save_annotated_png(pictures, [panel_title(p, metrics[p]) for p in panels], caption, annotated)
    metrics["machine"] = machine()
    metrics["run"] = run_record(start)
    if "run" in earlier:  # the commands that trained the panels kept
        metrics["earlier_runs"] = [earlier["run"], *earlier.get("earlier_runs", [])]
    write_json(dataclasses.asdict(config), os.path.join(config.output_dir, "config.json"))
    write_json(metrics, figure_metrics)
    save_curves(panels, config.output_dir, os.path.join(config.output_dir, "curves.png"))
    for p, m in zip(panels, models):
        save_orientation_picture(m, p, config)
    for p in panels:
        m = metrics[p]
        extra = f", grid plausibility {m['grid_plausibility']:.1%}" if "grid_plausibility" in m else ""
        print(f"{p} ({panel_steps(p, config)} steps): test error {m['test_classification_error']:.2%}, -log p(x) {m['test_nll_estimate_nats']:.1f} nats "
              f"(k={m['nll_estimate_samples']}; eq. 4.1 bound {m['test_nll_bound_nats']:.1f}), "
              f"sample plausibility {m['sample_plausibility']:.1%} (judge {m['judge_test_accuracy']:.1%}){extra}")
    return metrics


def main(figure, panels, picture, description, argv=None, quick_panels=(), more_panels=()):
    """The whole command line of a figure script (`quick_panels`: what `--quick` draws, if not `panels`;
    `more_panels`: what `--panels` may name beyond them)."""
    import argparse

    if argv is None:  # this process's own command line (not a test's call): it may be started again
        runtime.configure()

    from data_tools.files import DamagedFileError
    from data_tools.sources import DataNotFoundError

    choices = tuple(dict.fromkeys((*panels, *quick_panels, *more_panels)))
    parser = add_arguments(argparse.ArgumentParser(description=description), figure, choices)
    config = RunConfig.from_args(figure, parser.parse_args(argv))
    if config.distribute:
        try:
            distributed.initialize()  # first, before any computation; from Keras' KERAS_DISTRIBUTION_* variables
        except ValueError as error:  # another backend, or a variable missing
            parser.exit(2, f"{figure}: error: {error}\n")
    try:
        run_figure(config, panels, picture, quick_panels, more_panels)
    except (DataNotFoundError, DamagedFileError, StaleModelError, TrainingStopped, TrainingInterrupted, NoRoomError,
            FileNotFoundError) as error:
        # Errors of the user's data, folders or run: one line, no traceback.
        parser.exit(2, f"{figure}: error: {error}\n")
    except OSError as error:  # a full disk, a read-only or impossible --output-dir
        parser.exit(2, f"{figure}: error: {files.unwritable(error)}. Rerun the same command to go on.\n")
    if config.distribute:
        distributed.wait_for_all()  # the others wait for process 0's measurements
    return 0
