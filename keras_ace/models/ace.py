"""The auto-classifier-encoder with symmetry statistics (Figure 5): its parts, box 0.4 and the loss."""

import keras
import numpy as np
from keras import ops

from keras_ace import validation
from keras_ace.api_export import keras_ace_export
from keras_ace.backend_ops import scale_loss_for_replicas
from keras_ace.layers.spatial_transformer import PADDINGS
from keras_ace.models.auto_encoder import AutoEncoder
from keras_ace.models.auto_encoder import class_rows
from keras_ace.models.blocks import check_choice
from keras_ace.models.classifier import Classifier
from keras_ace.models.fitting import PaperTraining
from keras_ace.models.generation import GenerationAndControl
from keras_ace.models import likelihood
from keras_ace.models.legacy import LAYOUT
from keras_ace.models.legacy import current_config
from keras_ace.models.likelihood import bernoulli_nll
from keras_ace.models.symmetries import COLOR_INVERSES
from keras_ace.models.symmetries import at_states
from keras_ace.models.symmetries import every_state
from keras_ace.models.symmetries import repeat_rows
from keras_ace.models.symmetries import make_symmetries
from keras_ace.models.symmetries import symmetry_kinds
from keras_ace.models.symmetry_statistics_net import SymmetryStatisticsNet

# The seed of inference's latent noise (evaluate's one-sample bound) for a model built without one.
INFERENCE_SEED = 1511


