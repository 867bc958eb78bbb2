"""Control (beyond the paper): the same objects moved, turned, scaled and recoloured.

Takes test observations, reads their symmetry statistics and redraws each object
through `ACE.control`; rows are objects, columns: input, reconstruction, moved left,
right, up, down by 4 px, turned -30/+30 degrees, scaled 0.8/1.25, recoloured (CIFAR10)
and three random draws of the symmetry statistics. Writes `control.png` and, in
`metrics.json`, how well each change was obeyed (centre-of-mass shift against the
requested shift, measured turn and size change).

    python reproduce/control.py --quick                          # trains a quick RTS MNIST model
    python reproduce/control.py --model results/fig2/fig2_rts_mnist.keras
"""

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

from data_tools import files
from data_tools import pictures
from common.config import RunConfig
from common.config import add_arguments
from common.config import load_split
from common.config import write_json
from common.metrics import control_obedience
from common.metrics import machine
from common.pictures import control_columns
from common.runs import StaleModelError
from common.runs import TrainingStopped
from common.runs import train_panel
from keras_ace import runtime

PANELS = {"rts_mnist": "fig2_rts_mnist", "tc_mnist": "fig2_tc_mnist", "mnist": "fig2_mnist", "cifar10": "fig4_cifar10_spatial_color"}


def main(argv=None):
    if argv is None:  # this process's own command line (not a test's call): it may be started again
        runtime.configure()
    parser = add_arguments(argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter), "control")
    parser.add_argument("--model", help="a saved ACE with symmetry statistics (default: train the data set's panel)")
    parser.add_argument("--dataset", default="rts_mnist", choices=sorted(PANELS))
    parser.add_argument("--count", type=int, default=8, help="objects (rows)")
    args = parser.parse_args(argv)
    config = RunConfig.from_args("control", args)
    start = time.time()
    import keras_ace  # noqa: F401  (registers the classes for loading)

    preset = PANELS[args.dataset]
    try:
        model = files.load_model(args.model) if args.model else train_panel(preset, config)
    except (FileNotFoundError, files.DamagedFileError, StaleModelError, TrainingStopped) as error:
        parser.exit(2, f"control.py: error: {error}\n")
    if getattr(model, "symmetry", None) is None:
        parser.exit(2, f"control.py: error: control needs an ACE with symmetry statistics. Received: {args.model}\n")
    dataset = "cifar10" if model.image_shape[-1] == 3 else args.dataset
    x, _ = load_split(dataset, "test", args.count, config.data_dir)
    columns = control_columns(model, x, config.seed)
    picture = pictures.mosaic(np.stack([c for _, c in columns], axis=1), gap=2)
    os.makedirs(config.output_dir, exist_ok=True)
    png = os.path.join(config.output_dir, "control.png")
    pictures.save_png(picture, png)
    metrics = {
        "columns": [name for name, _ in columns],
        **control_obedience(columns),
        "wall_time_s": time.time() - start,
        "machine": machine(),
    }
    write_json({**dataclasses.asdict(config), "model": args.model, "dataset": dataset}, os.path.join(config.output_dir, "config.json"))
    write_json(metrics, os.path.join(config.output_dir, "metrics.json"))
    print(f"Wrote {png}; translation error {metrics['translation_error_px_mean']:.2f} px (mean), "
          f"turns {metrics['requested_turn_vs_measured_median_deg']}, scales {metrics['requested_scale_vs_measured_spread_ratio_median']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
