"""Image moments: where an object is, how large and how turned (to check distortions and control)."""

import numpy as np


def _mass(images):
    images = np.asarray(images, np.float64)
    return images.sum(axis=-1) if images.ndim == 4 else images  # (N, H, W)


def centre_of_mass(images):
    """(N, 2) centre of mass (x, y) in pixels of images (N, H, W) or (N, H, W, C)."""
    mass = _mass(images)
    ys, xs = np.mgrid[: mass.shape[1], : mass.shape[2]]
    total = mass.sum(axis=(1, 2))
    return np.stack([(mass * xs).sum(axis=(1, 2)) / total, (mass * ys).sum(axis=(1, 2)) / total], 1)


def second_moments(images):
    """(N, 2, 2) covariance of the mass about its centre, in (x, y) pixel units."""
    mass = _mass(images)
    ys, xs = np.mgrid[: mass.shape[1], : mass.shape[2]]
    com = centre_of_mass(mass)
    dx = xs[None] - com[:, 0, None, None]
    dy = ys[None] - com[:, 1, None, None]
    total = mass.sum(axis=(1, 2))
    cxx = (mass * dx * dx).sum(axis=(1, 2)) / total
    cyy = (mass * dy * dy).sum(axis=(1, 2)) / total
    cxy = (mass * dx * dy).sum(axis=(1, 2)) / total
    return np.stack([np.stack([cxx, cxy], -1), np.stack([cxy, cyy], -1)], -2)


def spread(images):
    """Root mean squared distance of the mass from its centre, per image: (N,)."""
    cov = second_moments(images)
    return np.sqrt(cov[:, 0, 0] + cov[:, 1, 1])


def orientation(images):
    """Angle in degrees of the main axis of the mass, counter-clockwise on screen, in (-90, 90]."""
    cov = second_moments(images)
    # y points down on screen, so a counter-clockwise angle has a negative xy covariance.
    return np.rad2deg(0.5 * np.arctan2(-2 * cov[:, 0, 1], cov[:, 0, 0] - cov[:, 1, 1]))
