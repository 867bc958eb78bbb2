"""`python -m keras_ace`: sample, draw and control saved ACE models from the command line.

    python -m keras_ace sample results/fig2/fig2_rts_mnist.keras --class 3 -n 64 --out samples.png
    python -m keras_ace grid results/fig2/fig2_rts_mnist.keras --class 7 --range -4 4 --steps 20 --out grid.png
    python -m keras_ace control results/fig2/fig2_rts_mnist.keras --dataset rts_mnist --index 0:8 \\
        --translate 4 0 --rotate 30 --scale 1.2 --out control.png
    python -m keras_ace info results/fig2/fig2_rts_mnist.keras
    python -m keras_ace convert old_0.3_model.keras model.keras

Errors a user causes (a bad path, a file that is not an ACE, an unknown class, a wrong
image file) print one line on stderr and exit with status 2.
"""

import argparse
import json
import os
import sys

import numpy as np

from data_tools import files
from data_tools import pictures
from data_tools.sources import DataNotFoundError

COLUMNS = 8  # images per row of a sample grid
# Sizes a command refuses beyond, in one line, before any work: a picture of more images
# than this is not read by anyone; more samples go to --npz, drawn in batches.
MAX_PICTURE_IMAGES = 1024
MAX_CONTROL_IMAGES = 256  # rows of input | reconstruction | changed
MAX_GRID_STEPS = 100  # per axis: 10,000 images for a 2-D latent
SAMPLE_BATCH = 1000  # images drawn at a time for --npz


class UsageError(Exception):
    """An error of the user's input: reported in one line, exit status 2."""


def load_ace(path):
    import keras_ace

    try:
        model = files.load_model(path)
    except (FileNotFoundError, files.DamagedFileError) as error:  # a missing or broken file: one line
        raise UsageError(str(error)) from None
    except Exception as error:  # a whole archive Keras cannot load: say so in one line
        raise UsageError(f"cannot load {path} as a Keras model: {files.reason(error)}") from None
    if not isinstance(model, keras_ace.ACE):
        raise UsageError(f"{path} holds a {type(model).__name__}, not a keras_ace ACE model")
    return model


def check_class(model, class_id):
    if not 0 <= class_id < model.num_classes:
        raise UsageError(f"--class must lie in [0, {model.num_classes}). Received: --class {class_id}")
    return class_id


