"""The four data sets as tensorflow-datasets data sets, each process reading only its shard.

`prepare` writes a data set in TFDS's own format under `data_dir`, offline, from the
project's loaders (`load_raw`: the same uint8 images as `load_dataset`, stored as PNG);
`load_shard` reads one process's share of a split with `tfds.split_for_jax_process` and
batches it for `fit` over several processes (`keras_ace.distributed`). Needs
tensorflow and tensorflow-datasets (`pip install tensorflow-datasets`).

    python -m data_tools prepare-tfds mnist --tfds-dir /data/tfds       # once, on each host
    ds = load_shard("mnist", "train", "/data/tfds", global_batch=250)    # in each process
    model.fit(ds, epochs=50)
"""

import functools
import os

import numpy as np

from data_tools import datasets

VERSION = "1.0.0"
SHUFFLE_BUFFER = 10000


@functools.cache
def builder_class():
    """`KerasAceData`, a TFDS builder with one configuration per data set (defined when first needed)."""
    import tensorflow_datasets as tfds

    class KerasAceData(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """MNIST, RTS MNIST, TC MNIST or CIFAR-10 as the project's loaders give them."""

        VERSION = tfds.core.Version(VERSION)
        BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in datasets.DATASETS]

        def __init__(self, *, source_dir=None, size=None, **kwargs):
            self.source_dir = source_dir
            self.size = size
            super().__init__(**kwargs)

        def _info(self):
            return self.dataset_info_from_configs(
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=datasets.IMAGE_SHAPES[self.builder_config.name]),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }),
                supervised_keys=("image", "label"),
                disable_shuffling=True,  # the loaders' order, so that a split reads as `load_dataset` gives it
            )

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in datasets.SPLITS}

        def _generate_examples(self, split):
            images, labels, _ = datasets.load_raw(self.builder_config.name, split, self.source_dir)
            count = len(images) if self.size is None else min(self.size, len(images))
            for i in range(count):
                image = images[i] if images[i].ndim == 3 else images[i][..., None]
                yield i, {"image": image, "label": int(labels[i])}

    return KerasAceData


def builder(name, tfds_dir, source_dir=None, size=None):
    """The TFDS builder of data set `name` under `tfds_dir` (`size`: keep the first N images of each split)."""
    datasets.check_name(name)
    return builder_class()(config=name, data_dir=tfds_dir, source_dir=source_dir, size=size)


def prepare(name, tfds_dir, source_dir=None, size=None):
    """Writes data set `name` in TFDS's format under `tfds_dir`, from the project's loaders; returns its folder."""
    ready = builder(name, tfds_dir, source_dir, size)
    ready.download_and_prepare()
    return ready.data_dir


def load_shard(name, split, tfds_dir, global_batch=250, process_index=None, process_count=None, shuffle_seed=None):
    """This process's share of a prepared split as a `tf.data.Dataset` of (images, labels) batches.

    The split is cut into `process_count` even parts (`tfds.split_for_jax_process`, JAX's
    process index and count by default); this process reads only its part, batched at
    `global_batch // process_count` rows (float32 in [0, 1], int64 labels), the last
    incomplete batch left out so that every process takes the same number of steps.
    `shuffle_seed`: reshuffle the part every epoch (None: in order).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from keras_ace import distributed

    ready = builder(name, tfds_dir)
    if not os.path.isdir(ready.data_dir) or not tf.io.gfile.exists(os.path.join(ready.data_dir, "dataset_info.json")):
        raise FileNotFoundError(
            f"No prepared {name} in {tfds_dir!r}: run `python -m data_tools prepare-tfds {name} --tfds-dir {tfds_dir}`."
        )
    count = distributed.process_count() if process_count is None else process_count
    index = distributed.process_index() if process_index is None else process_index
    share = distributed.batch_share(global_batch, count)
    part = tfds.split_for_jax_process(split, process_index=index, process_count=count, drop_remainder=True)
    data = ready.as_dataset(split=part, as_supervised=True, shuffle_files=False)
    if shuffle_seed is not None:
        data = data.shuffle(SHUFFLE_BUFFER, seed=shuffle_seed, reshuffle_each_iteration=True)
    data = data.map(lambda image, label: (tf.cast(image, tf.float32) / 255.0, label), num_parallel_calls=tf.data.AUTOTUNE)
    return data.batch(share, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def num_examples(name, split, tfds_dir):
    """How many images a prepared split holds."""
    return builder(name, tfds_dir).info.splits[split].num_examples


def first_images(name, split, tfds_dir, count):
    """The first `count` images of a prepared split, the same in every process (e.g. to fit the frame prior)."""
    count = min(count, num_examples(name, split, tfds_dir))
    data = builder(name, tfds_dir).as_dataset(split=f"{split}[:{count}]", as_supervised=True, shuffle_files=False)
    images = [image for image, _ in data.batch(1000).as_numpy_iterator()]
    return (np.concatenate(images).astype(np.float32) / 255.0) if images else np.zeros((0, *datasets.IMAGE_SHAPES[name]), np.float32)


def shard_arrays(name, split, tfds_dir, **kwargs):
    """`load_shard` read whole into NumPy arrays (for tests and small data)."""
    parts = list(load_shard(name, split, tfds_dir, **kwargs).as_numpy_iterator())
    return np.concatenate([images for images, _ in parts]), np.concatenate([labels for _, labels in parts])
