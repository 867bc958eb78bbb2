"""What the figures draw: class manifolds (Figs. 1-2), horse grids (Figs. 3-4), training curves, control columns."""

import os

import numpy as np

from data_tools.pictures import mosaic
from data_tools.pictures import save_figure
from keras_ace.models.presets import PRESETS
from common.config import load_split
from common.runs import read_history_rows


def class_manifold(model, values):
    """One row per class of the class's decoder over its `values[c]` (G, latent_dim): (K, G, H, W, C)."""
    return np.stack([model.latent_grid(c, values[c]) for c in range(model.num_classes)])


def centre_of_2d_grid(model, class_id, size=30, extent=6.0, shown=7):
    """The central `shown` x `shown` part of a `size` x `size` grid over [-extent, extent]^2: (shown, shown, H, W, C)."""
    axis = np.linspace(-extent, extent, size)
    start = (size - shown) // 2
    axis = axis[start : start + shown]
    # Rows go up the grid as the second latent grows, as in the paper's pictures.
    values = np.asarray([[a, b] for b in axis[::-1] for a in axis], np.float32)
    return model.latent_grid(class_id, values).reshape(shown, shown, *model.image_shape)


CURVES = ("reconstruction", "generative", "classification", "classification_error")


def read_history(path):
    """A history CSV (`common.runs.HistoryFile`) as {column: float array}; empty when there is none."""
    rows = read_history_rows(path)
    return {k: np.asarray([float(r.get(k, np.nan)) for r in rows]) for k in (rows[0] if rows else {})}


def save_curves(panels, output_dir, path):
    """Per panel, the loss terms and the classification error against epochs, train and test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(panels), len(CURVES), figsize=(3.2 * len(CURVES), 2.4 * len(panels)), squeeze=False)
    for row, preset in zip(axes, panels):
        history = read_history(os.path.join(output_dir, f"history_{preset}.csv"))
        for axis, key in zip(row, CURVES):
            for prefix, label in (("", "train"), ("val_", "test")):
                if prefix + key in history:
                    axis.plot(history["epoch"] + 1, history[prefix + key], marker="o", label=label)
            axis.set_title(f"{preset}: {key}", fontsize=8)
            axis.set_xlabel("epoch", fontsize=8)
        row[0].legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path, dpi=80)
    plt.close(figure)


MANIFOLD_GRID = np.linspace(-4.0, 4.0, 20, dtype=np.float32)[:, None]  # Figs. 1-2: 20 values in [-4, 4]


HORSE = 7  # CIFAR10's horse class (Figs. 3-4)


# Quick mode draws each class over its own latent range: the central 96 % of the
# posterior means of the class's training images. After a few hundred steps each
# class's posterior sits on one side of zero (e.g. 1.5 +/- 0.6) and the decoder's other
# side is an untrained photographic negative; the paper's [-4, 4] assumes the
# aggregate posterior has reached the prior, which takes several epochs.
QUICK_RANGE_IMAGES = 2000


QUICK_RANGE_PERCENTILES = (2.0, 98.0)


def manifold_values(model, preset, config):
    """The (K, 20, 1) latent values of each class's row in Figures 1-2 (None for 2-D latents)."""
    if model.latent_dim != 1:
        return None
    if not config.quick:
        return np.repeat(MANIFOLD_GRID[None], model.num_classes, 0)
    x, y = load_split(PRESETS[preset]["dataset"], "train", QUICK_RANGE_IMAGES, config.data_dir)
    means = model.latent_means(x, y)[:, 0]
    rows = []
    for c in range(model.num_classes):
        low, high = np.percentile(means[y == c], QUICK_RANGE_PERCENTILES) if np.any(y == c) else (-4.0, 4.0)
        rows.append(np.linspace(low, high, len(MANIFOLD_GRID), dtype=np.float32)[:, None])
    return np.stack(rows)


def class_manifold_panels(models, grids):
    """Figs. 1-2: per panel, one row per class over its grid of 20 values."""
    return [mosaic(class_manifold(m, g)) for m, g in zip(models, grids)]


