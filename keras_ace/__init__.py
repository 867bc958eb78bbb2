"""keras_ace: auto-classifier-encoders with symmetry statistics (Georgiev 2015) on Keras 3."""

from keras_ace import initializers
from keras_ace import layers
