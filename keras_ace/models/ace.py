"""The auto-classifier-encoder with symmetry statistics (Figure 5 and Appendix A)."""

import math

import keras
import numpy as np
from keras import ops

from keras_ace.api_export import keras_ace_export
from keras_ace.backend_ops import scale_loss_for_replicas
from keras_ace.initializers import paper_conv2d
from keras_ace.layers.class_conditional import ClassConv2DTranspose
from keras_ace.layers.class_conditional import ClassDense
from keras_ace.layers.color_mixing import ColorMixing
from keras_ace.layers.color_mixing import RowStochastic
from keras_ace.layers.frame_prior import FramePrior
from keras_ace.layers.gibbs_sampler import GibbsSampler
from keras_ace.layers.spatial_transformer import IDENTITY_THETA
from keras_ace.layers.spatial_transformer import SpatialTransformer
from keras_ace.layers.spatial_transformer import invert_theta
from keras_ace.layers.spatial_transformer import localization_trunk
from keras_ace import validation

SYMMETRIES = (None, "spatial", "spatial_color")
ENCODERS = ("dense", "conv")
SPATIAL_STATISTICS = 6
COLOR_STATISTICS = 9
# Keeps the Bernoulli log-likelihood finite where a resampled output is exactly 0 or 1.
PROBABILITY_EPSILON = 1e-6
# Metrics that only evaluation computes (they need every class's decoder).
EVALUATION_METRICS = ("nll_bound",)
# Where `sample` and `vary_symmetry` draw frames: fitted to the data's, or the unit prior.
FRAMES = ("fitted", "prior")
# Training images whose inferred symmetry statistics `fit` uses to fit the frame prior.
FRAME_PRIOR_IMAGES = 10000


def _choice(value, options, name):
    if value not in options:
        raise ValueError(f"Unknown {name}. Expected one of {options}. Received: {name}={value!r}")
    return value


def bernoulli_nll(x, probabilities):
    """-log p(x | probabilities) summed over pixels, per example: (B, H, W, C) -> (B,)."""
    x = ops.convert_to_tensor(x, dtype=probabilities.dtype)
    p = ops.clip(probabilities, PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON)
    nll = -(x * ops.log(p) + (1.0 - x) * ops.log(1.0 - p))
    return ops.sum(ops.reshape(nll, (ops.shape(nll)[0], -1)), axis=-1)


def affine_from_control(translate, rotate, scale, image_size):
    """The (2, 3) normalised-coordinate matrix of `control`'s move, turn and scale.

    It turns and scales about the origin (applied about the object's centre by the
    caller) and then moves by `translate` pixels (dx to the right, dy down); a positive
    `rotate` turns counter-clockwise on screen.
    """
    height, width = image_size
    a = math.radians(rotate)
    cos, sin = math.cos(a) * scale, math.sin(a) * scale
    # On screen (y down) a counter-clockwise turn maps (x, y) to (x cos + y sin, -x sin + y cos).
    dx, dy = 2.0 * translate[0] / (width - 1), 2.0 * translate[1] / (height - 1)
    return np.asarray([[cos, sin, dx], [-sin, cos, dy]], np.float32)


def class_rows(per_class, class_ids, num_classes):
    """Each example's own class's row: (B, K, L) and (B,) -> (B, L)."""
    one_hot = ops.one_hot(class_ids, num_classes, dtype=per_class.dtype)
    return ops.sum(per_class * one_hot[:, :, None], axis=1)


def move_about_centre(theta, outer):
    """Applies `outer` (2, 3) to the object about its centre: (B, 6) -> (B, 6).

    theta maps canonical coordinates q to observation coordinates M q + t, so the
    object's centre is t. Turning and scaling by A about t, then moving by d, gives
    A M q + t + d.
    """
    matrix = ops.reshape(theta, (-1, 2, 3))
    linear = ops.einsum("ij,bjk->bik", ops.convert_to_tensor(outer[:, :2]), matrix[:, :, :2])  # (B, 2, 2)
    shift = matrix[:, :, 2:] + ops.convert_to_tensor(outer[:, 2:])[None]  # (B, 2, 1)
    return ops.reshape(ops.concatenate([linear, shift], axis=2), (-1, 6))