@keras_ace_export
class ACE(PaperTraining, GenerationAndControl, keras.Model):
    """Auto-classifier-encoder with symmetry statistics (Georgiev 2015, Figure 5).

    G. Georgiev, "Symmetries and control in generative neural nets", 2015. The boxes
    of Figure 5, each a Model of its own with Appendix A's layers:

    - `symmetry_net`, a `SymmetryStatisticsNet` (boxes 0.2-0.3), when `symmetry` is
      set: the symmetry statistics, latent variables sampled in training, and from
      them the affine transform theta (and the colour matrix);
    - box 0.4 (`canonicalize`), one `Symmetry` layer per kind (`symmetries`): the input
      resampled with theta (then colour-mixed) into the canonical frame, which the
      classifier and the auto-encoder see;
    - `classifier`, a `Classifier` (box C);
    - `auto_encoder`, an `AutoEncoder` (box AE): shared encoder, per-class latent
      blocks and decoders. The decoder draws in the canonical frame; the inverse of
      box 0.4 (`to_observation`) maps it back, where the reconstruction error is
      computed against the original input.

    Training is supervised (`fit(x, y)`): the true label picks the latent block and
    the decoder. The loss per image, in nats, is the *reconstruction error* (Bernoulli
    NLL of the [0, 1] intensities) + the *generative error* (KL of the class's latents
    and of the symmetry statistics) + the classification cross-entropy, each tracked
    as a metric; `evaluate` also reports the eq. 4.1 `nll_bound` (`val_nll_bound` in
    the training logs; with symmetry statistics, their frame sampled too). `nll_estimate` is
    the importance-weighted estimate of -log p(x) that compares models with and
    without symmetry statistics (`keras_ace.models.likelihood`). Generation and control
    (`sample`, `control`, ...) come from `GenerationAndControl`; `fit`'s paper defaults
    and checked data from `PaperTraining` (`keras_ace.models.fitting`).

    Args:
        image_shape: `(height, width, channels)`.
        num_classes: the number of classes K.
        symmetry: `None`, `"spatial"`, `"spatial_color"` (RGB only), `"spatial_mirror"`
            (frames may also mirror left-right), `"spatial_mirror_color"` or a tuple of
            registered symmetry names, in the order box 0.4 applies them
            (`keras_ace.models.symmetries`; a new kind is one class and one registration).
        encoder, encoder_units, conv_filters, decoder_units, latent_dim, sampling,
            prior_scale, per_class_decoders: the `AutoEncoder`'s arguments.
        classifier_filters, classifier_units, input_dropout, hidden_dropout,
            classifier_input_offset: the `Classifier`'s `filters`, `units`,
            `input_dropout`, `hidden_dropout`, `input_offset`.
        ssn_filters, ssn_kernel_size, ssn_units, symmetry_gains,
            symmetry_initial_log_scale: the `SymmetryStatisticsNet`'s `filters`,
            `kernel_size`, `units`, `gains`, `initial_log_scale` (it samples
            with the auto-encoder's `sampling`).
        padding: what box 0.4's `SpatialTransformer` reads outside the image: `"border"`
            (the nearest edge pixel, as the Theano-era transformers of 2015; default)
            or `"zeros"` (docs/deviations.md, docs/results.md).
        color_inverse: with colour statistics, which direction of box 0.4 applies the
            inverse of the row-stochastic matrix M: `"canonicalize"` (default; the
            decoded image is mapped to the observation by M itself, a convex mix of its
            channels, so it stays in [0, 1]) or `"to_observation"` (M canonicalises and
            its inverse, which has negative entries, maps back).
        seed: seed of all sampling.

    Example:
    >>> model = ACE((16, 16, 1), symmetry="spatial", decoder_units=32)
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
        symmetry_gains=(0.2, 1.0),
        symmetry_initial_log_scale=-3.0,
        per_class_decoders=True,
        padding="border",
        color_inverse="canonicalize",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        image_shape = validation.check_model_shape(image_shape, num_classes)
        if "color" in symmetry_kinds(symmetry) and image_shape[-1] != 3:
            raise ValueError(f"symmetry={symmetry!r} needs RGB images. Received: image_shape={image_shape}")
        check_choice(padding, PADDINGS, "padding")
        check_choice(color_inverse, COLOR_INVERSES, "color_inverse")
        symmetry = symmetry if symmetry is None or isinstance(symmetry, str) else tuple(symmetry)
        self.image_shape, self.num_classes, self.symmetry, self.seed = image_shape, int(num_classes), symmetry, seed
        # Every argument of the net, for `get_config`; the parts hold them as their own.
        self.settings = {
            "encoder": encoder, "encoder_units": encoder_units, "conv_filters": conv_filters,
            "decoder_units": decoder_units, "latent_dim": latent_dim, "sampling": sampling,
            "prior_scale": prior_scale, "classifier_filters": classifier_filters,
            "classifier_units": classifier_units, "input_dropout": input_dropout,
            "classifier_input_offset": classifier_input_offset, "hidden_dropout": hidden_dropout,
            "ssn_filters": ssn_filters, "ssn_kernel_size": ssn_kernel_size, "ssn_units": ssn_units,
            "symmetry_gains": symmetry_gains, "symmetry_initial_log_scale": symmetry_initial_log_scale,
            "per_class_decoders": per_class_decoders, "padding": padding, "color_inverse": color_inverse,
        }  # fmt: skip

        # Seeds drawn from one: the latents' and the symmetry statistics' samplers (training),
        # the one-sample noise of inference, and `sample`'s own stream (generation).
        seeds = [None] * 4 if seed is None else [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, 4)]
        self.inference_seed = INFERENCE_SEED if seeds[2] is None else seeds[2]
        self.generation_seed = seeds[3]
        # Box 0.4, one layer per symmetry (`keras_ace.models.symmetries`), shared with the symmetry net.
        self.symmetries = make_symmetries(symmetry, symmetry_gains, padding=padding, color_inverse=color_inverse)
        if symmetry is not None:
            self.symmetry_net = SymmetryStatisticsNet(
                symmetry, ssn_filters, ssn_kernel_size, ssn_units, sampling, symmetry_gains,
                symmetry_initial_log_scale, seed=seeds[1], symmetries=self.symmetries, name="symmetry_net",
            )  # fmt: skip
        self.classifier = Classifier(
            num_classes, classifier_filters, classifier_units, input_dropout, hidden_dropout,
            classifier_input_offset, name="classifier",
        )  # fmt: skip
        self.auto_encoder = AutoEncoder(
            image_shape, num_classes, encoder, encoder_units, conv_filters, decoder_units, latent_dim, sampling,
            prior_scale, per_class_decoders, seed=seeds[0], name="auto_encoder",
        )  # fmt: skip
        self.latent_dim = self.auto_encoder.latent_dim
        self.sampling = sampling

        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.generative_tracker = keras.metrics.Mean(name="generative")
        self.classification_tracker = keras.metrics.Mean(name="classification")
        self.error_tracker = keras.metrics.Mean(name="classification_error")
        self.nll_bound_tracker = keras.metrics.Mean(name="nll_bound")

    def build(self, input_shape=None):
        if self.built:
            return
        shape = (None, *self.image_shape)
        if self.symmetry is not None:
            self.symmetry_net.build(shape)
        self.classifier.build(shape)
        self.auto_encoder.build(shape)
        self.built = True

    def parameter_counts(self):
        """Trainable parameters per part of Figure 5."""
        ssn = self.symmetry_net if self.symmetry else None
        parts = {"symmetry statistics net": ssn, "classifier": self.classifier, "auto-encoder": self.auto_encoder}
        return {name: sum(int(np.prod(w.shape)) for w in part.trainable_weights) if part else 0 for name, part in parts.items()}

    # ----------------------------------------------------------------- box 0.4 and the forward pass

    def canonicalize(self, x, frame):
        """Box 0.4: observation -> canonical frame, each symmetry in turn (`frame`: `{key: transform}`)."""
        for symmetry in self.symmetries:
            x = symmetry.canonicalize(x, frame[symmetry.key])
        return x

    def to_observation(self, canonical, frame=None):
        """The inverse of box 0.4: canonical frame -> observation, the symmetries in reverse (none: the same)."""
        for symmetry in reversed(self.symmetries):
            canonical = symmetry.to_observation(canonical, frame[symmetry.key])
        return canonical

    def frame(self, outputs):
        """The frame in `call`'s outputs: `{key: transform}` of each symmetry (empty without symmetry)."""
        return {s.key: outputs[s.key] for s in self.symmetries}

    def call(self, x, training=False):
        """The label-free part of the net: symmetry statistics, classifier, latent posteriors.

        Returns a dict: `class_logits` (B, K), `latent_loc` and `latent_log_scale`
        (B, K, latent_dim), `noise` (B, latent_dim) for the reparameterised latent
        sample, `canonical` (B, H, W, C) (the input in the canonical frame) and, with
        symmetry, the frame (`theta` (B, 6), `color` (B, 3, 3), ...) and `symmetry_kl`
        (B,). With a discrete symmetry (the mirror) these rows are at each image's more
        probable state, and `states` holds the same entries for every state (S * B
        rows, state-major) with their posterior `log_weights` (B, S), which the loss
        and the bound sum over.
        """
        validation.check_symbolic_images(x, self.image_shape)
        if self.symmetry is None:
            return self._read(x, {}, training)
        statistics = self.symmetry_net(x, training=training)
        return self.read_in_frame(x, statistics, {s.key: statistics[s.key] for s in self.symmetries}, training)

    def read_in_frame(self, x, statistics, frame, training=False):
        """`call`'s outputs with the frame given (`statistics`: the symmetry net's, for the KL and the states' posterior)."""
        discrete = self.symmetry_net.discrete
        if discrete is None:
            outputs = self._read(x, frame, training)
        else:
            every = self._read(*every_state(x, frame, discrete), training)
            chosen = ops.one_hot(ops.argmax(statistics["state_logits"], axis=-1), discrete.num_states)  # (B, S)
            outputs = {k: at_states(v, chosen) for k, v in every.items()}
            outputs["states"] = {**every, "log_weights": ops.log_softmax(statistics["state_logits"], axis=-1)}
        outputs["symmetry_kl"] = statistics["kl"]
        return outputs

    def _read(self, x, frame, training):
        """Box 0.4 with `frame`, then the classifier's logits and the latent posteriors of the canonical images."""
        canonical = self.canonicalize(x, frame)
        outputs = {**frame, "canonical": canonical, "class_logits": self.classifier(canonical, training=training)}
        outputs["latent_loc"], outputs["latent_log_scale"] = self.auto_encoder.encode(canonical)
        # Training draws from the latent sampler's stream; inference (evaluate's bound) from a
        # fixed seed, so that classify, evaluate or predict never move the training stream.
        seed = None if training else self.inference_seed
        outputs["noise"] = self.auto_encoder.latent_sampler.noise((ops.shape(x)[0], self.latent_dim), seed=seed)
        return outputs

    # ----------------------------------------------------------------- the loss and the bound

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        outputs = y_pred
        validation.check_symbolic_labels(y, self.num_classes)
        y = ops.cast(ops.reshape(y, (-1,)), "int32")
        # Each state's rows with a discrete symmetry, the expectation over its posterior.
        rows, copies, expected = likelihood.over_states(outputs)
        x_rows, y_rows = repeat_rows(x, copies), repeat_rows(y, copies)
        # The true class picks the latent block and the decoder (supervised training).
        loc = class_rows(rows["latent_loc"], y_rows, self.num_classes)  # (B, L)
        log_scale = class_rows(rows["latent_log_scale"], y_rows, self.num_classes)
        z = self.auto_encoder.posterior_sample(loc, log_scale, rows["noise"])
        # Against the original input, after undoing box 0.4.
        decoded = self.to_observation(self.auto_encoder.decode(z, y_rows), self.frame(rows))
        reconstruction = expected(bernoulli_nll(x_rows, decoded))
        generative = expected(self.auto_encoder.latent_sampler.kl_divergence(loc, log_scale))
        if self.symmetry is not None:
            generative = generative + outputs["symmetry_kl"]
        cross_entropy = keras.losses.sparse_categorical_crossentropy(y_rows, rows["class_logits"], from_logits=True)
        classification = expected(cross_entropy)
        per_example = reconstruction + generative + classification
        if sample_weight is not None:
            per_example = per_example * ops.reshape(ops.cast(sample_weight, per_example.dtype), (-1,))

        self.reconstruction_tracker.update_state(reconstruction)
        self.generative_tracker.update_state(generative)
        self.classification_tracker.update_state(classification)
        predicted = ops.cast(ops.argmax(outputs["class_logits"], axis=-1), "int32")
        self.error_tracker.update_state(ops.cast(ops.not_equal(predicted, y), "float32"))
        if not training:
            self.nll_bound_tracker.update_state(self.nll_bound(x, outputs))
        return scale_loss_for_replicas(ops.mean(per_example))

    def nll_bound(self, x, outputs):
        """The eq. 4.1 mixture bound on -log p(x) in nats, per example (B,): `likelihood.nll_bound`."""
        return likelihood.nll_bound(self, x, outputs)

    def nll_estimate(self, x, samples=100, batch_size=likelihood.ESTIMATE_ROWS, seed=None, verbose=0):
        """Importance-weighted estimate of -log p(x) in nats, per image (N,): `likelihood.nll_estimate`."""
        return likelihood.nll_estimate(self, x, samples, batch_size, seed, verbose)

    # ----------------------------------------------------------------- saving

    def get_config(self):
        return {
            **super().get_config(),
            "image_shape": self.image_shape,
            "num_classes": self.num_classes,
            "symmetry": self.symmetry,
            **self.settings,
            "seed": self.seed,
            "layout": LAYOUT,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**current_config(config))
