"""Distorted MNIST (Appendix B of the paper, after Jaderberg et al. 2015, appendix A.4).

Coordinates are pixel centres: column `x` to the right, row `y` downwards, the centre of
an `S x S` image at `((S - 1) / 2, (S - 1) / 2)`. A positive angle turns the digit
counter-clockwise as seen on screen.
"""

import numpy as np

RTS_CANVAS = 42
RTS_MAX_ANGLE = 45.0  # degrees, uniform in [-45, 45]
RTS_SCALE_RANGE = (0.7, 1.2)  # uniform
RTS_MAX_SHIFT = 7.0  # pixels, uniform in [-7, 7] per axis, from the canvas centre
TC_CANVAS = 60
TC_PIECES = 6
TC_PIECE_SIZE = 6
# Rows processed at once: bounds memory to a few hundred MB for any N.
CHUNK = 2000


def check_digits(images, labels, num_classes=10):
    """Validates MNIST-like input and returns it as numpy arrays."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"Expected digit images of shape (N, 28, 28). Received: shape={images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"Expected one label per image, shape ({images.shape[0]},). Received: shape={labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"Labels must lie in [0, {num_classes}). Received: min={labels.min()}, max={labels.max()}"
        )
    return images, labels


def bilinear_sample(images, src_x, src_y):
    """Samples `images` (N, H, W) at real coordinates (N, h, w), reading zeros outside.

    Returns float32 (N, h, w): `scipy.ndimage.map_coordinates` with linear
    interpolation over the whole batch (the image index is an integral coordinate), and
    `grid-constant` mode, so that a point near the border blends with the zeros outside
    it, as the `SpatialTransformer` layer reads its images.
    """
    from scipy import ndimage

    index = np.broadcast_to(np.arange(len(images), dtype=np.float64)[:, None, None], np.shape(src_x))
    return ndimage.map_coordinates(
        images.astype(np.float32), [index, src_y, src_x], order=1, mode="grid-constant", cval=0.0
    )


def _chunks(n, progress):
    bar = None
    if progress:
        import keras

        bar = keras.utils.Progbar(n, unit_name="image")
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        yield slice(start, stop)
        if bar is not None:
            bar.update(stop)


def make_rts_mnist(images, labels, seed, progress=False):
    """Rotates, scales and translates each digit onto a 42x42 canvas.

    Args:
        images: uint8 digits (N, 28, 28).
        labels: integer labels (N,), kept as they are.
        seed: integer; the same seed gives the same bytes on every machine.
        progress: show a progress bar.

    Returns:
        `(canvases, labels, truth)`: uint8 (N, 42, 42), int64 (N,), and a dict of the
        per-image ground truth: `angle` (degrees, counter-clockwise), `scale`, and
        `shift` (N, 2) in pixels (dx, dy) of the digit's centre from the canvas centre.
    """
    images, labels = check_digits(images, labels)
    rng = np.random.default_rng(seed)
    n = len(images)
    angle = rng.uniform(-RTS_MAX_ANGLE, RTS_MAX_ANGLE, n)
    scale = rng.uniform(*RTS_SCALE_RANGE, n)
    shift = rng.uniform(-RTS_MAX_SHIFT, RTS_MAX_SHIFT, (n, 2))

    centre_in, centre_out = (28 - 1) / 2, (RTS_CANVAS - 1) / 2
    grid = np.arange(RTS_CANVAS, dtype=np.float64)
    canvases = np.empty((n, RTS_CANVAS, RTS_CANVAS), np.uint8)
    for part in _chunks(n, progress):
        # Inverse map: canvas pixel -> digit pixel, q = R(-a) (p - c_out - t) / s + c_in.
        # On screen (y down) a counter-clockwise turn by a maps (x, y) to
        # (x cos a + y sin a, -x sin a + y cos a); its inverse swaps the signs of sin.
        a = np.deg2rad(angle[part])[:, None, None]
        s = scale[part][:, None, None]
        px = grid[None, None, :] - centre_out - shift[part, 0][:, None, None]
        py = grid[None, :, None] - centre_out - shift[part, 1][:, None, None]
        src_x = (np.cos(a) * px - np.sin(a) * py) / s + centre_in
        src_y = (np.sin(a) * px + np.cos(a) * py) / s + centre_in
        sampled = bilinear_sample(images[part], src_x, src_y)
        canvases[part] = np.clip(np.rint(sampled), 0, 255).astype(np.uint8)
    truth = {"angle": angle, "scale": scale, "shift": shift}
    return canvases, labels.astype(np.int64), truth


def make_tc_mnist(images, labels, seed, progress=False):
    """Places each digit on a 60x60 canvas with 6 pieces of 6x6 clutter.

    The digit sits at a uniformly random position fully inside the canvas; each clutter
    piece is a 6x6 crop of another randomly chosen digit of the same `images`, added at a
    random position; the sum is clipped to the uint8 range.

    Args:
        images: uint8 digits (N, 28, 28).
        labels: integer labels (N,), kept as they are.
        seed: integer; the same seed gives the same bytes on every machine.
        progress: show a progress bar.

    Returns:
        `(canvases, labels, truth)`: uint8 (N, 60, 60), int64 (N,), and a dict with
        `position` (N, 2), the (x, y) of the digit's top-left corner on the canvas, and
        `clutter_position` (N, 6, 2), the (x, y) top-left corner of each clutter piece.
    """
    images, labels = check_digits(images, labels)
    if len(images) < 2:
        raise ValueError(f"TC MNIST crops clutter from other digits: need at least 2. Received: N={len(images)}")
    rng = np.random.default_rng(seed)
    n, size, piece = len(images), TC_CANVAS, TC_PIECE_SIZE
    position = rng.integers(0, size - 28 + 1, (n, 2))
    # Another digit for each piece: a non-zero offset modulo N never picks the same one.
    source = (np.arange(n)[:, None] + rng.integers(1, n, (n, TC_PIECES))) % n
    crop = rng.integers(0, 28 - piece + 1, (n, TC_PIECES, 2))
    clutter_position = rng.integers(0, size - piece + 1, (n, TC_PIECES, 2))

    canvases = np.empty((n, size, size), np.uint8)
    digit_offsets = np.arange(28)
    piece_offsets = np.arange(piece)
    for part in _chunks(n, progress):
        m = part.stop - part.start
        rows = np.arange(m)[:, None, None]
        canvas = np.zeros((m, size, size), np.int32)
        ys = position[part, 1][:, None, None] + digit_offsets[None, :, None]
        xs = position[part, 0][:, None, None] + digit_offsets[None, None, :]
        canvas[rows, ys, xs] = images[part]
        for k in range(TC_PIECES):
            cy = crop[part, k, 1][:, None, None] + piece_offsets[None, :, None]
            cx = crop[part, k, 0][:, None, None] + piece_offsets[None, None, :]
            pieces = images[source[part, k][:, None, None], cy, cx]
            ys = clutter_position[part, k, 1][:, None, None] + piece_offsets[None, :, None]
            xs = clutter_position[part, k, 0][:, None, None] + piece_offsets[None, None, :]
            canvas[rows, ys, xs] += pieces
        canvases[part] = np.clip(canvas, 0, 255).astype(np.uint8)
    truth = {"position": position, "clutter_position": clutter_position}
    return canvases, labels.astype(np.int64), truth


def truth_geometry(dataset, truth, canvas):
    """The ground truth of a distorted set as the frame's turn, size and shift (cf. `keras_ace.layers.frame_geometry`).

    Args:
        dataset: `"rts_mnist"` or `"tc_mnist"`.
        truth: the dict `make_rts_mnist` / `make_tc_mnist` return (or a slice of it).
        canvas: the canvas size in pixels.

    Returns:
        dict of (N,) arrays: RTS `angle` (degrees, counter-clockwise), `scale`,
        `shift_x`, `shift_y` (pixels from the canvas centre); TC `shift_x`, `shift_y`
        of the digit's centre.
    """
    if dataset == "rts_mnist":
        return {"angle": truth["angle"], "scale": truth["scale"], "shift_x": truth["shift"][:, 0],
                "shift_y": truth["shift"][:, 1]}
    if dataset == "tc_mnist":
        centre = truth["position"] + (28 - 1) / 2.0 - (canvas - 1) / 2.0
        return {"shift_x": centre[:, 0], "shift_y": centre[:, 1]}
    raise ValueError(f"No ground truth for {dataset!r}. Expected 'rts_mnist' or 'tc_mnist'.")
