"""The numbers beside each figure: test error, bound, plausibility, frames against the ground truth, control obedience."""

import os
import time

import keras
import numpy as np

from data_tools import files
from data_tools.pictures import background_green
from data_tools.pictures import background_saturation
from keras_ace.models.presets import PRESETS
from common.config import load_split
from common.judge import judged_accuracy
from common.judge import panel_judge
from common.judge import train_judge
from common.pictures import HORSE
from common.pictures import MANIFOLD_GRID
from common.pictures import MOVES
from common.pictures import SCALES
from common.pictures import TURNS
from common.pictures import centre_of_2d_grid
from common.runs import panel_steps
from common.runs import training_record


def panel_metrics(model, preset, config, grid_values):
    """Test error, NLL bound and estimate, and sample plausibility of one trained panel (`metrics.json`).

    `test_nll_bound_nats` is `evaluate`'s eq. 4.1 value on every test image (one sample
    of the bound; a plug-in value with symmetry statistics before keras_ace 0.5);
    `test_nll_estimate_nats` the importance-weighted estimate (`ACE.nll_estimate`), the
    one to compare panels by.

    `grid_values`: the (K, G, latent_dim) latent values of the panel's drawn grid, or None.
    """
    dataset = PRESETS[preset]["dataset"]
    x_test, y_test = load_split(dataset, "test", config.test_size, config.data_dir)
    results = model.evaluate(x_test, y_test, batch_size=250, verbose=0, return_dict=True)
    estimated = x_test[: config.estimate_images]
    print(f"{preset}: estimating -log p(x) on {len(estimated)} test images, {config.estimate_samples} samples each", flush=True)
    estimate = model.nll_estimate(estimated, samples=config.estimate_samples, seed=config.seed, verbose=int(not config.quick))
    # Per image, for paired comparisons of panels on the same test images.
    with files.atomic_write(os.path.join(config.output_dir, f"{preset}.nll_estimate.npy"), "wb") as f:
        np.save(f, estimate)
    judge, judge_accuracy, judge_per_class = panel_judge(dataset, config)
    per_class = [
        judged_accuracy(judge, model.sample(c, config.samples_per_class, seed=config.seed + c), c)
        for c in range(model.num_classes)
    ]
    metrics = {
        "test_classification_error": float(results["classification_error"]),
        "test_nll_bound_nats": float(results["nll_bound"]),
        "test_nll_estimate_nats": float(np.mean(estimate)),
        "test_nll_estimate_standard_error": float(np.std(estimate) / np.sqrt(len(estimate))),
        "nll_estimate_samples": config.estimate_samples,
        "nll_estimate_images": int(len(estimate)),
        "test_reconstruction_nats": float(results["reconstruction"]),
        "sample_plausibility": float(np.mean(per_class)),
        "sample_plausibility_per_class": per_class,
        "judge_test_accuracy": judge_accuracy,
        "judge_test_accuracy_per_class": judge_per_class,
        "test_images": int(len(x_test)),
        "training_steps": panel_steps(preset, config),
        **{f"training_{k}": v for k, v in training_record(preset, config.output_dir).items() if k != "epoch_wall_times_s"},
    }
    if dataset == "cifar10":
        horses = centre_of_2d_grid(model, HORSE)
        real_horses = x_test[y_test == HORSE]
        metrics["horse_grid_background_saturation"] = background_saturation(horses)
        metrics["horse_grid_background_green"] = background_green(horses)
        metrics["real_horse_background_saturation"] = background_saturation(real_horses)
        metrics["real_horse_background_green"] = background_green(real_horses)
        # The centre of the drawn horse grid, judged as the samples are.
        metrics["horse_grid_plausibility"] = judged_accuracy(judge, horses.reshape(-1, *model.image_shape), HORSE)
        if model.symmetry is not None:
            metrics["frame_spread"] = frame_spread(model, x_test)
            metrics.update(orientation_choice(model, real_horses))
        return metrics
    if grid_values is None:
        return metrics
    # The drawn grid, and the paper's [-4, 4] grid where quick mode draws another.
    grids = {"grid": grid_values, "prior_grid": np.repeat(MANIFOLD_GRID[None], model.num_classes, 0)}
    if model.symmetry is not None:
        grid_judge, grid_accuracy, _ = train_judge(dataset, config, canonical=True)
        metrics["canonical_judge_test_accuracy"] = grid_accuracy
    else:
        grid_judge = judge  # without symmetry statistics the grid is in the observation frame
    for name, values in grids.items():
        metrics[f"{name}_plausibility"] = float(
            np.mean([judged_accuracy(grid_judge, model.latent_grid(c, values[c]), c) for c in range(model.num_classes)])
        )
    if model.symmetry is not None:
        metrics["canonical_grid_plausibility"] = metrics["grid_plausibility"]
        if dataset in ("rts_mnist", "tc_mnist"):
            metrics["theta_truth_correlation"] = truth_correlation(model, dataset, config)
    metrics["grid_ranges"] = [[float(v[0, 0]), float(v[-1, 0])] for v in grid_values]
    return metrics


