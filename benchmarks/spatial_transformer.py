"""Times a SpatialTransformer forward and backward pass on the current Keras backend.

A batch of 250 images of 60x60 (TC MNIST's canvas), gradients with respect to both the
images and theta, through a `train_on_batch` of a model whose only weights are the
affine parameters; median of timed steps after warm-up.

    KERAS_BACKEND=jax python benchmarks/spatial_transformer.py
"""

import argparse
import time

import keras
import numpy as np

from keras_ace.layers import IDENTITY_THETA
from keras_ace.layers import SpatialTransformer


class LearnedTheta(keras.layers.Layer):
    """Per-example affine parameters as trainable weights, so that theta gets a gradient."""

    def __init__(self, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.theta = self.add_weight(
            shape=(batch_size, 6), initializer=keras.initializers.Constant(np.tile(IDENTITY_THETA, (batch_size, 1)))
        )

    def call(self, images):
        return self.theta.value

    def compute_output_shape(self, input_shape):
        return self.theta.shape


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--size", type=int, default=60)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    images = keras.Input((args.size, args.size, 1), batch_size=args.batch_size)
    # A trainable 1x1 convolution in front of the transformer makes the image gradient needed too.
    features = keras.layers.Conv2D(1, 1)(images)
    out = SpatialTransformer()([features, LearnedTheta(args.batch_size)(images)])
    model = keras.Model(images, out)
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).random((args.batch_size, args.size, args.size, 1), np.float32)
    for _ in range(3):
        model.train_on_batch(x, x)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        model.train_on_batch(x, x)
        times.append(time.perf_counter() - start)
    print(f"SpatialTransformer [{keras.backend.backend()}] batch {args.batch_size} of {args.size}x{args.size}: "
          f"forward + backward {np.median(times) * 1e3:.1f} ms (median of {args.steps})")


if __name__ == "__main__":
    main()
