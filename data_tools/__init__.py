"""Data for keras_ace: MNIST, CIFAR-10 and the distorted MNIST sets of the paper."""

from data_tools.datasets import DATASETS
from data_tools.datasets import IMAGE_SHAPES
from data_tools.datasets import load_dataset
from data_tools.distortions import make_rts_mnist
from data_tools.distortions import make_tc_mnist
from data_tools.sources import CIFAR10_CLASSES
from data_tools.sources import DataNotFoundError
from data_tools.sources import load_cifar10
from data_tools.sources import load_mnist
