"""Command line: `python -m data_tools prepare NAME`, `prepare-tfds NAME --tfds-dir DIR`, `preview NAME --out FILE.png`."""

import argparse
import sys

import numpy as np

from data_tools import datasets


def preview(name, out, split="train", count=40, data_dir=None):
    """Writes a grid of the first `count` examples, ten per row, with their labels below."""
    from data_tools import pictures
    from data_tools.sources import CIFAR10_CLASSES

    images, labels = datasets.load_dataset(name, split, data_dir)
    count = min(count, len(images))
    columns = 10
    rows = -(-count // columns)
    grid = np.ones((rows * columns, *images.shape[1:]), np.float32)
    grid[:count] = images[:count]
    names = [CIFAR10_CLASSES[l] if name == "cifar10" else str(l) for l in labels[:count]]
    caption = "\n".join(f"row {r + 1}: " + " ".join(names[r * columns : (r + 1) * columns]) for r in range(rows))
    picture = pictures.mosaic(grid.reshape(rows, columns, *images.shape[1:]), gap=2)
    pictures.save_annotated_png([picture], [f"{name} ({split}), first {count}"], "labels, left to right:\n" + caption, out)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data_tools", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser("prepare", help="load or build a data set into the cache")
    prepare.add_argument("name", choices=datasets.DATASETS)
    tfds = commands.add_parser("prepare-tfds", help="write a data set in tensorflow-datasets' format (for --tfds-dir)")
    tfds.add_argument("name", choices=datasets.DATASETS)
    tfds.add_argument("--tfds-dir", required=True, help="the TFDS data_dir to write into")
    tfds.add_argument("--size", type=int, help="keep the first N images of each split")
    show = commands.add_parser("preview", help="write a PNG grid of examples with labels")
    show.add_argument("name", choices=datasets.DATASETS)
    show.add_argument("--out", required=True)
    show.add_argument("--split", default="train", choices=datasets.SPLITS)
    show.add_argument("--count", type=int, default=40)
    for sub in (prepare, tfds, show):
        sub.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    from data_tools.sources import DataNotFoundError

    try:
        if args.command == "prepare":
            for split in datasets.SPLITS:
                images, labels, _ = datasets.load_raw(args.name, split, args.data_dir, progress=True)
                print(f"{args.name} {split}: {images.shape[0]} images of {images.shape[1:]}")
        elif args.command == "prepare-tfds":
            from data_tools import tfds_data

            print(f"Wrote {tfds_data.prepare(args.name, args.tfds_dir, args.data_dir, args.size)}")
        else:
            preview(args.name, args.out, args.split, args.count, args.data_dir)
            print(f"Wrote {args.out}")
    except DataNotFoundError as error:
        parser.exit(2, f"python -m data_tools {args.command}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
