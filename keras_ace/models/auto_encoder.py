"""Box AE of Figure 5: the shared encoder, the per-class latent blocks and decoders."""

import keras
import numpy as np
from keras import ops

from keras_ace.api_export import keras_ace_export
from keras_ace.initializers import paper_conv2d
from keras_ace.layers.class_conditional import ClassConv2DTranspose
from keras_ace.layers.class_conditional import ClassDense
from keras_ace.layers.class_conditional import apply_by_class
from keras_ace.layers.gibbs_sampler import GibbsSampler
from keras_ace.models.blocks import build_chain
from keras_ace.models.blocks import check_choice

ENCODERS = ("dense", "conv")


def class_rows(per_class, class_ids, num_classes):
    """Each example's own class's row: (B, K, L) and (B,) -> (B, L)."""
    one_hot = ops.one_hot(class_ids, num_classes, dtype=per_class.dtype)
    return ops.sum(per_class * one_hot[:, :, None], axis=1)


@keras_ace_export
class AutoEncoder(keras.Model):
    """The auto-encoder branch: images -> every class's latent posterior; latents -> images.

    Appendix A, Figure 3: "Layer sizes 3072-2048-2048-(2x10)-(2048x10)-(3072x10) for
    the auto-encoder branch" (Figures 1-2: the canvas's pixels for 3072 and one latent
    dimension per class). Figure 4: "Two convolutional layers replace the first two
    hidden layers in the encoder, with 32-64 5x5 filters respectively. The two
    corresponding deconvolution layers are at the end of the decoder. Layer size 2048
    is reduced to 1500 in the auto-encoder, Laplacian sampling".

    The encoder is shared; each class has its own latent block (location and
    log-scale heads of `latent_dim` units) and its own decoder (a `tanh` hidden layer,
    then a sigmoid output layer, or for the conv encoder a `tanh` feature layer and
    transposed 5x5 stride-2 convolutions). The decoders draw in the frame the encoder
    sees (the canonical frame, inside an `ACE`).

    Args:
        image_shape: `(height, width, channels)`.
        num_classes: the number of classes K.
        encoder: `"dense"` (Figures 1-3) or `"conv"` (Figure 4).
        encoder_units: hidden sizes of the dense encoder.
        conv_filters: filters of the conv encoder (and, reversed, of the decoder's
            transposed convolutions); 5x5 kernels, stride 2.
        decoder_units: hidden size of each class's decoder.
        latent_dim: latent dimensions per class.
        sampling: `"gaussian"` or `"laplacian"`.
        prior_scale: scale of the latent prior.
        per_class_decoders: every class has its own decoder (the paper); `False`
            shares one decoder between the classes (an ablation).
        seed: seed of the latent sampler.

    Call arguments:
        images: (B, H, W, C).

    Returns:
        `(latent_loc, latent_log_scale)`, each (B, K, latent_dim): `encode`.

    Example:
    >>> ae = AutoEncoder((16, 16, 1), encoder_units=(32, 32), decoder_units=32)
    >>> loc, log_scale = ae(np.zeros((2, 16, 16, 1), "float32"))  # encode
    >>> ae.decode(loc[:, 3], np.full((2,), 3, "int32")).shape
    (2, 16, 16, 1)
    """

    def __init__(
        self,
        image_shape,
        num_classes=10,
        encoder="dense",
        encoder_units=(2048, 2048),
        conv_filters=(32, 64),
        decoder_units=2048,
        latent_dim=1,
        sampling="gaussian",
        prior_scale=1.0,
        per_class_decoders=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.num_classes = int(num_classes)
        self.encoder_type = check_choice(encoder, ENCODERS, "encoder")
        self.encoder_units = tuple(int(u) for u in encoder_units)
        self.conv_filters = tuple(int(f) for f in conv_filters)
        self.decoder_units = int(decoder_units)
        self.latent_dim = int(latent_dim)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be positive. Received: latent_dim={latent_dim}")
        self.sampling = sampling
        self.prior_scale = float(prior_scale)
        self.per_class_decoders = bool(per_class_decoders)
        self.seed = seed
        height, width, channels = self.image_shape
        if encoder == "conv":
            factor = 2 ** len(self.conv_filters)
            if height % factor or width % factor:
                raise ValueError(
                    f"The conv encoder halves the image {len(self.conv_filters)} times: height and width must be "
                    f"multiples of {factor}. Received: image_shape={self.image_shape}"
                )
            # What the last conv gives and the decoder's feature layer reshapes to.
            self.feature_shape = (height // factor, width // factor, self.conv_filters[-1])

        if encoder == "dense":
            self.encoder_layers = [keras.layers.Flatten(name="encoder_flatten")] + [
                keras.layers.Dense(units, activation="tanh", name=f"encoder_dense{i}")
                for i, units in enumerate(self.encoder_units)
            ]
        else:
            self.encoder_layers = [
                paper_conv2d(f, 5, strides=2, activation="tanh", name=f"encoder_conv{i}")
                for i, f in enumerate(self.conv_filters)
            ] + [keras.layers.Flatten(name="encoder_flatten")]
        # Every class's latent block: location and log-scale of its latent_dim latents.
        k = self.num_classes * self.latent_dim
        self.latent_loc = keras.layers.Dense(k, name="latent_loc")
        self.latent_log_scale = keras.layers.Dense(k, name="latent_log_scale")
        self.latent_sampler = GibbsSampler(sampling, prior_scale=prior_scale, seed=seed, name="latent_sampler")

        decoders = self.num_classes if self.per_class_decoders else 1
        self.decoder_hidden = ClassDense(decoders, self.decoder_units, activation="tanh", name="decoder_hidden")
        if encoder == "dense":
            self.decoder_output = ClassDense(decoders, int(np.prod(self.image_shape)), activation="sigmoid", name="decoder_output")
            self.decoder_deconvs = []
        else:
            self.decoder_output = ClassDense(
                decoders, int(np.prod(self.feature_shape)), activation="tanh", name="decoder_features"
            )
            filters = list(reversed(self.conv_filters[:-1])) + [channels]
            self.decoder_deconvs = [
                ClassConv2DTranspose(
                    decoders, f, 5, 2, activation="sigmoid" if i == len(filters) - 1 else "tanh", name=f"decoder_deconv{i}"
                )
                for i, f in enumerate(filters)
            ]

    def build(self, input_shape=None):
        if self.built:
            return
        features = build_chain(self.encoder_layers, (None, *self.image_shape))
        self.latent_loc.build(features)
        self.latent_log_scale.build(features)
        # Used through its methods, never called, so built here: while any layer is unbuilt,
        # Keras' `train_on_batch` traces the whole model again on every call (JAX, PyTorch).
        latents = (None, self.num_classes, self.latent_dim)
        self.latent_sampler.build((latents, latents))
        build_chain([self.decoder_hidden, self.decoder_output], (None, self.latent_dim))
        if self.decoder_deconvs:
            build_chain(self.decoder_deconvs, (None, *self.feature_shape))
        self.built = True

    def call(self, images):
        return self.encode(images)

    def encode(self, images):
        """Every class's latent posterior: images (B, H, W, C) -> loc, log_scale (B, K, latent_dim)."""
        features = images
        for layer in self.encoder_layers:
            features = layer(features)
        shape = (-1, self.num_classes, self.latent_dim)
        return ops.reshape(self.latent_loc(features), shape), ops.reshape(self.latent_log_scale(features), shape)

    def posterior_sample(self, loc, log_scale, noise):
        """The reparameterised latents `loc + scale * noise`, for unit-scale `noise` of the family."""
        return loc + self.latent_sampler.scale(log_scale) * noise

    def decode(self, z, class_ids):
        """Each row's class decoder on its latents: z (B, L), class_ids (B,) -> (B, H, W, C).

        The rows are split by class once for the whole decoder (`apply_by_class`), so each
        row costs one decoder, not K.
        """
        self.build()  # before any tracing: `call_all` is not `__call__`, which builds on first use
        if not self.per_class_decoders:
            return self.decode_all(ops.expand_dims(z, 1))[:, 0]
        return apply_by_class(self._decode_parts, z, class_ids, self.num_classes)

    def decode_all(self, z):
        """Every class's decoder on its own latents: z (B, K, L) -> (B, K, H, W, C).

        With one shared decoder (`per_class_decoders=False`) any number of columns.
        """
        self.build()
        if not self.per_class_decoders:
            columns = ops.shape(z)[1]
            out = self._decode_columns(ops.reshape(z, (-1, 1, self.latent_dim)))
            return ops.reshape(out, (-1, columns, *self.image_shape))
        return self._decode_columns(z)

    def _decode_columns(self, z):
        """Decoder `k` on column `k`: z (N, D, L) -> (N, D, H, W, C), D the number of decoders."""
        out = self.decoder_output.call_all(self.decoder_hidden.call_all(z))
        columns = out.shape[1]
        if not self.decoder_deconvs:
            return ops.reshape(out, (-1, columns, *self.image_shape))
        out = ops.reshape(out, (-1, columns, *self.feature_shape))
        for deconv in self.decoder_deconvs:
            out = deconv.call_all(out)
        return out

    def _decode_parts(self, parts):
        """Decoder `k` on part `k`: K arrays (n_k, L) -> K arrays (n_k, H, W, C)."""
        out = self.decoder_output.call_parts(self.decoder_hidden.call_parts(parts))
        shape = self.feature_shape if self.decoder_deconvs else self.image_shape
        out = [ops.reshape(part, (-1, *shape)) for part in out]
        for deconv in self.decoder_deconvs:
            out = deconv.call_parts(out)
        return out

    def compute_output_shape(self, input_shape):
        shape = (input_shape[0], self.num_classes, self.latent_dim)
        return shape, shape

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "num_classes": self.num_classes,
            "encoder": self.encoder_type,
            "encoder_units": self.encoder_units,
            "conv_filters": self.conv_filters,
            "decoder_units": self.decoder_units,
            "latent_dim": self.latent_dim,
            "sampling": self.sampling,
            "prior_scale": self.prior_scale,
            "per_class_decoders": self.per_class_decoders,
            "seed": self.seed,
        }
