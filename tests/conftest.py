"""Shared test set-up: real data from ../shared/data, a private cache, never the network."""

import os
import sys
import tempfile

import pytest

# The reproduce/ scripts import their shared code as `common` (reproduce/common/), the
# folder of the running script being first on the path; the tests import it the same way.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reproduce"))

SHARED_DATA = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
os.environ["KERAS_ACE_OFFLINE"] = "1"
os.environ.setdefault("KERAS_ACE_CACHE", os.path.join(tempfile.gettempdir(), "keras_ace_test_cache"))
if os.path.isdir(SHARED_DATA):
    os.environ.setdefault("KERAS_ACE_DATA", SHARED_DATA)


def _has(file):
    folder = os.environ.get("KERAS_ACE_DATA")
    return bool(folder) and os.path.isfile(os.path.join(folder, file))


requires_mnist = pytest.mark.skipif(
    not _has("mnist.npz"), reason=f"mnist.npz not found in KERAS_ACE_DATA or {SHARED_DATA}"
)
requires_cifar10 = pytest.mark.skipif(
    not _has("cifar10-jpeg.zip"), reason=f"cifar10-jpeg.zip not found in KERAS_ACE_DATA or {SHARED_DATA}"
)
