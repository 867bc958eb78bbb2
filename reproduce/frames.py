"""The frames `sample()` puts new observations in, against the data's (beyond the paper).

For a trained RTS or TC MNIST model with spatial symmetry statistics: histograms of the
turn, size, shift and aspect ratio (stretch or shear) of

- the frames the symmetry net infers on test images,
- `sample()` frames drawn from the fitted frame prior (the default),
- `sample()` frames drawn from the unit prior of training (`frames="prior"`),
- the data's ground truth (RTS: angle, scale and shift; TC: position).

The canonical frame is learned, so its turn, size and centre are arbitrary: the picture
compares spreads, and each quantity is shown about its median (angle, shift) or over its
median (scale). Writes `frames.png` and `frames.json` (medians, spreads, and the
fraction of frames with an aspect ratio above 1.3).

    python reproduce/frames.py --model results/fig2/fig2_rts_mnist.keras
"""

import argparse
import os
import sys

import numpy as np

from keras_ace import runtime

ASPECT_LIMIT = 1.3


def centred(name, values):
    median = np.median(values)
    return values / median if name == "scale" else values - median


def summary(values):
    return {k: {"median": float(np.median(v)), "std": float(np.std(v)),
                **({"fraction_above_1.3": float(np.mean(v > ASPECT_LIMIT))} if k == "aspect" else {})}
            for k, v in values.items()}


def main(argv=None):
    if argv is None:  # this process's own command line (not a test's call): it may be started again
        runtime.configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.path.join("results", "fig2", "fig2_rts_mnist.keras"))
    parser.add_argument("--count", type=int, default=5000, help="frames of each kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir")
    parser.add_argument("--output-dir", default=os.path.join("results", "frames"))
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.exit(2, f"frames.py: no model {args.model}; train one first (python reproduce/fig2.py --quick)\n")

    import keras_ace  # noqa: F401  (registers the classes for loading)
    from data_tools import files
    from data_tools.pictures import save_figure
    from data_tools import load_dataset
    from data_tools.distortions import truth_geometry
    from common.config import write_json
    from common.metrics import learned_geometry

    try:
        model = files.load_model(args.model)
    except (FileNotFoundError, files.DamagedFileError) as error:
        parser.exit(2, f"frames.py: error: {error}\n")
    dataset = {42: "rts_mnist", 60: "tc_mnist"}.get(model.image_shape[0])
    if model.symmetry is None or dataset is None:
        parser.exit(2, f"frames.py: needs an RTS or TC MNIST model with symmetry statistics. Received: {args.model}\n")
    size = model.image_shape[:2]
    if not model.symmetry_net.frame_prior.is_fitted:
        model.fit_frame_prior(load_dataset(dataset, "train", args.data_dir)[0][:10000])
    x, _, truth = load_dataset(dataset, "test", args.data_dir, return_truth=True)
    kinds = {
        "inferred on test images": learned_geometry(model.symmetry_statistics(x[: args.count])["theta"], size),
        "sample(), fitted frames": learned_geometry(model.draw_frames(args.count, seed=args.seed, frames="fitted")["theta"], size),
        "sample(), unit prior": learned_geometry(model.draw_frames(args.count, seed=args.seed, frames="prior")["theta"], size),
        "data (ground truth)": truth_geometry(dataset, {k: v[: args.count] for k, v in truth.items()}, size[0]),
    }

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["angle", "scale", "shift_x", "shift_y", "aspect"]
    labels = {"angle": "turn (deg) - median", "scale": "size / median", "shift_x": "shift x (px) - median",
              "shift_y": "shift y (px) - median", "aspect": "aspect ratio (stretch, shear)"}
    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4))
    for axis, name in zip(axes, names):
        series = {k: (v[name] if name == "aspect" else centred(name, v[name])) for k, v in kinds.items() if name in v}
        low, high = np.percentile(np.concatenate(list(series.values())), [0.5, 99.5])
        bins = np.linspace(low, high, 41)
        for kind, values in series.items():
            axis.hist(np.clip(values, low, high), bins=bins, histtype="step", density=True, linewidth=1.5, label=kind)
        axis.set_xlabel(labels[name])
        axis.set_yticks([])
    axes[0].legend(fontsize=8, loc="upper left")
    figure.suptitle(f"{os.path.basename(args.model)} ({dataset}): frames of new observations against the data's")
    figure.tight_layout()
    os.makedirs(args.output_dir, exist_ok=True)
    png = os.path.join(args.output_dir, "frames.png")
    save_figure(figure, png, dpi=90)
    metrics = {kind: summary(values) for kind, values in kinds.items()}
    write_json({"model": args.model, "dataset": dataset, **metrics}, os.path.join(args.output_dir, "frames.json"))
    for kind, values in metrics.items():
        spread = ", ".join(f"{k} std {v['std']:.3g}" for k, v in values.items())
        print(f"{kind}: {spread}")
    print(f"Wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