def learned_geometry(theta, image_size):
    """`keras_ace.layers.frame_geometry` of thetas, with the shift split into `shift_x` and `shift_y`."""
    from keras_ace.layers import frame_geometry

    g = frame_geometry(theta, image_size)
    return {"angle": g["angle"], "scale": g["scale"], "shift_x": g["shift"][:, 0], "shift_y": g["shift"][:, 1],
            "aspect": g["aspect"]}


# Test images on which the learned frames are compared with the ground truth.
TRUTH_IMAGES = 5000


def truth_correlation(model, dataset, config):
    """Pearson correlation of the frame the symmetry net infers with the data's ground truth.

    On the first `TRUTH_IMAGES` test images of RTS MNIST (shift x and y, angle, scale)
    or TC MNIST (the digit's position). The canonical frame is learned, so only the
    correlation means something, not the values: near 1 where the net undoes the
    distortion, near 0 where it ignores it.
    """
    from data_tools import load_dataset
    from data_tools.distortions import truth_geometry

    x, _, truth = load_dataset(dataset, "test", config.data_dir, return_truth=True)
    count = min(TRUTH_IMAGES, config.test_size or TRUTH_IMAGES)
    learned = learned_geometry(model.symmetry_statistics(x[:count])["theta"], model.image_shape[:2])
    true = truth_geometry(dataset, {k: v[:count] for k, v in truth.items()}, model.image_shape[0])
    return {k: float(np.corrcoef(learned[k], v)[0, 1]) for k, v in true.items()}


def orientation_choice(model, x):
    """With a mirror in the frames: how often images x are taken mirrored, and how sure the net is (else nothing).

    A mirrored image gets the reversed posterior by construction, so on a set holding
    each image both ways the choice is half and half; on real images it says whether
    the net uses the mirror at all.
    """
    if model.symmetry_net.discrete is None:
        return {}
    from scipy.special import softmax

    logits = [keras.ops.convert_to_numpy(model.symmetry_net(x[i : i + 250])["state_logits"]) for i in range(0, len(x), 250)]
    posterior = softmax(np.concatenate(logits), axis=1)
    return {"real_horse_mirrored_fraction": float(np.mean(np.argmax(posterior, axis=1) == 1)),
            "real_horse_orientation_confidence": float(np.mean(posterior.max(axis=1)))}


def frame_spread(model, x):
    """Median and spread of the frames the symmetry net infers on images x (no ground truth: CIFAR-10).

    A median scale above 1 means the net zooms out: the object shrinks inside the
    canonical frame, with empty borders around it.
    """
    geometry = learned_geometry(model.symmetry_statistics(x[:TRUTH_IMAGES])["theta"], model.image_shape[:2])
    return {f"{k}_{stat}": float(f(v)) for k, v in geometry.items() for stat, f in (("median", np.median), ("std", np.std))}


def machine():
    import platform

    # keras.distribution lists devices only where it supports the backend.
    if keras.backend.backend() in ("jax", "tensorflow"):
        devices = [str(d) for d in keras.distribution.list_devices()]
    else:
        devices = ["(not listed by Keras for this backend)"]
    return {"backend": keras.backend.backend(), "devices": devices,
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}


def run_record(start):
    """Where a run folder's numbers come from: its command, machine, package versions and time (`metrics.json`'s "run")."""
    import datetime
    import sys
    from importlib import metadata

    return {
        "command": " ".join(["python"] + sys.argv),
        "keras_ace_version": metadata.version("keras_ace"),
        "keras_version": keras.__version__,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": time.time() - start,
        **machine(),
    }


def control_obedience(columns):
    """How well the requested changes were obeyed, measured on the pictures' moments."""
    from data_tools import moments

    by_name = dict(columns)
    base = by_name["reconstruction"]
    com = moments.centre_of_mass(base)
    shifts = [moments.centre_of_mass(by_name[f"move {d}"]) - com - np.asarray(d) for d in MOVES]
    turns = {
        f"{a:+.0f}": float(np.median(_wrap(moments.orientation(by_name[f'turn {a:+.0f}']) - moments.orientation(base))))
        for a in TURNS
    }
    scales = {f"{s}": float(np.median(moments.spread(by_name[f"scale {s}"]) / moments.spread(base))) for s in SCALES}
    return {
        "translation_error_px_mean": float(np.mean(np.abs(shifts))),
        "translation_error_px_max": float(np.max(np.abs(shifts))),
        "requested_turn_vs_measured_median_deg": turns,
        "requested_scale_vs_measured_spread_ratio_median": scales,
        "note": "moments of the whole picture: parts pushed off the canvas shrink the measured change",
    }


def _wrap(degrees):
    """Differences of axis angles, wrapped into (-90, 90]."""
    return (np.asarray(degrees) + 90.0) % 180.0 - 90.0
