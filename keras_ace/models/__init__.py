"""The ACE model and the paper's presets."""

from keras_ace.models.ace import ACE
from keras_ace.models.presets import PRESETS