def write_grid(images, columns, title, out):
    """A grid of images, `columns` per row, with a title line above it."""
    rows = -(-len(images) // columns)
    padded = np.concatenate([images, np.ones((rows * columns - len(images), *images.shape[1:]), np.float32)])
    grid = pictures.mosaic(padded.reshape(rows, columns, *images.shape[1:]), gap=2)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    pictures.save_annotated_png([grid], [title], "", out)
    print(f"Wrote {out}")


def sample(args):
    model = load_ace(args.model)
    class_id = check_class(model, args.class_id)
    if args.n < 1:
        raise UsageError(f"-n must be positive. Received: -n {args.n}")
    if args.n > MAX_PICTURE_IMAGES and not args.npz:
        raise UsageError(f"-n {args.n} is more than a picture shows (at most {MAX_PICTURE_IMAGES}); add --npz FILE to save "
                         f"them all (drawn {SAMPLE_BATCH} at a time, the picture shows the first {MAX_PICTURE_IMAGES})")
    if args.npz:
        write_samples(model, class_id, args)
    images = model.sample(class_id, min(args.n, MAX_PICTURE_IMAGES), seed=args.seed, frames=args.frames)
    write_grid(images, min(COLUMNS, args.n), f"{os.path.basename(args.model)}: class {class_id}, seed {args.seed}", args.out)


def write_samples(model, class_id, args):
    """`-n` samples to `--npz` with bounded memory: drawn in batches into a file on disk, then packed whole or not at all."""
    import shutil
    import tempfile

    import keras

    folder = os.path.dirname(os.path.abspath(args.npz))
    os.makedirs(folder, exist_ok=True)
    needed = 2 * args.n * int(np.prod(model.image_shape)) * 4  # the images on disk, then packed
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise UsageError(f"--npz with -n {args.n} needs {needed / 2**30:.1f} GiB in {folder}, which has "
                         f"{free / 2**30:.1f} GiB free; choose a smaller -n or another folder")
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        images = np.lib.format.open_memmap(os.path.join(scratch, "images.npy"), "w+", np.float32, (args.n, *model.image_shape))
        # One stream from --seed for every batch: the same draws as one call of that size.
        stream = keras.random.SeedGenerator(args.seed)
        for start in range(0, args.n, SAMPLE_BATCH):
            count = min(SAMPLE_BATCH, args.n - start)
            images[start : start + count] = model.sample(class_id, count, seed=stream, frames=args.frames)
        images.flush()
        with files.atomic_write(args.npz, "wb") as f:
            np.savez_compressed(f, images=images, labels=np.full(args.n, class_id))
    print(f"Wrote {args.npz}")


def grid(args):
    model = load_ace(args.model)
    class_id = check_class(model, args.class_id)
    low, high = args.range
    if not (np.isfinite([low, high]).all() and low < high) or not 2 <= args.steps <= MAX_GRID_STEPS:
        raise UsageError(f"--range needs LOW < HIGH and --steps from 2 to {MAX_GRID_STEPS}. "
                         f"Received: --range {low} {high} --steps {args.steps}")
    axis = np.linspace(low, high, args.steps, dtype=np.float32)
    if model.latent_dim == 1:
        values, columns = axis[:, None], args.steps
    elif model.latent_dim == 2:
        # Rows go up as the second latent grows, as in the paper's pictures.
        values, columns = np.asarray([[a, b] for b in axis[::-1] for a in axis], np.float32), args.steps
    else:
        raise UsageError(f"grid draws 1-D or 2-D latents. Received: a model with latent_dim={model.latent_dim}")
    images = model.latent_grid(class_id, values)
    write_grid(images, columns, f"{os.path.basename(args.model)}: class {class_id}, latent in [{low:g}, {high:g}]", args.out)


def parse_index(text, count):
    try:
        parts = [int(p) if p else None for p in text.split(":")]
        indices = np.arange(count)[slice(*parts)] if len(parts) > 1 else np.asarray([parts[0]])
    except (ValueError, TypeError):
        raise UsageError(f"--index must be N or START:STOP. Received: --index {text}") from None
    if len(indices) == 0 or indices.max() >= count or indices.min() < -count:
        raise UsageError(f"--index {text} selects no image of the {count} there are")
    return indices


def load_images(args, model):
    if args.images:
        if not os.path.isfile(args.images):
            raise UsageError(f"no such image file: {args.images}")
        data = files.read_npz(args.images)
        if not data:
            raise UsageError(f"{args.images} holds no arrays")
        x = data["x"] if "x" in data else data[sorted(data)[0]]
    else:
        from data_tools import load_dataset

        x, _ = load_dataset(args.dataset, "test", args.data_dir)
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    if x.ndim == 3 and model.image_shape[-1] == 1:
        x = x[..., None]
    if x.ndim != 4 or tuple(x.shape[1:]) != model.image_shape:
        raise UsageError(f"images must have shape (N, {', '.join(map(str, model.image_shape))}) for this model. Received: {x.shape}")
    indices = parse_index(args.index, len(x))
    if len(indices) > MAX_CONTROL_IMAGES:
        raise UsageError(f"--index {args.index} selects {len(indices)} images; a control picture shows at most "
                         f"{MAX_CONTROL_IMAGES} (one row each)")
    return x[indices].astype(np.float32)


def control(args):
    model = load_ace(args.model)
    x = load_images(args, model)
    try:
        changed = model.control(x, translate=tuple(args.translate), rotate=args.rotate, scale=args.scale)
    except ValueError as error:
        raise UsageError(str(error)) from None
    columns = np.stack([x, model.reconstruct(x), changed], axis=1)  # (N, 3, H, W, C)
    picture = pictures.mosaic(columns, gap=2)
    title = (f"input | reconstruction | moved {tuple(args.translate)} px, turned {args.rotate:g} deg, "
             f"scaled {args.scale:g}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    pictures.save_annotated_png([picture], [title], "", args.out)
    print(f"Wrote {args.out}")


def info(args):
    model = load_ace(args.model)
    from keras_ace.datasets import DATASETS

    datasets = [d.name for d in DATASETS.values() if d.image_shape == model.image_shape and d.num_classes == model.num_classes]
    report = {
        "file": args.model,
        "data set": " or ".join(datasets) or "unknown",
        "image shape": list(model.image_shape),
        "symmetry": model.symmetry,
        "sampling": model.sampling,
        "latent_dim": model.latent_dim,
        "parameters": model.parameter_counts(),
        "frames of sample()": ("fitted to the training data" if model.symmetry and model.symmetry_net.frame_prior.is_fitted
                               else "unit prior" if model.symmetry else "none"),
    }
    metrics = os.path.join(os.path.dirname(os.path.abspath(args.model)), "metrics.json")
    preset = os.path.splitext(os.path.basename(args.model))[0]
    if os.path.isfile(metrics):
        stored = files.read_json(metrics).get(preset)
        if stored:
            report["test metrics (metrics.json)"] = {k: v for k, v in stored.items() if not isinstance(v, list)}
    print(json.dumps(report, indent=2))


def convert(args):
    if not os.path.isfile(args.model):
        raise UsageError(f"no such model file: {args.model}")
    from keras_ace.models import legacy

    try:
        legacy.convert(args.model, args.out)
    except (ValueError, KeyError, OSError) as error:
        raise UsageError(f"cannot convert {args.model}: {error}") from None
    print(f"Wrote {args.out}")


def parser():
    main = argparse.ArgumentParser(prog="python -m keras_ace", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True)

    def command(name, function, help, example):
        p = commands.add_parser(name, help=help, description=f"{help}\n\nExample:\n    {example}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("model", help="a .keras file saved from keras_ace")
        p.set_defaults(function=function)
        return p

    p = command("sample", sample, "new observations of a class, as a labelled grid",
                "python -m keras_ace sample fig2_rts_mnist.keras --class 3 -n 64 --seed 0 --out samples.png")
    p.add_argument("--class", dest="class_id", type=int, required=True)
    p.add_argument("-n", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", choices=["fitted", "prior"], help="default: fitted where the model has them")
    p.add_argument("--out", default="samples.png")
    p.add_argument("--npz", help="also save the images and labels to this .npz")

    p = command("grid", grid, "the class's latent manifold in the canonical frame (Figures 1-4)",
                "python -m keras_ace grid fig2_rts_mnist.keras --class 7 --range -4 4 --steps 20 --out grid.png")
    p.add_argument("--class", dest="class_id", type=int, required=True)
    p.add_argument("--range", type=float, nargs=2, default=(-4.0, 4.0), metavar=("LOW", "HIGH"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default="grid.png")

    p = command("control", control, "the same objects moved, turned and scaled",
                "python -m keras_ace control fig2_rts_mnist.keras --dataset rts_mnist --index 0:8 --rotate 30 --out control.png")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help=".npz with images (key x, or its first array), uint8 or [0, 1] floats")
    source.add_argument("--dataset", choices=["mnist", "rts_mnist", "tc_mnist", "cifar10"], help="its test split")
    p.add_argument("--data-dir")
    p.add_argument("--index", default="0:8", help="N or START:STOP")
    p.add_argument("--translate", type=float, nargs=2, default=(0.0, 0.0), metavar=("DX", "DY"))
    p.add_argument("--rotate", type=float, default=0.0, help="degrees, counter-clockwise")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--out", default="control.png")

    command("info", info, "what a saved model is: data set, symmetry, sampling, parameters, stored metrics",
            "python -m keras_ace info fig2_rts_mnist.keras")
    p = command("convert", convert, "rewrite a model saved by keras_ace 0.1 to 0.3 in today's layout (same weights)",
                "python -m keras_ace convert fig2_rts_mnist_0.3.keras fig2_rts_mnist.keras")
    p.add_argument("out", help="the .keras file to write")
    return main


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.function(args)
    except (UsageError, DataNotFoundError, files.DamagedFileError) as error:
        print(f"python -m keras_ace {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only or impossible folder: what was written is gone whole
        print(f"python -m keras_ace {args.command}: error: {files.unwritable(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
