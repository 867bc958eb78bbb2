"""The data sets keras_ace knows, one record each: what the models and their training need of it.

A record is the image shape, the number of classes, the training set's size (the steps
of an epoch, which the learning-rate decay counts in) and Appendix A's learning rate.
How the images are read is not here but in a loader (`data_tools` for the paper's four),
so the library never imports one: a new data set is one `register_dataset` call and its
loader.

>>> register_dataset(Dataset("stripes", image_shape=(8, 8, 1), train_size=400, num_classes=3))  # doctest: +SKIP
>>> build_ace("stripes", encoder_units=(32, 32), decoder_units=32)    # doctest: +SKIP
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One data set as the models see it.

    Args:
        name: what `build_ace(dataset=...)`, `TrainingConfig.for_dataset` and the presets call it.
        image_shape: `(height, width, channels)`.
        train_size: images in the training split (an epoch's steps at a given batch).
        num_classes: K.
        learning_rate: Adam's (Appendix A: 0.0015 for the MNIST family, 0.0005 for CIFAR10).
    """

    name: str
    image_shape: tuple
    train_size: int
    num_classes: int = 10
    learning_rate: float = 0.0015

    def __post_init__(self):
        shape = tuple(int(s) for s in self.image_shape)
        if len(shape) != 3 or min(shape) < 1 or self.train_size < 1 or self.num_classes < 2 or not self.learning_rate > 0:
            raise ValueError(f"A data set needs a (height, width, channels) shape, training images, at least two classes "
                             f"and a positive learning rate. Received: {self}")
        object.__setattr__(self, "image_shape", shape)


# Registered data sets, by name.
DATASETS = {}


def register_dataset(dataset):
    """Makes `dataset` (a `Dataset`) known by its name; a name registered again is replaced."""
    DATASETS[dataset.name] = dataset


def get_dataset(name):
    """The record of a registered data set; a clear error naming the known ones otherwise."""
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset. Expected one of {tuple(DATASETS)}. Received: dataset={name!r}")
    return DATASETS[name]


# The paper's four. RTS and TC MNIST are MNIST's digits on larger canvases (data_tools.distortions).
for _record in (
    Dataset("mnist", (28, 28, 1), train_size=60000),
    Dataset("rts_mnist", (42, 42, 1), train_size=60000),
    Dataset("tc_mnist", (60, 60, 1), train_size=60000),
    Dataset("cifar10", (32, 32, 3), train_size=50000, learning_rate=0.0005),
):
    register_dataset(_record)
