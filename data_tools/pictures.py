"""Pictures of images: grids, panels side by side, and PNG files with titles and a caption.

One grid writer for the whole project: the figure scripts, `python -m keras_ace` and
`python -m data_tools preview` all draw with these.
"""

import numpy as np

from data_tools.files import atomic_path

GAP = 4  # pixels between the panels of a figure


def mosaic(images, gap=0, background=1.0):
    """(rows, cols, H, W, C) -> one (rows * H + gaps, cols * W + gaps, C) image."""
    rows, cols, h, w, c = images.shape
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, c), background, np.float32)
    for r in range(rows):
        for k in range(cols):
            out[r * (h + gap) : r * (h + gap) + h, k * (w + gap) : k * (w + gap) + w] = images[r, k]
    return out


def side_by_side(panels, gap=GAP, background=1.0):
    """Panels (H_i, W_i, C) next to each other, top-aligned, on a white background."""
    height = max(p.shape[0] for p in panels)
    channels = max(p.shape[2] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    out = np.full((height, width, channels), background, np.float32)
    x = 0
    for p in panels:
        out[: p.shape[0], x : x + p.shape[1]] = p if p.shape[2] == channels else np.repeat(p, channels, axis=2)
        x += p.shape[1] + gap
    return out


def save_png(image, path):
    """Writes an (H, W, 1 or 3) image in [0, 1] at exactly H x W pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.clip(image, 0, 1)
    with atomic_path(path) as tmp:
        plt.imsave(tmp, image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)


def save_figure(figure, path, **options):
    """`figure.savefig(path)`, atomically (the format from `path`'s suffix)."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, **options)


def save_annotated_png(panels, titles, caption, path):
    """The panels side by side at their own pixel size, a title over each and a caption below."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.clip(side_by_side(panels), 0, 1)
    height, width = image.shape[:2]

    def wrap(text, pixels):
        # About 7 pixels per character of a 9-point font at 100 dpi (6.5 let long lines run off the edge).
        return "\n".join(textwrap.fill(line, max(20, int(pixels / 7.2))) for line in text.split("\n")) if text else ""

    titles = [wrap(t, p.shape[1]) for t, p in zip(titles, panels)]
    caption = wrap(caption, width)
    lines = max([t.count("\n") + 1 for t in titles] + [1])
    dpi, top, bottom = 100, 12 + 16 * lines, (12 + 16 * (caption.count("\n") + 1)) if caption else 4
    figure = plt.figure(figsize=(width / dpi, (height + top + bottom) / dpi), dpi=dpi)
    axis = figure.add_axes([0, bottom / (height + top + bottom), 1, height / (height + top + bottom)])
    axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.axis("off")
    x = 0
    for panel, title in zip(panels, titles):
        figure.text((x + panel.shape[1] / 2) / width, 1 - 4 / (height + top + bottom), title,
                    ha="center", va="top", fontsize=9)
        x += panel.shape[1] + GAP
    figure.text(0.005, 4 / (height + top + bottom), caption, ha="left", va="bottom", fontsize=9)
    save_figure(figure, path, dpi=dpi)
    plt.close(figure)


# Outer ring of pixels read as the background of a CIFAR-10 picture.
BACKGROUND_BORDER = 4


def background_saturation(images, border=BACKGROUND_BORDER):
    """Mean HSV saturation, (max - min) / max over RGB, of the outer `border` pixels of (..., H, W, 3) images.

    Figure 4's claim: colour statistics subdue the background of the decoded horses.
    """
    pixels = background_ring(images, border)  # (N, ring pixels, 3)
    brightest = pixels.max(-1)
    saturation = np.where(brightest > 0, (brightest - pixels.min(-1)) / np.maximum(brightest, 1e-6), 0.0)
    return float(saturation.mean())


def background_ring(images, border=BACKGROUND_BORDER):
    """The outer `border` pixels of (..., H, W, 3) images: (N, ring pixels, 3)."""
    images = np.asarray(images, np.float32).reshape(-1, *np.shape(images)[-3:])
    ring = np.ones(images.shape[1:3], bool)
    ring[border:-border, border:-border] = False
    return images[:, ring]


def background_green(images, border=BACKGROUND_BORDER):
    """Mean excess of green over the mean of red and blue, G - (R + B) / 2, in the outer `border` pixels.

    Figure 4's caption: with colour statistics "the green background is subdued". Positive
    where the background is green (grass, trees), negative where it is red or blue.
    """
    pixels = background_ring(images, border)
    return float(np.mean(pixels[..., 1] - 0.5 * (pixels[..., 0] + pixels[..., 2])))
