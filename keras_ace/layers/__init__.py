"""The paper's building blocks as serialisable Keras layers."""

from keras_ace.layers.class_conditional import ClassConv2DTranspose
from keras_ace.layers.class_conditional import ClassDense
from keras_ace.layers.color_mixing import ColorMixing
from keras_ace.layers.color_mixing import RowStochastic
from keras_ace.layers.convolution import Conv2D
from keras_ace.layers.dropout import Dropout
from keras_ace.layers.frame_prior import FramePrior
from keras_ace.layers.gibbs_sampler import GibbsSampler
from keras_ace.layers.pooling import MaxPooling2x2
from keras_ace.layers.spatial_transformer import IDENTITY_THETA
from keras_ace.layers.spatial_transformer import InverseAffine
from keras_ace.layers.spatial_transformer import SpatialTransformer
from keras_ace.layers.spatial_transformer import frame_geometry