@keras_ace_export
class ACE(keras.Model):
    """Auto-classifier-encoder with symmetry statistics (Georgiev 2015, Figure 5).

    Galin Georgiev, "Symmetries and control in generative neural nets", 2015. Four
    parts, each mirroring Appendix A:

    - **Symmetry statistics net** (boxes 0.2-0.3), when `symmetry` is set: a
      localisation net (conv-pool blocks, one dense layer) whose heads give the location
      and log-scale of the symmetry statistics `u` (6 spatial, plus 9 colour for
      `"spatial_color"`). They are latent variables of their own (eq. 3.2, the arrow
      from the symmetry statistics to the AE latents): sampled by a `GibbsSampler` in
      training, their mean in inference, with a KL term to a unit prior. The affine
      transform is `theta = identity + symmetry_prior_scale[0] * u_spatial` and the
      colour matrix `RowStochastic(symmetry_prior_scale[1] * u_color)`; the heads start
      at zero, so theta starts at the identity and the colour matrix near it.
    - **Box 0.4**: the input is resampled with theta (then colour-mixed) into the
      canonical frame, which the classifier and the auto-encoder see.
    - **Classifier**: dropout on the input, conv-pool-dropout blocks, a dense hidden
      layer with dropout, logits over the classes.
    - **Auto-encoder**: a shared encoder (dense, or conv for Figure 4), then per class
      its own latent block (location and log-scale heads of size `latent_dim` per
      class) and its own decoder. The decoder draws the object in the canonical frame;
      the inverse colour matrix and inverse affine transform map it back to the
      observation, where the reconstruction error is computed against the original
      input.

    Training is supervised (`fit(x, y)`): the true label picks the latent block and
    the decoder. The loss per image, in nats, is the *reconstruction error*
    (Bernoulli negative log-likelihood of the input's [0, 1] intensities) + the
    *generative error* (KL of the class's latents and of the symmetry statistics) + the
    classification cross-entropy; each is tracked as a metric.

    In evaluation the classifier's probabilities `w_c` weight the per-class posteriors
    (eq. 4.1) and `evaluate` also reports `nll_bound`, in nats per image, for the
    generative model with a uniform class prior, `p(x) = sum_c p(c) p(x | c)`, under
    the mixture posterior `q(c, z | x) = w_c q(z | x, c)`:

        nll_bound = sum_c w_c (reconstruction_c + KL_c) + KL_symmetry
                    + sum_c w_c log w_c + log K,

    with one sample of each class's latents `z` (shared noise across classes) and the
    symmetry statistics `u` at their posterior mean. Without symmetry statistics this
    is a one-sample Monte-Carlo estimate of the variational upper bound on `-log p(x)`.
    With them it is a *plug-in* value: `u` is not sampled, while its KL is added, so
    it is the bound's integrand at the most likely frame rather than an estimate of
    the bound itself (see docs/deviations.md). Pixels of the
    observation that the inverse transform maps from outside the canonical canvas
    read 0 and get probability `PROBABILITY_EPSILON` of being bright.

    It is a bound on the negative log-*density* of continuous [0, 1] intensities under
    a Bernoulli likelihood, not on the discrete likelihood of binarised MNIST that VAE
    papers report, and the two are not comparable.

    Args:
        image_shape: `(height, width, channels)`.
        num_classes: the number of classes K.
        symmetry: `None`, `"spatial"` or `"spatial_color"` (RGB only).
        encoder: `"dense"` (Figures 1-3) or `"conv"` (Figure 4).
        encoder_units: hidden sizes of the dense encoder.
        conv_filters: filters of the conv encoder (and, reversed, of the decoder's
            transposed convolutions); 5x5 kernels, stride 2.
        decoder_units: hidden size of each class's decoder.
        latent_dim: latent dimensions per class.
        sampling: `"gaussian"` or `"laplacian"`.
        prior_scale: scale of the latent prior.
        classifier_filters: 3x3 conv filters of the classifier, each followed by 2x2
            max-pooling.
        classifier_units: the classifier's dense hidden layer.
        input_dropout: dropout on the classifier's input.
        classifier_input_offset: added to the [0, 1] pixels before the classifier's
            input dropout; `-0.5` centres them (the CIFAR10 presets: on uncentred
            colour images the dropout noise shifts every activation, and the
            classifier's inference path lags its training path, docs/deviations.md).
        hidden_dropout: dropout after each hidden layer of the classifier.
        ssn_filters: conv filters of the symmetry statistics net.
        ssn_kernel_size: their kernel size.
        ssn_units: its dense hidden layer.
        symmetry_prior_scale: `(spatial, colour)` scale of the symmetry statistics'
            prior in theta units and colour-logit units.
        symmetry_initial_log_scale: the symmetry posterior's initial log-scale.
        per_class_decoders: every class has its own decoder (the paper); `False`
            shares one decoder between the classes (an ablation, and the baseline of
            the per-class cost benchmark).
        seed: seed of all sampling.

    Example:
    >>> model = ACE((16, 16, 1), symmetry="spatial", encoder_units=(32, 32),
    ...             decoder_units=32, classifier_filters=(4, 4, 4), classifier_units=16,
    ...             ssn_filters=(4, 4), ssn_units=8)
    >>> model.compile(optimizer="adam")
    >>> model.fit(x, y, epochs=1)                      # doctest: +SKIP
    >>> model.sample(class_id=3, n=5, seed=0).shape    # doctest: +SKIP
    (5, 16, 16, 1)
    """

    def __init__(
        self,
        image_shape,
        num_classes=10,
        symmetry=None,
        encoder="dense",
        encoder_units=(2048, 2048),
        conv_filters=(32, 64),
        decoder_units=2048,
        latent_dim=1,
        sampling="gaussian",
        prior_scale=1.0,
        classifier_filters=(32, 64, 128),
        classifier_units=700,
        input_dropout=0.2,
        classifier_input_offset=0.0,
        hidden_dropout=0.5,
        ssn_filters=(20, 20),
        ssn_kernel_size=5,
        ssn_units=50,
        symmetry_prior_scale=(0.2, 1.0),
        symmetry_initial_log_scale=-3.0,
        per_class_decoders=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or min(image_shape) < 1:
            raise ValueError(f"image_shape must be (height, width, channels). Received: image_shape={image_shape}")
        self.image_shape = image_shape
        self.num_classes = int(num_classes)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2. Received: num_classes={num_classes}")
        self.symmetry = _choice(symmetry, SYMMETRIES, "symmetry")
        if symmetry == "spatial_color" and image_shape[-1] != 3:
            raise ValueError(f"symmetry='spatial_color' needs RGB images. Received: image_shape={image_shape}")
        self.encoder_type = _choice(encoder, ENCODERS, "encoder")
        self.encoder_units = tuple(int(u) for u in encoder_units)
        self.conv_filters = tuple(int(f) for f in conv_filters)
        if encoder == "conv":
            factor = 2 ** len(self.conv_filters)
            if image_shape[0] % factor or image_shape[1] % factor:
                raise ValueError(
                    f"The conv encoder halves the image {len(self.conv_filters)} times: height and width must be "
                    f"multiples of {factor}. Received: image_shape={image_shape}"
                )
        self.decoder_units = int(decoder_units)
        self.latent_dim = int(latent_dim)
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be positive. Received: latent_dim={latent_dim}")
        self.sampling = sampling
        self.prior_scale = float(prior_scale)
        self.classifier_filters = tuple(int(f) for f in classifier_filters)
        self.classifier_units = int(classifier_units)
        self.input_dropout = float(input_dropout)
        self.classifier_input_offset = float(classifier_input_offset)
        self.hidden_dropout = float(hidden_dropout)
        self.ssn_filters = tuple(int(f) for f in ssn_filters)
        self.ssn_kernel_size = int(ssn_kernel_size)
        self.ssn_units = int(ssn_units)
        self.symmetry_prior_scale = tuple(float(s) for s in symmetry_prior_scale)
        self.symmetry_initial_log_scale = float(symmetry_initial_log_scale)
        self.per_class_decoders = bool(per_class_decoders)
        self.seed = seed
        self.num_pixels = int(np.prod(image_shape))

        seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, 2) if seed is not None else (None, None)
        self.latent_sampler = GibbsSampler(sampling, prior_scale=prior_scale, seed=_int(seeds[0]), name="latent_sampler")
        self._build_symmetry_net(_int(seeds[1]))
        self._build_classifier()
        self._build_auto_encoder()

        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.generative_tracker = keras.metrics.Mean(name="generative")
        self.classification_tracker = keras.metrics.Mean(name="classification")
        self.error_tracker = keras.metrics.Mean(name="classification_error")
        self.nll_bound_tracker = keras.metrics.Mean(name="nll_bound")
        self._evaluating = False

    # ----------------------------------------------------------------- construction

    @property
    def num_symmetry_statistics(self):
        return {None: 0, "spatial": SPATIAL_STATISTICS, "spatial_color": SPATIAL_STATISTICS + COLOR_STATISTICS}[
            self.symmetry
        ]

    def _build_symmetry_net(self, seed):
        if self.symmetry is None:
            return
        n = self.num_symmetry_statistics
        self.ssn = keras.Sequential(
            localization_trunk(self.ssn_filters, self.ssn_kernel_size, self.ssn_units, "ssn"), name="ssn"
        )
        # Zero kernels: every image starts at u = 0, the identity transform.
        self.ssn_loc = keras.layers.Dense(n, kernel_initializer="zeros", name="ssn_loc")
        self.ssn_log_scale = keras.layers.Dense(
            n,
            kernel_initializer="zeros",
            bias_initializer=keras.initializers.Constant(self.symmetry_initial_log_scale),
            name="ssn_log_scale",
        )
        # The symmetry statistics share the latents' family (eq. 3.2) with a unit prior.
        self.symmetry_sampler = GibbsSampler(self.sampling, seed=seed, name="symmetry_sampler")
        self.transformer = SpatialTransformer(name="transformer")
        self.frame_prior = FramePrior(n, name="frame_prior")
        if self.symmetry == "spatial_color":
            self.color_matrix = RowStochastic(name="color_matrix")
            self.color_mixing = ColorMixing(name="color_mixing")
            self.color_unmixing = ColorMixing(inverse=True, name="color_unmixing")

    def _build_classifier(self):
        layers = [keras.layers.Dropout(self.input_dropout, name="classifier_input_dropout")]
        if self.classifier_input_offset:
            layers.insert(0, keras.layers.Rescaling(1.0, offset=self.classifier_input_offset, name="classifier_input_offset"))
        for i, filters in enumerate(self.classifier_filters):
            layers += [
                paper_conv2d(filters, 3, name=f"classifier_conv{i}"),
                keras.layers.MaxPooling2D(2, name=f"classifier_pool{i}"),
                keras.layers.Dropout(self.hidden_dropout, name=f"classifier_dropout{i}"),
            ]
        layers += [
            keras.layers.Flatten(name="classifier_flatten"),
            keras.layers.Dense(self.classifier_units, activation="relu", name="classifier_dense"),
            keras.layers.Dropout(self.hidden_dropout, name="classifier_dense_dropout"),
            keras.layers.Dense(self.num_classes, name="classifier_logits"),
        ]
        self.classifier = keras.Sequential(layers, name="classifier")

    def _build_auto_encoder(self):
        k, latent = self.num_classes, self.latent_dim
        if self.encoder_type == "dense":
            layers = [keras.layers.Flatten(name="encoder_flatten")] + [
                keras.layers.Dense(units, activation="tanh", name=f"encoder_dense{i}")
                for i, units in enumerate(self.encoder_units)
            ]
        else:
            layers = [
                paper_conv2d(f, 5, strides=2, activation="tanh", name=f"encoder_conv{i}")
                for i, f in enumerate(self.conv_filters)
            ] + [keras.layers.Flatten(name="encoder_flatten")]
        self.encoder = keras.Sequential(layers, name="encoder")
        # Every class's latent block: location and log-scale of its latent_dim latents.
        self.latent_loc = keras.layers.Dense(k * latent, name="latent_loc")
        self.latent_log_scale = keras.layers.Dense(k * latent, name="latent_log_scale")

        decoders = self.num_classes if self.per_class_decoders else 1
        self.decoder_hidden = ClassDense(decoders, self.decoder_units, activation="tanh", name="decoder_hidden")
        if self.encoder_type == "dense":
            self.decoder_output = ClassDense(decoders, self.num_pixels, activation="sigmoid", name="decoder_output")
            self.decoder_deconvs = []
        else:
            height, width, channels = self.image_shape
            factor = 2 ** len(self.conv_filters)
            self.feature_shape = (height // factor, width // factor, self.conv_filters[-1])
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
        shape = (None, *self.image_shape)
        if self.symmetry is not None:
            self.ssn.build(shape)
            self.ssn_loc.build((None, self.ssn_units))
            self.ssn_log_scale.build((None, self.ssn_units))
        self.classifier.build(shape)
        self.encoder.build(shape)
        features = self.encoder.compute_output_shape(shape)
        self.latent_loc.build(features)
        self.latent_log_scale.build(features)
        self.decoder_hidden.build((None, self.latent_dim))
        self.decoder_output.build((None, self.decoder_units))
        feature_shape = (None, *getattr(self, "feature_shape", ()))
        for deconv in self.decoder_deconvs:
            deconv.build(feature_shape)
            feature_shape = deconv.compute_output_shape(feature_shape)
        self.built = True

    def parameter_counts(self):
        """Trainable parameters per part of Figure 5 (box 0.2-0.3, C, the AE's three parts)."""

        def count(*layers):
            return int(sum(np.prod(w.shape) for layer in layers for w in layer.trainable_weights))

        decoders = [self.decoder_hidden, self.decoder_output, *self.decoder_deconvs]
        return {
            "symmetry statistics net": count(self.ssn, self.ssn_loc, self.ssn_log_scale) if self.symmetry else 0,
            "classifier": count(self.classifier),
            "encoder": count(self.encoder),
            "latent blocks": count(self.latent_loc, self.latent_log_scale),
            "decoders": count(*decoders),
        }

    # ----------------------------------------------------------------- forward pass

    def symmetry_parameters(self, u):
        """theta (B, 6) and, for colour, the colour matrix (B, 3, 3) of statistics u."""
        spatial_scale, color_scale = self.symmetry_prior_scale
        theta = ops.convert_to_tensor(IDENTITY_THETA) + spatial_scale * u[:, :SPATIAL_STATISTICS]
        color = self.color_matrix(color_scale * u[:, SPATIAL_STATISTICS:]) if self.symmetry == "spatial_color" else None
        return theta, color

    def canonicalize(self, x, theta, color):
        """Box 0.4: observation -> canonical frame."""
        x = self.transformer([x, theta])
        return self.color_mixing([x, color]) if color is not None else x

    def to_observation(self, canonical, theta, color):
        """The inverse of box 0.4: canonical frame -> observation."""
        if color is not None:
            canonical = self.color_unmixing([canonical, color])
        return self.transformer([canonical, invert_theta(theta)])

    def call(self, x, training=False):
        """The label-free part of the net: symmetry statistics, classifier, latent posteriors.

        Returns a dict: `class_logits` (B, K), `latent_loc` and `latent_log_scale`
        (B, K, latent_dim), `noise` (B, latent_dim) for the reparameterised latent
        sample, `canonical` (B, H, W, C) (the input in the canonical frame) and, with
        symmetry, `theta` (B, 6), `color` (B, 3, 3) and `symmetry_kl` (B,).
        """
        validation.check_symbolic_images(x, self.image_shape)
        outputs = {}
        if self.symmetry is not None:
            hidden = self.ssn(x, training=training)
            loc, log_scale = self.ssn_loc(hidden), self.ssn_log_scale(hidden)
            u = self.symmetry_sampler([loc, log_scale], training=training)
            theta, color = self.symmetry_parameters(u)
            outputs["theta"] = theta
            if color is not None:
                outputs["color"] = color
            outputs["symmetry_kl"] = self.symmetry_sampler.kl_divergence(loc, log_scale)
            x = self.canonicalize(x, theta, color)
        outputs["canonical"] = x
        outputs["class_logits"] = self.classifier(x, training=training)
        features = self.encoder(x, training=training)
        shape = (-1, self.num_classes, self.latent_dim)
        outputs["latent_loc"] = ops.reshape(self.latent_loc(features), shape)
        outputs["latent_log_scale"] = ops.reshape(self.latent_log_scale(features), shape)
        outputs["noise"] = self.latent_sampler.noise((ops.shape(x)[0], self.latent_dim))
        return outputs

    def decode(self, z, class_ids):
        """Each row's class decoder on its latents: z (B, L), class_ids (B,) -> canonical (B, H, W, C)."""
        if not self.per_class_decoders:
            class_ids = ops.zeros_like(class_ids)
        hidden = self.decoder_hidden(z, class_ids)
        out = self.decoder_output(hidden, class_ids)
        if not self.decoder_deconvs:
            return ops.reshape(out, (-1, *self.image_shape))
        out = ops.reshape(out, (-1, *self.feature_shape))
        for deconv in self.decoder_deconvs:
            out = deconv(out, class_ids)
        return out

    def decode_all(self, z):
        """Every class's decoder on its own latents: z (B, K, L) -> (B, K, H, W, C)."""
        if not self.per_class_decoders:
            rows = ops.reshape(z, (-1, self.latent_dim))
            out = self.decode(rows, ops.zeros((ops.shape(rows)[0],), "int32"))
            return ops.reshape(out, (-1, self.num_classes, *self.image_shape))
        hidden = self.decoder_hidden.call_all(z)
        out = self.decoder_output.call_all(hidden)
        if not self.decoder_deconvs:
            return ops.reshape(out, (-1, self.num_classes, *self.image_shape))
        out = ops.reshape(out, (-1, self.num_classes, *self.feature_shape))
        for deconv in self.decoder_deconvs:
            out = deconv.call_all(out)
        return out

    def reconstruction_error(self, x, canonical, outputs):
        """Reconstruction error against the original input, after undoing box 0.4."""
        if self.symmetry is not None:
            canonical = self.to_observation(canonical, outputs["theta"], outputs.get("color"))
        return bernoulli_nll(x, canonical)

    # ----------------------------------------------------------------- training

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        outputs = y_pred
        validation.check_symbolic_labels(y, self.num_classes)
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        # The true class picks the latent block and the decoder (supervised training).
        loc = class_rows(outputs["latent_loc"], y, self.num_classes)  # (B, L)
        log_scale = class_rows(outputs["latent_log_scale"], y, self.num_classes)
        z = loc + self.latent_sampler.scale(log_scale) * outputs["noise"]
        reconstruction = self.reconstruction_error(x, self.decode(z, y), outputs)
        generative = self.latent_sampler.kl_divergence(loc, log_scale)
        if self.symmetry is not None:
            generative = generative + outputs["symmetry_kl"]
        logits = outputs["class_logits"]
        classification = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        per_example = reconstruction + generative + classification
        if sample_weight is not None:
            per_example = per_example * ops.reshape(ops.cast(sample_weight, per_example.dtype), (-1,))

        self.reconstruction_tracker.update_state(reconstruction)
        self.generative_tracker.update_state(generative)
        self.classification_tracker.update_state(classification)
        wrong = ops.cast(ops.not_equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), y), "float32")
        self.error_tracker.update_state(wrong)
        if not training:
            self.nll_bound_tracker.update_state(self.nll_bound(x, outputs))
        return scale_loss_for_replicas(ops.mean(per_example))

    def nll_bound(self, x, outputs):
        """The eq. 4.1 mixture bound on -log p(x) in nats, per example (see the class docstring)."""
        loc, log_scale = outputs["latent_loc"], outputs["latent_log_scale"]
        z = loc + self.latent_sampler.scale(log_scale) * outputs["noise"][:, None, :]  # (B, K, L)
        canonical = self.decode_all(z)  # (B, K, H, W, C)
        reconstruction = ops.stack(
            [self.reconstruction_error(x, canonical[:, c], outputs) for c in range(self.num_classes)], axis=1
        )  # (B, K)
        kl = self.latent_sampler.kl_divergence(loc, log_scale)  # (B, K)
        weights = ops.softmax(outputs["class_logits"], axis=-1)
        log_weights = ops.log_softmax(outputs["class_logits"], axis=-1)
        bound = ops.sum(weights * (reconstruction + kl + log_weights), axis=-1) + math.log(self.num_classes)
        if self.symmetry is not None:
            bound = bound + outputs["symmetry_kl"]
        return bound

    def get_metrics_result(self):
        results = super().get_metrics_result()
        if not self._evaluating:
            results = {k: v for k, v in results.items() if k not in EVALUATION_METRICS}
        return results

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`, also reporting `nll_bound` (nats per image)."""
        self.check_data(x, y)
        self._evaluating = True
        try:
            return super().evaluate(x, y, *args, **kwargs)
        finally:
            self._evaluating = False

    def check_data(self, x, y):
        """Refuses NumPy data with wrong shapes or dtypes, NaN, values outside [0, 1] or bad labels.

        Tensors and data sets are checked when the step is traced (shapes, dtypes,
        one-hot labels); a non-finite step among them is skipped by the optimizer
        (`keras_ace.optimizers.Adam`), so that it never reaches the weights.
        """
        if not isinstance(x, np.ndarray):
            return
        validation.check_images(x, self.image_shape)
        if y is not None and isinstance(y, np.ndarray):
            validation.check_labels(y, x.shape[0], self.num_classes)

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        """`keras.Model.fit`; NumPy images and labels are checked before training starts.

        With symmetry statistics and NumPy images, the frame prior that `sample` draws
        from is fitted afterwards to the statistics the net infers on (up to
        `FRAME_PRIOR_IMAGES` of) the training images; for other inputs call
        `fit_frame_prior` yourself.
        """
        self.check_data(x, y)
        if isinstance(x, keras.utils.PyDataset) and len(x):
            # Its first batch, read once before Keras builds on it: a clear message
            # instead of the wrapped one of Keras' first symbolic call.
            # Shapes, dtypes and label layout only: a non-finite batch is the optimizer's
            # to skip, not a reason to refuse the data set.
            first = x[0]
            images, labels = (first[0], first[1]) if isinstance(first, tuple) and len(first) > 1 else (first, None)
            validation.check_symbolic_images(np.asarray(images), self.image_shape)
            if labels is not None:
                validation.check_symbolic_labels(np.asarray(labels), self.num_classes)
        if not self.built:
            self.build()  # weights exist before callbacks (e.g. BackupAndRestore) look
        if isinstance(validation_data, tuple) and len(validation_data) >= 2:
            self.check_data(validation_data[0], validation_data[1])
        history = super().fit(x, y, *args, validation_data=validation_data, **kwargs)
        if self.symmetry is not None and isinstance(x, np.ndarray):
            self.fit_frame_prior(x[:FRAME_PRIOR_IMAGES])
        return history

    def fit_frame_prior(self, x, batch_size=250):
        """Fits the frame prior of `sample` to the symmetry statistics inferred on images x."""
        if self.symmetry is None:
            raise ValueError("This model has no symmetry statistics (symmetry=None).")
        locations = [ops.convert_to_numpy(self.ssn_loc(self.ssn(b))) for b in self._batches(x, batch_size)]
        self.frame_prior.adapt(np.concatenate(locations))

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict`; NumPy images are checked first."""
        self.check_data(x, None)
        return super().predict(x, *args, **kwargs)

    # ----------------------------------------------------------------- generation and control

    def _batches(self, x, batch_size):
        batch_size = validation.check_count(batch_size, "batch_size")
        x = np.asarray(x, np.float32)
        self.check_data(x, None)
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]

    def _seed_generator(self, seed):
        return keras.random.SeedGenerator(seed) if seed is not None else self.latent_sampler.seed_generator

    def classify(self, x, batch_size=250):
        """Class probabilities (N, K) of images (N, H, W, C)."""
        return np.concatenate(
            [ops.convert_to_numpy(ops.softmax(self(b)["class_logits"], axis=-1)) for b in self._batches(x, batch_size)]
        )

    def latent_means(self, x, class_ids=None, batch_size=250):
        """Posterior means (N, latent_dim) of images x in their class's latent block.

        `class_ids` (N,) picks the block (e.g. the true labels); default: the most
        probable class. Where an image sits on its class's manifold (`latent_grid`).
        """
        means = []
        for start, batch in zip(range(0, len(x), batch_size), self._batches(x, batch_size)):
            ids = None if class_ids is None else np.asarray(class_ids[start : start + batch_size], np.int32)
            means.append(ops.convert_to_numpy(self._class_means(self(batch), ids)[0]))
        return np.concatenate(means)

    def symmetry_statistics(self, x, batch_size=250):
        """The symmetry statistics' means: `{"theta": (N, 6)}`, plus `"color": (N, 3, 3)` for colour."""
        if self.symmetry is None:
            raise ValueError("This model has no symmetry statistics (symmetry=None).")
        parts = [self(b) for b in self._batches(x, batch_size)]
        keys = ["theta"] + (["color"] if self.symmetry == "spatial_color" else [])
        return {k: np.concatenate([ops.convert_to_numpy(p[k]) for p in parts]) for k in keys}

    def reconstruct(self, x, batch_size=250):
        """Reconstructions (N, H, W, C) in the observation frame, through the most probable class.

        Deterministic: the latents and symmetry statistics at their means.
        """
        return self.control(x, batch_size=batch_size)

    def control(self, x, translate=(0.0, 0.0), rotate=0.0, scale=1.0, color=None, batch_size=250):
        """The same objects, moved, turned, scaled or recoloured, still in their class.

        The symmetry statistics of each image are read, changed by hand, and the
        object is decoded in its canonical frame and put back with the changed ones:
        the object is turned by `rotate` degrees (counter-clockwise) and scaled by
        `scale` about its centre, then moved by `translate = (dx, dy)` pixels (right,
        down). `color` (3, 3) mixes the RGB vector of every output pixel
        (equivalently, the colour statistics become `C @ inv(color)`).

        Args:
            x: images (N, H, W, C) in [0, 1].
            translate: `(dx, dy)` in pixels.
            rotate: degrees, counter-clockwise.
            scale: factor, > 0.
            color: optional (3, 3) colour matrix, RGB images only.

        Returns:
            (N, H, W, C) NumPy images.

        Example:
        >>> moved = model.control(x_test[:8], translate=(4, 0))   # doctest: +SKIP
        """
        translate = validation.check_pair(translate, "translate")
        rotate = validation.check_number(rotate, "rotate")
        scale = validation.check_number(scale, "scale", positive=True)
        moved = translate != (0, 0) or rotate != 0 or scale != 1
        if moved and self.symmetry is None:
            raise ValueError("Moving, turning or scaling needs spatial symmetry statistics (symmetry=None).")
        if color is not None:
            color = np.asarray(color, np.float32)
            if color.shape != (3, 3) or self.image_shape[-1] != 3 or not np.isfinite(color).all():
                raise ValueError(
                    f"color must be a finite (3, 3) matrix for RGB images. Received: color.shape={color.shape}, "
                    f"image_shape={self.image_shape}"
                )
        outer = affine_from_control(translate, rotate, scale, self.image_shape[:2])
        results = []
        for batch in self._batches(x, batch_size):
            outputs, canonical = self._canonical_objects(batch)
            if self.symmetry is not None:
                theta = outputs["theta"]
                if moved:
                    theta = move_about_centre(theta, outer)
                canonical = self.to_observation(canonical, theta, outputs.get("color"))
            if color is not None:
                canonical = ops.einsum("bhwj,ij->bhwi", canonical, ops.convert_to_tensor(color))
            results.append(ops.convert_to_numpy(canonical))
        return np.concatenate(results)

    def vary_symmetry(self, x, seed=None, frames=None, batch_size=250):
        """The same objects with their symmetry statistics drawn afresh.

        Each object is decoded in its canonical frame (latents at their means, through
        the most probable class) and put into a new, randomly drawn frame: a new
        position, angle, size (and colour), drawn as `sample` draws them (`frames`).
        """
        if self.symmetry is None:
            raise ValueError("This model has no symmetry statistics (symmetry=None).")
        frames = self._check_frames(frames)
        generator = self._seed_generator(seed)
        results = []
        for batch in self._batches(x, batch_size):
            _, canonical = self._canonical_objects(batch)
            results.append(ops.convert_to_numpy(self._in_random_frames(canonical, generator, frames)))
        return np.concatenate(results)

    def _check_frames(self, frames):
        """`None` means the fitted frame prior where `fit` (or `fit_frame_prior`) fitted one."""
        fitted = self.symmetry is not None and self.frame_prior.is_fitted
        if frames is None:
            return "fitted" if fitted else "prior"
        _choice(frames, FRAMES, "frames")
        if frames == "fitted" and not fitted:
            raise ValueError(
                "frames='fitted' needs a fitted frame prior: train with `fit` on NumPy images or call "
                "`fit_frame_prior(x_train)`. Received: frames='fitted'"
            )
        return frames

    def draw_frames(self, n, seed=None, frames=None):
        """Symmetry statistics of `n` new frames: theta (n, 6) and, for colour, (n, 3, 3) matrices.

        Args:
            n: how many.
            seed: integer for reproducible draws.
            frames: `"fitted"`: a full-covariance Gaussian fitted to the statistics the
                net infers on the training images (the default once fitted);
                `"prior"`: the unit prior of training (theta = I + 0.2 u).
        """
        if self.symmetry is None:
            raise ValueError("This model has no symmetry statistics (symmetry=None).")
        n = validation.check_count(n)
        theta, color = self._frame_draw(n, self._seed_generator(seed), self._check_frames(frames))
        return {"theta": ops.convert_to_numpy(theta), **({"color": ops.convert_to_numpy(color)} if color is not None else {})}

    def _frame_draw(self, n, generator, frames):
        shape = (n, self.num_symmetry_statistics)
        if frames == "fitted":
            u = self.frame_prior(keras.random.normal(shape, seed=generator))
        else:
            u = self.symmetry_sampler.sample_prior(shape, seed=generator)
        return self.symmetry_parameters(u)

    def _in_random_frames(self, canonical, generator, frames):
        """Canonical-frame images put into newly drawn frames."""
        theta, color = self._frame_draw(ops.shape(canonical)[0], generator, frames)
        return self.to_observation(canonical, theta, color)

    def _class_means(self, outputs, class_ids=None):
        """Each row's latent means in its class's block (default: the most probable class), and the classes."""
        if class_ids is None:
            class_ids = ops.cast(ops.argmax(outputs["class_logits"], axis=-1), "int32")
        class_ids = ops.convert_to_tensor(class_ids, "int32")
        return class_rows(outputs["latent_loc"], class_ids, self.num_classes), class_ids

    def _canonical_objects(self, batch):
        """The net's outputs for a batch and each object decoded in its canonical frame."""
        outputs = self(batch)
        return outputs, self.decode(*self._class_means(outputs))

    def latent_grid(self, class_id, values):
        """The class's decoder over a grid of latent values, in the canonical frame.

        Args:
            class_id: the class.
            values: (G, latent_dim) latent values (e.g. 20 equally spaced in [-4, 4]);
                (G,) too when latent_dim is 1.

        Returns:
            (G, H, W, C) NumPy images.
        """
        class_id = validation.check_class_id(class_id, self.num_classes)
        values = validation.check_latent_values(values, self.latent_dim)
        class_ids = np.full((len(values),), class_id, np.int32)
        return ops.convert_to_numpy(self.decode(ops.convert_to_tensor(values), ops.convert_to_tensor(class_ids)))

    def sample(self, class_id, n, seed=None, frames=None):
        """New observations of a class (creative regime).

        The latents are drawn from their prior and decoded by the class's decoder; with
        symmetry statistics, new ones are drawn too and put the object into a new
        observation frame (see `draw_frames`).

        Args:
            class_id: the class.
            n: how many.
            seed: integer for reproducible draws; None uses the model's own stream.
            frames: `"fitted"` (frames like the training data's; the default once
                `fit` fitted them) or `"prior"` (the unit prior of training).

        Returns:
            (n, H, W, C) NumPy images.
        """
        class_id = validation.check_class_id(class_id, self.num_classes)
        n = validation.check_count(n)
        frames = self._check_frames(frames)
        generator = self._seed_generator(seed)
        z = self.latent_sampler.sample_prior((n, self.latent_dim), seed=generator)
        images = self.decode(z, ops.full((n,), class_id, dtype="int32"))
        if self.symmetry is not None:
            images = self._in_random_frames(images, generator, frames)
        return ops.convert_to_numpy(images)

    # ----------------------------------------------------------------- saving

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "num_classes": self.num_classes,
            "symmetry": self.symmetry,
            "encoder": self.encoder_type,
            "encoder_units": self.encoder_units,
            "conv_filters": self.conv_filters,
            "decoder_units": self.decoder_units,
            "latent_dim": self.latent_dim,
            "sampling": self.sampling,
            "prior_scale": self.prior_scale,
            "classifier_filters": self.classifier_filters,
            "classifier_units": self.classifier_units,
            "input_dropout": self.input_dropout,
            "classifier_input_offset": self.classifier_input_offset,
            "hidden_dropout": self.hidden_dropout,
            "ssn_filters": self.ssn_filters,
            "ssn_kernel_size": self.ssn_kernel_size,
            "ssn_units": self.ssn_units,
            "symmetry_prior_scale": self.symmetry_prior_scale,
            "symmetry_initial_log_scale": self.symmetry_initial_log_scale,
            "per_class_decoders": self.per_class_decoders,
            "seed": self.seed,
        }


def _int(value):
    return None if value is None else int(value)