def horse_panels(models, grids=None):
    """Figs. 3-4: per panel, the central 7x7 of the horse class's 30x30 grid."""
    return [mosaic(centre_of_2d_grid(m, HORSE)) for m in models]


ORIENTATION_HORSES = 16  # real test horses in the orientation picture


def save_orientation_picture(model, preset, config):
    """With a mirror in the frames: real test horses over the canonical images the net reads, as `<preset>_orientation.png`.

    The top row is each input, the bottom row the same horse in the canonical frame the
    net chose (moved, scaled, and mirrored where it is marked); horses facing one way
    in the bottom row are what the mirror is for. Nothing without a mirror.
    """
    from data_tools.pictures import save_annotated_png

    if model.symmetry is None or model.symmetry_net.discrete is None:
        return None
    x, y = load_split(PRESETS[preset]["dataset"], "test", config.test_size, config.data_dir)
    x = x[y == HORSE][:ORIENTATION_HORSES]
    from keras import ops

    outputs = model(x)
    canonical = ops.convert_to_numpy(outputs["canonical"])
    mirrored = ops.convert_to_numpy(outputs["mirror"])[:, 0] > 0.5
    marks = canonical.copy()
    marks[mirrored, :2] = (1.0, 0.0, 0.0)  # a red bar over the mirrored ones
    path = os.path.join(config.output_dir, f"{preset}_orientation.png")
    save_annotated_png([mosaic(np.stack([x, marks]), gap=2)], [f"{preset}: real test horses (top) and what the net reads"],
                       f"Bottom row: each horse in the canonical frame its symmetry statistics chose; a red bar marks "
                       f"the {mirrored.sum()} of {len(x)} the net mirrored.", path)
    return path


def likelihood(metrics):
    """The panel's -log p(x) estimate, or for runs measured before it, its eq. 4.1 bound, said as such."""
    if "test_nll_estimate_nats" in metrics:
        return f"-log p(x) {metrics['test_nll_estimate_nats']:.0f} nats (k={metrics['nll_estimate_samples']})"
    return f"eq. 4.1 bound {metrics['test_nll_bound_nats']:.0f} nats"


def panel_title(preset, metrics):
    """One panel's caption: what it is and how its samples and grid were judged."""
    symmetry = PRESETS[preset]["symmetry"]
    lines = [f"{preset}, {'no' if symmetry is None else symmetry.replace('_', ' and ')} symmetry statistics",
             f"test error {metrics['test_classification_error']:.1%}, {likelihood(metrics)}"]
    judged = f"samples judged {metrics['sample_plausibility']:.0%} (judge {metrics['judge_test_accuracy']:.0%})"
    if "grid_plausibility" in metrics:
        judged += f", grid {metrics['grid_plausibility']:.0%}"
    return "\n".join(lines + [judged])


MOVES = ((-4, 0), (4, 0), (0, -4), (0, 4))  # pixels (dx, dy)


TURNS = (-30.0, 30.0)  # degrees, counter-clockwise


SCALES = (0.8, 1.25)


# Recolourings for RGB models: a red/blue swap and a desaturating mix.
RECOLOURS = (
    np.eye(3, dtype=np.float32)[[2, 1, 0]],
    np.full((3, 3), 0.2, np.float32) + 0.4 * np.eye(3, dtype=np.float32),
)


RANDOM_FRAMES = 3


def control_columns(model, x, seed):
    """The columns of the control picture, each (N, H, W, C), and their names."""
    columns = [("input", x), ("reconstruction", model.reconstruct(x))]
    columns += [(f"move {d}", model.control(x, translate=d)) for d in MOVES]
    columns += [(f"turn {a:+.0f}", model.control(x, rotate=a)) for a in TURNS]
    columns += [(f"scale {s}", model.control(x, scale=s)) for s in SCALES]
    if "color" in {s.key for s in model.symmetries}:
        columns += [(f"recolour {i}", model.control(x, color=m)) for i, m in enumerate(RECOLOURS)]
    columns += [(f"random frame {i}", model.vary_symmetry(x, seed=seed + i)) for i in range(RANDOM_FRAMES)]
    return columns
