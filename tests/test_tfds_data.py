"""The data sets as tensorflow-datasets data sets: prepared offline from the local files, read per process."""

import numpy as np
import pytest

from data_tools import datasets
from tests.conftest import requires_mnist

tfds_data = pytest.importorskip("data_tools.tfds_data")
pytest.importorskip("tensorflow_datasets")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tfds")
    tfds_data.prepare("mnist", str(folder), size=40)
    return str(folder)


@requires_mnist
def test_each_process_reads_its_own_part_in_the_loaders_order(prepared):
    x, y = datasets.load_dataset("mnist", "train")
    parts = [tfds_data.shard_arrays("mnist", "train", prepared, global_batch=10, process_index=i, process_count=2)
             for i in range(2)]
    assert [len(images) for images, _ in parts] == [20, 20] and tfds_data.num_examples("mnist", "train", prepared) == 40
    for i, (images, labels) in enumerate(parts):
        assert images.dtype == np.float32 and images.shape[1:] == (28, 28, 1)
        np.testing.assert_array_equal(images, x[20 * i : 20 * (i + 1)])
        np.testing.assert_array_equal(labels, y[20 * i : 20 * (i + 1)])
    batches = list(tfds_data.load_shard("mnist", "train", prepared, global_batch=10, process_index=0, process_count=2))
    assert [len(images) for images, _ in batches] == [5, 5, 5, 5]  # the global batch shared by two
    np.testing.assert_array_equal(tfds_data.first_images("mnist", "train", prepared, 7), x[:7])


@requires_mnist
def test_missing_folder_and_bad_batch_say_so(prepared, tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m data_tools prepare-tfds mnist --tfds-dir"):
        tfds_data.load_shard("mnist", "train", str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="must divide by the number of processes"):
        tfds_data.load_shard("mnist", "train", prepared, global_batch=9, process_index=0, process_count=2)
    with pytest.raises(ValueError, match="Unknown data set"):
        tfds_data.builder("svhn", prepared)
