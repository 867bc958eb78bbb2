"""How a figure run is configured: quick and full mode, the command line, the data it reads."""

import dataclasses
import json
import os

from data_tools import files

# Appendix A trains with batches of 250; the paper gives no epoch count.
DEFAULT_EPOCHS = 50


# Quick mode: a CPU run of minutes. The MNIST family keeps Appendix A's sizes and
# spends the budget on steps: narrowed layers trained for a few hundred steps draw
# blobs, while a few hundred full-size steps on RTS MNIST already draw clean digits
# with symmetry statistics. A full-size step takes about 0.65 s (MNIST), 1.35 s (RTS)
# and 2.75 s (TC) on a 2-core CPU, so quick mode trains MNIST and RTS MNIST for one
# epoch on the first QUICK_TRAIN_SIZES images, and each figure script draws only the
# panels it names as QUICK_PANELS (TC MNIST is drawn in full mode only).
# CIFAR10 keeps narrowed layers on a subset: at full size a CPU cannot train it far
# in minutes either way.
QUICK = {
    "train_size": None,  # per data set: QUICK_TRAIN_SIZES
    "test_size": 2000,
    "epochs": None,  # per data set: QUICK_EPOCHS
    "samples_per_class": 100,
    "estimate_samples": 20,
    "estimate_images": 200,
    "judge_epochs": 2,
    "judge_train_size": 12000,
    "overrides": {},
}


QUICK_EPOCHS = {"mnist": 1, "rts_mnist": 1, "tc_mnist": 1, "cifar10": 5}


QUICK_TRAIN_SIZES = {"mnist": 30000, "rts_mnist": 60000, "tc_mnist": 20000, "cifar10": 12000}


QUICK_CIFAR10 = {
    "overrides": {
        "encoder_units": (256, 256),
        "decoder_units": 256,
        "classifier_filters": (16, 32, 64),
        "classifier_units": 128,
    },
}


FULL = {
    "train_size": None,
    "test_size": None,
    "epochs": DEFAULT_EPOCHS,
    "samples_per_class": 1000,
    "estimate_samples": 100,
    "estimate_images": 1000,
    "judge_epochs": 5,
    "judge_train_size": None,
    "overrides": {},
}


# Bump when a change makes earlier saved panels unfit to reuse (checked by check_settings).
LAYOUT_VERSION = 3  # 3: padding and color_inverse (keras_ace 0.3)


@dataclasses.dataclass
class RunConfig:
    """The resolved settings of one figure run (written to `config.json`)."""

    figure: str
    output_dir: str
    quick: bool = False
    epochs: int = DEFAULT_EPOCHS  # or {data set: epochs}; None: the mode's default (quick: QUICK_EPOCHS)
    seed: int = 0
    data_dir: str = None
    train_size: int = None
    test_size: int = None
    samples_per_class: int = 1000
    # The importance-weighted -log p(x) (`ACE.nll_estimate`): k samples on the first test images.
    estimate_samples: int = 100
    estimate_images: int = 1000
    judge_epochs: int = 5
    judge_train_size: int = None
    overrides: dict = dataclasses.field(default_factory=dict)
    distribution: str = None
    # One of several processes training together (`keras_ace.distributed`; docs/multi_host.md).
    distribute: bool = False
    # Training images from a tensorflow-datasets folder (`python -m data_tools prepare-tfds`), each process its shard.
    tfds_dir: str = None
    from_models: str = None
    panels: tuple = None  # None: every panel of the figure
    backup_every: int = None  # a backup every N steps too (None: at each epoch's end and on SIGTERM)

    def for_dataset(self, dataset):
        """The settings one panel trains with: per-data-set epochs (and quick mode's sizes) resolved."""
        epochs = self.epochs.get(dataset) if isinstance(self.epochs, dict) else self.epochs
        if not self.quick:
            return dataclasses.replace(self, epochs=epochs or DEFAULT_EPOCHS)
        changes = {"epochs": epochs or QUICK_EPOCHS[dataset], "train_size": self.train_size or QUICK_TRAIN_SIZES[dataset]}
        if dataset == "cifar10":
            changes["overrides"] = {**QUICK_CIFAR10["overrides"], **self.overrides}
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_args(cls, figure, args):
        mode = dict(QUICK if args.quick else FULL)
        for key in ("epochs", "train_size", "test_size", "samples_per_class", "estimate_samples", "estimate_images",
                    "judge_epochs", "judge_train_size"):
            if getattr(args, key, None) is not None:
                mode[key] = getattr(args, key)
        overrides = {**mode.pop("overrides"), **json.loads(args.overrides or "{}")}
        return cls(
            figure=figure,
            output_dir=args.output_dir or os.path.join("results", figure),
            quick=args.quick,
            seed=args.seed,
            data_dir=args.data_dir,
            overrides=overrides,
            distribution=args.distribution,
            distribute=args.distribute,
            tfds_dir=args.tfds_dir,
            from_models=args.from_models,
            panels=tuple(args.panels) if args.panels else None,
            backup_every=args.backup_every,
            **mode,
        )


