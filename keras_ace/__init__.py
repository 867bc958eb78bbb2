"""keras_ace: auto-classifier-encoders with symmetry statistics (Georgiev 2015) on Keras 3."""

from keras_ace import datasets
from keras_ace import distributed
from keras_ace import initializers
from keras_ace import layers
from keras_ace import models
from keras_ace import runtime
from keras_ace.models import ACE
from keras_ace.models import AutoEncoder
from keras_ace.models import Classifier
from keras_ace.models import PRESETS
from keras_ace.models import SymmetryStatisticsNet
from keras_ace.datasets import Dataset
from keras_ace.datasets import register_dataset
from keras_ace.training import BackupAndRestore
from keras_ace.training import StopOnSkippedStep
from keras_ace.training import TrainingInterrupted
from keras_ace.training import TrainingConfig
from keras_ace.training import build_ace
from keras_ace.training import compile_ace
from keras_ace.training import build_preset
from keras_ace.training import from_preset
