"""Figure 1 next to Figure 2, per data set, as a Markdown table read from the runs' `metrics.json`.

    python reproduce/table.py results/fig1 results/fig2

Columns: epochs, training wall time, test error, -log p(x) (the importance-weighted
estimate, k samples; one estimator whatever the latent variables), the eq. 4.1 bound
(one sample of it; a plug-in value with symmetry statistics before keras_ace 0.5), sample
plausibility, grid plausibility (Figure 2: canonical-frame grid, judged by a judge of
undistorted digits), the -log p(x) difference of the two panels on the same test images
(mean and standard error over the images, where both folders keep
`<panel>.nll_estimate.npy`) and, for Figure 2 on RTS / TC MNIST, the correlation of the
learned frame with the ground truth. A panel missing from a folder is shown as "-".
"""

import argparse
import os
import sys

import numpy as np

from data_tools.files import read_json

DATASETS = {"mnist": "MNIST", "rts_mnist": "RTS MNIST", "tc_mnist": "TC MNIST"}


def panel(metrics, figure, dataset):
    return metrics.get(f"{figure}_{dataset}")


def cells(m):
    if m is None:
        return ["-"] * 7
    minutes = m.get("training_wall_time_s")
    return [
        str(m.get("training_epochs", "?")),
        f"{minutes / 60:.0f} min" if minutes else "?",
        f"{m['test_classification_error']:.2%}",
        f"{m['test_nll_estimate_nats']:.1f} (k={m['nll_estimate_samples']})" if "test_nll_estimate_nats" in m else "-",
        f"{m['test_nll_bound_nats']:.1f}",
        f"{m['sample_plausibility']:.1%}",
        f"{m['grid_plausibility']:.1%}" if "grid_plausibility" in m else "-",
    ]


def correlation(m):
    if not m or "theta_truth_correlation" not in m:
        return "-"
    return ", ".join(f"{k} {v:+.2f}" for k, v in m["theta_truth_correlation"].items())


def paired_difference(one, two):
    """Fig. 2 minus Fig. 1 per image, on the same test images: "mean +- standard error", or "-"."""
    if one is None or two is None or len(one) != len(two):
        return "-"
    difference = np.asarray(two, np.float64) - np.asarray(one, np.float64)
    return f"{difference.mean():+.1f} ± {difference.std() / np.sqrt(len(difference)):.1f}"


def table(without, with_symmetry, per_image=None):
    """The Markdown table; `per_image`: {panel: its per-image -log p(x) estimates}, for the paired column."""
    per_image = per_image or {}
    head = ["data set", "epochs", "training time", "test error", "-log p(x) (nats)", "eq. 4.1 bound (nats)",
            "sample plausibility",
            "grid plausibility"]
    lines = ["| " + " | ".join([head[0]] + [f"{h} (Fig. 1 / Fig. 2)" for h in head[1:]]
                               + ["-log p(x), Fig. 2 - Fig. 1, same images", "learned frame vs truth (Fig. 2, r)"]) + " |"]
    lines.append("|" + "---|" * (len(head) + 2))
    for dataset, name in DATASETS.items():
        one, two = panel(without, "fig1", dataset), panel(with_symmetry, "fig2", dataset)
        if one is None and two is None:
            continue
        pairs = [f"{a} / {b}" for a, b in zip(cells(one), cells(two))]
        difference = paired_difference(per_image.get(f"fig1_{dataset}"), per_image.get(f"fig2_{dataset}"))
        lines.append("| " + " | ".join([name] + pairs + [difference, correlation(two)]) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fig1_dir")
    parser.add_argument("fig2_dir")
    args = parser.parse_args(argv)
    metrics, per_image = [], {}
    for figure, folder in (("fig1", args.fig1_dir), ("fig2", args.fig2_dir)):
        path = os.path.join(folder, "metrics.json")
        if not os.path.exists(path):
            parser.exit(2, f"table.py: no {path}; run the figure script first\n")
        metrics.append(read_json(path))
        for dataset in DATASETS:
            estimates = os.path.join(folder, f"{figure}_{dataset}.nll_estimate.npy")
            if os.path.exists(estimates):
                per_image[f"{figure}_{dataset}"] = np.load(estimates)
    print(table(*metrics, per_image))
    return 0


if __name__ == "__main__":
    sys.exit(main())
