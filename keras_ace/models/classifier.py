"""Box C of Figure 5: the classifier branch."""

import keras

from keras_ace.api_export import keras_ace_export
from keras_ace.initializers import paper_conv2d
from keras_ace.layers.dropout import Dropout
from keras_ace.layers.pooling import MaxPooling2x2
from keras_ace.models.blocks import apply_chain
from keras_ace.models.blocks import build_chain


@keras_ace_export
class Classifier(keras.Model):
    """Canonical images -> class logits.

    Appendix A, Figure 1: "Classifier branch is convolutional, with 3 hidden layers,
    with 32-64-128 3x3 filters respectively, with 2x2 max-poolings and a final
    fully-connected layer of size 700; dropout is 0.2 in input and 0.5 in hidden
    layers."

    Args:
        num_classes: the number of classes K.
        filters: 3x3 conv filters, each followed by 2x2 max-pooling and dropout.
        units: the dense hidden layer.
        input_dropout: dropout on the input.
        hidden_dropout: dropout after each hidden layer.
        input_offset: added to the [0, 1] pixels before the input dropout; `-0.5`
            centres them (the CIFAR10 presets, docs/deviations.md).

    Call arguments:
        images: (B, H, W, C).
        training: dropout on or off.

    Returns:
        (B, K) logits.

    Example:
    >>> classifier = Classifier(filters=(4, 4, 4), units=16)
    >>> classifier(np.zeros((2, 16, 16, 1), "float32")).shape
    (2, 10)
    """

    def __init__(
        self,
        num_classes=10,
        filters=(32, 64, 128),
        units=700,
        input_dropout=0.2,
        hidden_dropout=0.5,
        input_offset=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.filters = tuple(int(f) for f in filters)
        self.units = int(units)
        self.input_dropout = float(input_dropout)
        self.hidden_dropout = float(hidden_dropout)
        self.input_offset = float(input_offset)

        self.hidden_layers = []
        if self.input_offset:
            self.hidden_layers.append(keras.layers.Rescaling(1.0, offset=self.input_offset, name="classifier_input_offset"))
        self.hidden_layers.append(Dropout(self.input_dropout, name="classifier_input_dropout"))
        for i, f in enumerate(self.filters):
            self.hidden_layers += [
                paper_conv2d(f, 3, name=f"classifier_conv{i}"),
                MaxPooling2x2(name=f"classifier_pool{i}"),
                Dropout(self.hidden_dropout, name=f"classifier_dropout{i}"),
            ]
        self.hidden_layers += [
            keras.layers.Flatten(name="classifier_flatten"),
            keras.layers.Dense(self.units, activation="relu", name="classifier_dense"),
            Dropout(self.hidden_dropout, name="classifier_dense_dropout"),
        ]
        self.logits = keras.layers.Dense(self.num_classes, name="classifier_logits")

    def build(self, input_shape):
        if self.built:
            return
        self.logits.build(build_chain(self.hidden_layers, input_shape))
        self.built = True

    def call(self, images, training=False):
        return self.logits(apply_chain(self.hidden_layers, images, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "filters": self.filters,
            "units": self.units,
            "input_dropout": self.input_dropout,
            "hidden_dropout": self.hidden_dropout,
            "input_offset": self.input_offset,
        }