def epochs_argument(text):
    """`--epochs`: `8` for every panel, or `mnist=4,rts_mnist=8` per data set (the others: the default)."""
    import argparse

    from data_tools.datasets import DATASETS

    try:
        if "=" not in text:
            return int(text)
        epochs = {name.strip(): int(n) for name, n in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or DATASET=N,... Received: {text!r}")
    unknown = set(epochs) - set(DATASETS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown data set {sorted(unknown)}. Expected some of {DATASETS}")
    return epochs


# Samples judged per class are drawn at once: 100,000 CIFAR-10 images are 1.2 GB.
MAX_SAMPLES_PER_CLASS = 100_000


def count_argument(maximum=None, why=""):
    """An argparse type: a positive integer, at most `maximum` (`why` says what bounds it)."""
    import argparse

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive integer. Received: {text!r}") from None
        if value < 1 or (maximum is not None and value > maximum):
            bound = f"from 1 to {maximum:,}{why}" if maximum is not None else "positive"
            raise argparse.ArgumentTypeError(f"must be {bound}. Received: {text}")
        return value

    return parse


def add_arguments(parser, figure, panels=()):
    """The command-line flags every figure script shares (`panels`: the figure's)."""
    parser.add_argument("--quick", action="store_true", help="a CPU run of minutes (Appendix A sizes, few epochs)")
    parser.add_argument("--epochs", type=epochs_argument, metavar="N|DATASET=N,...",
                        help=f"training epochs, for every panel or per data set, e.g. mnist=4,rts_mnist=8 "
                        f"(default {DEFAULT_EPOCHS}, quick {QUICK_EPOCHS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", help=f"default results/{figure}/")
    parser.add_argument("--data-dir", help="folder with mnist.npz / cifar10-jpeg.zip (else KERAS_ACE_DATA, cache, download)")
    parser.add_argument("--train-size", type=count_argument(), help="use the first N training images")
    parser.add_argument("--test-size", type=count_argument(), help="use the first N test images")
    parser.add_argument("--samples-per-class", type=count_argument(MAX_SAMPLES_PER_CLASS, " (each class's are judged at once)"),
                        help="samples judged per class (default 1000)")
    parser.add_argument("--estimate-samples", type=count_argument(),
                        help="importance samples k of the -log p(x) estimate (default 100, quick 20)")
    parser.add_argument("--estimate-images", type=count_argument(),
                        help="test images of the -log p(x) estimate (default 1000, quick 200)")
    parser.add_argument("--judge-epochs", type=count_argument(), help="epochs of the independent judge CNN (default 5, quick 2)")
    parser.add_argument("--judge-train-size", type=count_argument(), help="training images of the judge CNN (default all, quick 12000)")
    parser.add_argument("--overrides", help='JSON of ACE arguments, e.g. \'{"decoder_units": 512}\'')
    parser.add_argument("--distribution", choices=["data_parallel"], help="train on every local device")
    parser.add_argument("--distribute", action="store_true",
                        help="this process is one of several training together (JAX; Keras' KERAS_DISTRIBUTION_JOB_ADDRESSES, "
                        "_NUM_PROCESSES and _PROCESS_ID name the coordinator, the count and this process; process 0 "
                        "writes the files and measures; docs/multi_host.md)")
    parser.add_argument("--tfds-dir", metavar="DIR",
                        help="read the training images from this tensorflow-datasets folder (python -m data_tools "
                        "prepare-tfds), each process only its shard")
    parser.add_argument("--backup-every", type=count_argument(), metavar="STEPS",
                        help="also back up every STEPS steps (default: at each epoch's end, and on SIGTERM or Ctrl-C at the "
                        "running step); the same command resumes from the backup")
    parser.add_argument("--from-models", metavar="DIR", help="redraw the figure from the .keras models in DIR, no training")
    parser.add_argument("--panels", nargs="+", choices=panels or None, metavar="PANEL",
                        help=f"train and draw only these panels (default all: {' '.join(panels)}); "
                        "metrics.json keeps the other panels' numbers")
    return parser


def load_split(dataset, split, size, data_dir):
    from data_tools import load_dataset

    x, y = load_dataset(dataset, split, data_dir)
    return (x[:size], y[:size]) if size else (x, y)


def json_default(value):
    """How run files store what JSON has no type for: tuples as lists, anything else as its text."""
    return list(value) if isinstance(value, tuple) else str(value)


def write_json(data, path):
    files.write_json(data, path, indent=2, default=json_default)
