"""What a trained ACE does: generation (the creative regime) and control of observations.

`GenerationAndControl` is mixed into `ACE`; every method reads the parts of Figure 5
(`symmetry_net`, `classifier`, `auto_encoder`) and box 0.4 (`ACE.to_observation`) and
takes and returns NumPy arrays.
"""

import math
import warnings

import keras
import numpy as np
from keras import ops

from keras_ace import validation
from keras_ace.models.auto_encoder import class_rows
from keras_ace.models.blocks import check_choice
from keras_ace.models.symmetry_statistics_net import FRAMES

# Training images whose inferred symmetry statistics `fit` uses to fit the frame prior.
FRAME_PRIOR_IMAGES = 10000


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


class GenerationAndControl:
    """`sample`, `latent_grid`, `control`, `vary_symmetry`, `reconstruct`, `classify` and friends."""

    def _batches(self, x, batch_size):
        batch_size = validation.check_count(batch_size, "batch_size")
        x = np.asarray(x, np.float32)
        self.check_data(x, None)
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size]

    def _seed_generator(self, seed):
        """A stream for new draws: `seed`'s own, or the model's generation stream, never the training one.

        The generation stream starts from the model's seed when it is built or loaded; it
        is not saved with the model (Keras saves no `SeedGenerator` state).
        """
        if isinstance(seed, keras.random.SeedGenerator):  # a stream the caller draws from batch after batch
            return seed
        if seed is not None:
            return keras.random.SeedGenerator(seed)
        if getattr(self, "_generation_stream", None) is None:
            # Set past Keras' attribute tracking: a stream of draws, not a weight of the model.
            object.__setattr__(self, "_generation_stream", keras.random.SeedGenerator(self.generation_seed))
        return self._generation_stream

    def _require_symmetry_net(self):
        if self.symmetry is None:
            raise ValueError("This model has no symmetry statistics (symmetry=None).")
        return self.symmetry_net

    # ----------------------------------------------------------------- reading images

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
        """The frames of images x at the statistics' means: `{"theta": (N, 6)}`, plus `"color": (N, 3, 3)` for colour."""
        net = self._require_symmetry_net()
        parts = [net(b) for b in self._batches(x, batch_size)]
        keys = [s.key for s in self.symmetries]
        return {k: np.concatenate([ops.convert_to_numpy(p[k]) for p in parts]) for k in keys}

    def fit_frame_prior(self, x, batch_size=250):
        """Fits the frame prior of `sample` to the symmetry statistics inferred on images x."""
        net = self._require_symmetry_net()
        locations = [ops.convert_to_numpy(net(b)["loc"]) for b in self._batches(x, batch_size)]
        net.frame_prior.adapt(np.concatenate(locations))

    def _class_means(self, outputs, class_ids=None):
        """Each row's latent means in its class's block (default: the most probable class), and the classes."""
        if class_ids is None:
            class_ids = ops.cast(ops.argmax(outputs["class_logits"], axis=-1), "int32")
        class_ids = ops.convert_to_tensor(class_ids, "int32")
        return class_rows(outputs["latent_loc"], class_ids, self.num_classes), class_ids

    def _canonical_objects(self, batch):
        """The net's outputs for a batch and each object decoded in its canonical frame."""
        outputs = self(batch)
        return outputs, self.auto_encoder.decode(*self._class_means(outputs))

    # ----------------------------------------------------------------- control

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
        down). `color` (3, 3) mixes the RGB vector of every output pixel, after the
        image's own colour statistics.

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
        if moved and "theta" not in {s.key for s in self.symmetries}:
            raise ValueError(f"Moving, turning or scaling needs spatial symmetry statistics (symmetry={self.symmetry!r}).")
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
            frame = self.frame(outputs)
            if moved:
                frame["theta"] = move_about_centre(frame["theta"], outer)
            canonical = self.to_observation(canonical, frame)
            if color is not None:
                canonical = ops.einsum("bhwj,ij->bhwi", canonical, ops.convert_to_tensor(color))
            results.append(ops.convert_to_numpy(canonical))
        return np.concatenate(results)

    # ----------------------------------------------------------------- new frames and new objects

    def _check_frames(self, frames):
        """`None` means the fitted frame prior where `fit` (or `fit_frame_prior`) fitted one."""
        fitted = self.symmetry is not None and self.symmetry_net.frame_prior.is_fitted
        if frames is None:
            if self.symmetry is not None and not fitted:
                warnings.warn("No frame prior has been fitted (`fit` fits one, or `fit_frame_prior(x_train)`): new "
                              "frames come from the unit prior of training. Pass frames='prior' to choose it.", stacklevel=3)
            return "fitted" if fitted else "prior"
        check_choice(frames, FRAMES, "frames")
        if frames == "fitted" and not fitted:
            raise ValueError(
                "frames='fitted' needs a fitted frame prior: train with `fit` or call "
                "`fit_frame_prior(x_train)`. Received: frames='fitted'"
            )
        return frames

    def _in_random_frames(self, canonical, generator, frames):
        """Canonical-frame images put into newly drawn frames."""
        return self.to_observation(canonical, self.symmetry_net.draw_frame(ops.shape(canonical)[0], generator, frames))

    def draw_frames(self, n, seed=None, frames=None):
        """Symmetry statistics of `n` new frames: theta (n, 6) and, for colour, (n, 3, 3) matrices.

        Args:
            n: how many.
            seed: integer for reproducible draws.
            frames: `"fitted"`: a full-covariance Gaussian fitted to the statistics the
                net infers on the training images (the default once fitted);
                `"prior"`: the unit prior of training (theta = I + 0.2 u).
        """
        net = self._require_symmetry_net()
        n = validation.check_count(n)
        frame = net.draw_frame(n, self._seed_generator(seed), self._check_frames(frames))
        return {k: ops.convert_to_numpy(v) for k, v in frame.items()}

    def vary_symmetry(self, x, seed=None, frames=None, batch_size=250):
        """The same objects with their symmetry statistics drawn afresh.

        Each object is decoded in its canonical frame (latents at their means, through
        the most probable class) and put into a new, randomly drawn frame: a new
        position, angle, size (and colour), drawn as `sample` draws them (`frames`).
        """
        self._require_symmetry_net()
        frames = self._check_frames(frames)
        generator = self._seed_generator(seed)
        results = []
        for batch in self._batches(x, batch_size):
            _, canonical = self._canonical_objects(batch)
            results.append(ops.convert_to_numpy(self._in_random_frames(canonical, generator, frames)))
        return np.concatenate(results)

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
        class_ids = ops.convert_to_tensor(np.full((len(values),), class_id, np.int32))
        return ops.convert_to_numpy(self.auto_encoder.decode(ops.convert_to_tensor(values), class_ids))

    def sample(self, class_id, n, seed=None, frames=None):
        """New observations of a class (creative regime).

        The latents are drawn from their prior and decoded by the class's decoder; with
        symmetry statistics, new ones are drawn too and put the object into a new
        observation frame (see `draw_frames`).

        Args:
            class_id: the class.
            n: how many.
            seed: integer for reproducible draws, or a `keras.random.SeedGenerator` to go on
                drawing from (several batches as one stream); None uses the model's own stream.
            frames: `"fitted"` (frames like the training data's; the default once
                `fit` fitted them) or `"prior"` (the unit prior of training).

        Returns:
            (n, H, W, C) NumPy images.
        """
        class_id = validation.check_class_id(class_id, self.num_classes)
        n = validation.check_count(n)
        frames = self._check_frames(frames)
        generator = self._seed_generator(seed)
        z = self.auto_encoder.latent_sampler.sample_prior((n, self.latent_dim), seed=generator)
        images = self.auto_encoder.decode(z, ops.full((n,), class_id, dtype="int32"))
        if self.symmetry is not None:
            images = self._in_random_frames(images, generator, frames)
        return ops.convert_to_numpy(images)
