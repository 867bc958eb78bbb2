"""The ACE, its three parts (one per box of Figure 5) and the paper's presets."""

from keras_ace.models.ace import ACE
from keras_ace.models.auto_encoder import AutoEncoder
from keras_ace.models.classifier import Classifier
from keras_ace.models.presets import PRESETS
from keras_ace.models.symmetry_statistics_net import SymmetryStatisticsNet
