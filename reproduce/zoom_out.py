"""Why a CIFAR-10 symmetry net zooms out: is the learned magnification a blur that pays?

For a trained CIFAR-10 model with spatial symmetry statistics, the reconstruction error
(Bernoulli NLL of the test images, nats per image, through the true class's decoder at
the latents' and frames' means) is measured

- through the learned frames (median scale above 1: the object is drawn shrunk in the
  canonical frame and magnified back by bilinear interpolation),
- through the same frames with their scale set to 1 (turn, stretch and shift kept),
- and each of these with the decoded canonical image blurred (Gaussian, sigma in pixels)
  before it is mapped back.

If the zoom-out is worth its nats as a blur, blurring the scale-1 reconstruction wins
back much of what removing the zoom costs, and blurring the zoomed one gains little.
Writes `zoom_out.json` and prints a table.

    python reproduce/zoom_out.py --model results/fig3/fig3_cifar10_sss.keras
"""

import argparse
import os
import sys

import numpy as np

from keras_ace import runtime

BLURS = (0.0, 0.5, 1.0, 1.5)


def unit_scale(theta):
    """Thetas (N, 6) with the linear part divided by sqrt(|det|): scale 1, turn and stretch kept."""
    theta = np.asarray(theta, np.float32).reshape(-1, 2, 3).copy()
    det = np.abs(np.linalg.det(theta[:, :, :2]))
    theta[:, :, :2] /= np.sqrt(np.maximum(det, 1e-6))[:, None, None]
    return theta.reshape(-1, 6)


def reconstruction_nats(model, x, y, blurs=BLURS, batch_size=250):
    """{frame: {sigma: mean NLL}} for frame in ("learned", "scale 1")."""
    from keras import ops
    from scipy.ndimage import gaussian_filter

    from keras_ace.models.auto_encoder import class_rows
    from keras_ace.models.likelihood import bernoulli_nll

    totals = {frame: {s: 0.0 for s in blurs} for frame in ("learned", "scale 1")}
    for start in range(0, len(x), batch_size):
        batch, labels = x[start : start + batch_size], y[start : start + batch_size]
        outputs = model(batch)
        ids = ops.convert_to_tensor(labels.astype(np.int32))
        canonical = ops.convert_to_numpy(model.auto_encoder.decode(class_rows(outputs["latent_loc"], ids, model.num_classes), ids))
        theta = ops.convert_to_numpy(outputs["theta"])
        for frame, frame_theta in (("learned", theta), ("scale 1", unit_scale(theta))):
            for sigma in blurs:
                drawn = canonical if sigma == 0 else gaussian_filter(canonical, (0, sigma, sigma, 0), mode="nearest")
                frame_of_batch = {**model.frame(outputs), "theta": ops.convert_to_tensor(frame_theta)}
                observed = model.to_observation(ops.convert_to_tensor(drawn), frame_of_batch)
                totals[frame][sigma] += float(np.sum(ops.convert_to_numpy(bernoulli_nll(batch, observed))))
    return {frame: {f"{s}": v / len(x) for s, v in by_sigma.items()} for frame, by_sigma in totals.items()}


def main(argv=None):
    if argv is None:  # this process's own command line (not a test's call): it may be started again
        runtime.configure()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--count", type=int, default=2000, help="test images")
    parser.add_argument("--data-dir")
    parser.add_argument("--output-dir", default=os.path.join("results", "zoom_out"))
    args = parser.parse_args(argv)
    if not os.path.isfile(args.model):
        parser.exit(2, f"zoom_out.py: no model {args.model}; train one first (python reproduce/fig3.py --quick)\n")

    import keras_ace  # noqa: F401  (registers the classes for loading)
    from common.config import load_split
    from common.config import write_json
    from common.metrics import frame_spread

    from data_tools import files

    try:
        model = files.load_model(args.model)
    except (FileNotFoundError, files.DamagedFileError) as error:
        parser.exit(2, f"zoom_out.py: error: {error}\n")
    if model.symmetry is None or model.image_shape != (32, 32, 3):
        parser.exit(2, f"zoom_out.py: {args.model} is not a CIFAR-10 model with symmetry statistics\n")
    x, y = load_split("cifar10", "test", args.count, args.data_dir)
    nats = reconstruction_nats(model, x, y)
    report = {"model": args.model, "padding": model.transformer.padding, "test_images": len(x),
              "frames": frame_spread(model, x), "reconstruction_nats": nats}
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(report, os.path.join(args.output_dir, "zoom_out.json"))
    print(f"{args.model} ({report['padding']} padding), median scale {report['frames']['scale_median']:.2f}; "
          f"reconstruction, nats per image, on {len(x)} test images")
    print("| frames | " + " | ".join(f"blur {s}" for s in BLURS) + " |")
    for frame, by_sigma in nats.items():
        print(f"| {frame} | " + " | ".join(f"{v:.1f}" for v in by_sigma.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
