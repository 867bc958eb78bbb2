import io
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import data_tools
from data_tools import distortions
from data_tools import files
from data_tools.moments import centre_of_mass
from data_tools.moments import spread
from data_tools import sources
from tests.conftest import requires_cifar10
from tests.helpers import cut_short
from tests.conftest import requires_mnist

SUBSET = 600


@pytest.fixture(scope="module")
def digits():
    (x_train, y_train), _ = data_tools.load_mnist()
    return x_train[:SUBSET], y_train[:SUBSET]


@requires_mnist
class TestLoaders:
    def test_mnist_shapes_and_types(self):
        (x_train, y_train), (x_test, y_test) = data_tools.load_mnist()
        assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
        assert x_test.shape == (10000, 28, 28)
        assert y_train.shape == (60000,) and set(np.unique(y_test)) == set(range(10))

    @requires_cifar10
    def test_cifar10_from_jpeg_zip(self):
        (x_train, y_train), (x_test, y_test) = data_tools.load_cifar10()
        assert x_train.shape == (50000, 32, 32, 3) and x_train.dtype == np.uint8
        assert x_test.shape == (10000, 32, 32, 3)
        np.testing.assert_array_equal(np.bincount(y_train), [5000] * 10)
        # Horses are brownish and planes often sit on blue sky: classes are not shuffled.
        horse, plane = x_train[y_train == 7].mean(axis=(0, 1, 2)), x_train[y_train == 0].mean(axis=(0, 1, 2))
        assert horse[0] > horse[2] and plane[2] > plane[0]
        # The zip lists its images class by class; the loader mixes them, so that the
        # first images of each split (quick mode's subsets) hold every class.
        assert set(y_train[:1000]) == set(range(10)) and set(y_test[:500]) == set(range(10))

    def test_load_dataset_float_in_unit_range(self):
        x, y = data_tools.load_dataset("mnist", "test")
        assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32
        assert x.min() == 0.0 and x.max() == 1.0
        x, y, truth = data_tools.load_dataset("rts_mnist", "test", return_truth=True)
        assert x.shape == (10000, 42, 42, 1) and set(truth) == {"angle", "scale", "shift"}

    def test_unknown_name_and_split(self):
        with pytest.raises(ValueError, match="Received: name='svhn'"):
            data_tools.load_dataset("svhn", "train")
        with pytest.raises(ValueError, match="Received: split='valid'"):
            data_tools.load_dataset("mnist", "valid")


@requires_mnist
class TestRTSMnist:
    def test_ranges_from_parameters(self, digits):
        canvases, labels, truth = data_tools.make_rts_mnist(*digits, seed=3)
        assert canvases.shape == (SUBSET, 42, 42) and canvases.dtype == np.uint8
        np.testing.assert_array_equal(labels, digits[1])
        assert np.abs(truth["angle"]).max() <= 45 and np.abs(truth["angle"]).max() > 40
        assert truth["scale"].min() >= 0.7 and truth["scale"].max() <= 1.2
        assert np.abs(truth["shift"]).max() <= 7 and np.abs(truth["shift"]).max() > 6.5

    def test_centre_of_mass_and_extent_follow_truth(self, digits):
        images = digits[0]
        canvases, _, truth = data_tools.make_rts_mnist(*digits, seed=3)
        # Where the digit's centre of mass goes: c_out + t + s R (com - c_in).
        a = np.deg2rad(truth["angle"])
        v = centre_of_mass(images) - 13.5
        rotated = np.stack([np.cos(a) * v[:, 0] + np.sin(a) * v[:, 1], -np.sin(a) * v[:, 0] + np.cos(a) * v[:, 1]], 1)
        expected = 20.5 + truth["shift"] + truth["scale"][:, None] * rotated
        error = np.abs(centre_of_mass(canvases) - expected)
        assert np.median(error) < 0.2 and error.max() < 1.0
        ratio = spread(canvases) / spread(images) / truth["scale"]
        assert np.abs(ratio - 1).max() < 0.1
        # The whole range of positions is used: +/-7 px plus the digit's own offset.
        com = centre_of_mass(canvases)
        assert com.min() < 20.5 - 6 and com.max() > 20.5 + 6

    def test_truth_geometry_matches_frame_geometry(self, digits):
        """A theta built from the ground truth reads back as that truth (same conventions)."""
        from data_tools.distortions import truth_geometry
        from common.metrics import learned_geometry

        _, _, truth = data_tools.make_rts_mnist(*digits, seed=3)
        a, s = np.deg2rad(truth["angle"]), truth["scale"]
        # Canonical q -> observation s R(angle) q + t; R turns counter-clockwise on screen.
        t = 2.0 * truth["shift"] / (42 - 1)
        theta = np.stack([s * np.cos(a), s * np.sin(a), t[:, 0], -s * np.sin(a), s * np.cos(a), t[:, 1]], axis=1)
        learned = learned_geometry(theta, (42, 42))
        for name, values in truth_geometry("rts_mnist", truth, 42).items():
            np.testing.assert_allclose(learned[name], values, atol=1e-4, err_msg=name)

    def test_rotation_direction_is_counter_clockwise(self):
        bar = np.zeros((1, 28, 28), np.uint8)
        bar[0, 13:15, 14:24] = 255  # a horizontal bar to the right of the centre
        canvases, _, truth = data_tools.make_rts_mnist(bar, [0], seed=0)
        com = centre_of_mass(canvases)[0] - 20.5 - truth["shift"][0]
        angle = np.rad2deg(np.arctan2(-com[1], com[0]))  # y points down on screen
        assert abs(angle - truth["angle"][0]) < 3

    def test_seed_determinism(self, digits):
        a = data_tools.make_rts_mnist(*digits, seed=5)[0]
        b = data_tools.make_rts_mnist(*digits, seed=5)[0]
        c = data_tools.make_rts_mnist(*digits, seed=6)[0]
        assert a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()


@requires_mnist
class TestTCMnist:
    def test_layout(self, digits):
        images, labels = digits
        canvases, out_labels, truth = data_tools.make_tc_mnist(images, labels, seed=4)
        assert canvases.shape == (SUBSET, 60, 60) and canvases.dtype == np.uint8
        np.testing.assert_array_equal(out_labels, labels)
        pos = truth["position"]
        assert pos.min() >= 0 and pos.max() <= 32 and pos.max() >= 31 and pos.min() <= 1
        assert truth["clutter_position"].shape == (SUBSET, 6, 2)
        assert truth["clutter_position"].min() >= 0 and truth["clutter_position"].max() <= 54

    def test_digit_is_where_truth_says_and_clutter_is_six_6x6_pieces(self, digits):
        images, labels = digits
        canvases, _, truth = data_tools.make_tc_mnist(images, labels, seed=4)
        for i in range(20):
            x, y = truth["position"][i]
            window = canvases[i, y : y + 28, x : x + 28].astype(int)
            # The digit is there, clutter only adds to it.
            assert (window >= images[i]).all()
            # Outside the digit and the 6 pieces of 6x6 the canvas is empty.
            covered = np.zeros((60, 60), bool)
            covered[y : y + 28, x : x + 28] = True
            for px, py in truth["clutter_position"][i]:
                covered[py : py + 6, px : px + 6] = True
            assert canvases[i][~covered].max() == 0
            assert covered.sum() <= 28 * 28 + 6 * 36

    def test_seed_determinism(self, digits):
        a = data_tools.make_tc_mnist(*digits, seed=5)[0]
        assert a.tobytes() == data_tools.make_tc_mnist(*digits, seed=5)[0].tobytes()
        assert a.tobytes() != data_tools.make_tc_mnist(*digits, seed=7)[0].tobytes()


class TestBadInput:
    def test_wrong_shape(self):
        with pytest.raises(ValueError, match=r"Received: shape=\(3, 32, 32\)"):
            data_tools.make_rts_mnist(np.zeros((3, 32, 32), np.uint8), [0, 1, 2], seed=0)

    def test_label_count(self):
        with pytest.raises(ValueError, match=r"Received: shape=\(2,\)"):
            data_tools.make_tc_mnist(np.zeros((3, 28, 28), np.uint8), [0, 1], seed=0)

    def test_out_of_range_labels(self):
        with pytest.raises(ValueError, match="Received: min=0, max=10"):
            data_tools.make_rts_mnist(np.zeros((2, 28, 28), np.uint8), [0, 10], seed=0)


class TestOffline:
    def test_missing_data_fails_fast_and_names_the_file(self, tmp_path, monkeypatch):
        monkeypatch.setenv("KERAS_ACE_DATA", str(tmp_path / "empty"))
        monkeypatch.setenv("KERAS_ACE_CACHE", str(tmp_path / "cache"))
        start = time.perf_counter()
        with pytest.raises(data_tools.DataNotFoundError, match="mnist.npz") as info:
            data_tools.load_mnist()
        assert time.perf_counter() - start < 5
        assert str(tmp_path / "cache") in str(info.value)
        with pytest.raises(data_tools.DataNotFoundError, match="cifar10-jpeg.zip"):
            data_tools.load_cifar10()

    def test_unreachable_network_is_detected_in_seconds(self, tmp_path, monkeypatch):
        monkeypatch.setenv("KERAS_ACE_OFFLINE", "0")
        monkeypatch.setenv("KERAS_ACE_DATA", str(tmp_path))
        monkeypatch.setenv("KERAS_ACE_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(sources, "network_available", lambda *a, **k: False)
        with pytest.raises(data_tools.DataNotFoundError, match="network is unreachable"):
            data_tools.load_mnist()

    def test_network_probe_times_out(self):
        import socket

        # A server that accepts the connection and never answers: the worst case.
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        start = time.perf_counter()
        try:
            assert sources.network_available(f"http://127.0.0.1:{server.getsockname()[1]}/") is False
        finally:
            server.close()
        assert time.perf_counter() - start < sources.NETWORK_TIMEOUT_S + 1.5


class TestCache:
    def test_atomic_write_leaves_no_file_when_interrupted(self, tmp_path):
        class Boom:
            def __array__(self, *args, **kwargs):
                raise KeyboardInterrupt

        target = tmp_path / "x.npz"
        with pytest.raises(KeyboardInterrupt):
            files.atomic_save_npz(str(target), a=np.zeros(3), b=Boom())
        assert os.listdir(tmp_path) == []

    @requires_mnist
    def test_distorted_set_is_cached_by_seed(self, monkeypatch, tmp_path):
        monkeypatch.setenv("KERAS_ACE_CACHE", str(tmp_path))
        calls = []
        original = distortions.make_tc_mnist

        def counting(*args, **kwargs):
            calls.append(1)
            return original(*args, **kwargs)

        monkeypatch.setitem(data_tools.datasets.DISTORTIONS, "tc_mnist", counting)
        a, _ = data_tools.load_dataset("tc_mnist", "test", seed=9)
        b, _ = data_tools.load_dataset("tc_mnist", "test", seed=9)
        assert len(calls) == 1 and a.tobytes() == b.tobytes()
        assert os.path.basename(data_tools.datasets.distorted_cache_path("tc_mnist", "test", 9)) in os.listdir(tmp_path)


@requires_mnist
def test_command_line_preview(tmp_path):
    out = tmp_path / "preview.png"
    subprocess.run([sys.executable, "-m", "data_tools", "preview", "mnist", "--out", str(out), "--count", "10"], check=True)
    import matplotlib.image

    assert matplotlib.image.imread(out).shape[1] >= 10 * 28  # ten digits per row


def test_moments_of_a_known_bar():
    from data_tools import moments

    bar = np.zeros((1, 21, 21))
    for i in range(-6, 7):  # a bar through the centre at 45 degrees counter-clockwise on screen
        bar[0, 10 - i, 10 + i] = 1
    np.testing.assert_allclose(moments.centre_of_mass(bar), [[10, 10]])
    np.testing.assert_allclose(moments.orientation(bar), [45.0], atol=1e-6)
    np.testing.assert_allclose(moments.spread(bar[..., None]), moments.spread(bar))


# ------------------------------------------------------------------ damaged files


@pytest.fixture
def small_mnist(tmp_path, monkeypatch):
    """A folder holding a small MNIST-like `mnist.npz` (Keras' keys), and an empty cache."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data"
    folder.mkdir()
    files.atomic_save_npz(str(folder / "mnist.npz"), x_train=rng.integers(0, 256, (40, 28, 28), np.uint8),
                          y_train=rng.integers(0, 10, 40), x_test=rng.integers(0, 256, (20, 28, 28), np.uint8),
                          y_test=rng.integers(0, 10, 20))
    monkeypatch.setenv("KERAS_ACE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KERAS_ACE_DATA", raising=False)
    return folder


def small_cifar_zip(path, classes=("airplane", "horse")):
    from PIL import Image

    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "test"):
            for i, name in enumerate(classes):
                jpeg = io.BytesIO()
                Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(jpeg, format="JPEG")
                archive.writestr(f"{split}/{name}/{i}.jpg", jpeg.getvalue())


class TestDamagedFiles:
    def test_mnist_cut_short_is_named(self, small_mnist):
        assert data_tools.load_dataset("mnist", "test", str(small_mnist))[0].shape == (20, 28, 28, 1)
        cut_short(small_mnist / "mnist.npz")
        with pytest.raises(files.DamagedFileError, match=r"mnist\.npz is damaged .*Delete it"):
            data_tools.load_dataset("mnist", "test", str(small_mnist))

    def test_mnist_of_another_kind_is_named(self, small_mnist):
        files.atomic_save_npz(str(small_mnist / "mnist.npz"), images=np.zeros(3))
        with pytest.raises(files.DamagedFileError, match=r"mnist\.npz .*no x_train, y_train, x_test, y_test"):
            data_tools.load_dataset("mnist", "train", str(small_mnist))
        (small_mnist / "mnist.npz").write_text("not a zip")
        with pytest.raises(files.DamagedFileError, match=r"mnist\.npz is damaged"):
            data_tools.load_dataset("mnist", "train", str(small_mnist))

    def test_cifar10_zip_cut_short_or_foreign_is_named(self, small_mnist):
        folder = small_mnist
        small_cifar_zip(folder / "cifar10-jpeg.zip")
        x, y = data_tools.load_dataset("cifar10", "train", str(folder))
        assert x.shape == (2, 32, 32, 3) and sorted(y) == [0, 7]
        cut_short(folder / "cifar10-jpeg.zip", keep=0.6)
        with pytest.raises(files.DamagedFileError, match=r"cifar10-jpeg\.zip is damaged or not a zip of JPEG images"):
            data_tools.load_dataset("cifar10", "train", str(folder))
        with zipfile.ZipFile(folder / "cifar10-jpeg.zip", "w") as archive:
            archive.writestr("readme.txt", "something else")
        with pytest.raises(files.DamagedFileError, match=r"cifar10-jpeg\.zip holds no train/ and test/ images"):
            data_tools.load_dataset("cifar10", "train", str(folder))

    @pytest.mark.parametrize("name", ["rts_mnist", "tc_mnist"])
    def test_damaged_cache_is_rebuilt_with_one_line(self, small_mnist, name, capfd):
        first, _, truth = data_tools.load_dataset(name, "test", str(small_mnist), return_truth=True)
        cache = data_tools.datasets.distorted_cache_path(name, "test", 2)
        cut_short(cache, keep=0.5)
        capfd.readouterr()
        again, _, truth_again = data_tools.load_dataset(name, "test", str(small_mnist), return_truth=True)
        lines = capfd.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "was damaged (not a complete zip archive); removing and rebuilding it" in lines[0] and cache in lines[0]
        assert again.tobytes() == first.tobytes() and truth_again.keys() == truth.keys()
        files.read_npz(cache)  # whole again

    def test_damaged_decoded_zip_cache_is_rebuilt(self, small_mnist, capfd):
        small_cifar_zip(small_mnist / "cifar10-jpeg.zip")
        first, _ = data_tools.load_dataset("cifar10", "test", str(small_mnist))
        (decoded,) = [p for p in os.listdir(sources.cache_dir()) if p.startswith("cifar10-from-zip")]
        cut_short(os.path.join(sources.cache_dir(), decoded))
        again, _ = data_tools.load_dataset("cifar10", "test", str(small_mnist))
        assert again.tobytes() == first.tobytes() and "removing and rebuilding" in capfd.readouterr().err

    def test_a_writer_killed_while_writing_a_cache_leaves_none(self, small_mnist):
        """A process SIGKILLed in the middle of writing the TC MNIST cache: no file at the cache's name."""
        script = (
            "import os, signal, numpy as np, data_tools\n"
            "def dying(f, **arrays):\n"
            "    f.write(b'PK' + bytes(1000)); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            "np.savez = dying\n"
            f"data_tools.load_dataset('tc_mnist', 'test', {str(small_mnist)!r})\n"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        result = subprocess.run([sys.executable, "-c", script], cwd=root, env=os.environ, capture_output=True)
        assert result.returncode == -signal.SIGKILL
        cache = data_tools.datasets.distorted_cache_path("tc_mnist", "test", 2)
        assert not os.path.exists(cache)
        (left,) = [os.path.join(sources.cache_dir(), p) for p in os.listdir(sources.cache_dir()) if p.endswith(".partial.npz")]
        old = time.time() - files.STALE_PARTIAL_S - 1
        os.utime(left, (old, old))
        x, _ = data_tools.load_dataset("tc_mnist", "test", str(small_mnist))  # builds it afresh
        assert x.shape[0] == 20 and os.listdir(sources.cache_dir()) == [os.path.basename(cache)]

    def test_json_cut_short_is_named(self, tmp_path):
        path = tmp_path / "metrics.json"
        files.write_json({"a": [1, 2, 3]}, str(path))
        assert files.read_json(str(path)) == {"a": [1, 2, 3]}
        cut_short(path, keep=0.5)
        with pytest.raises(files.DamagedFileError, match=r"metrics\.json is damaged or not a JSON file"):
            files.read_json(str(path))

    def test_an_interrupted_write_keeps_the_old_file(self, tmp_path):
        path = tmp_path / "metrics.json"
        files.write_json({"old": 1}, str(path))

        def interrupted(value):
            raise KeyboardInterrupt  # as if killed halfway through the new file

        with pytest.raises(KeyboardInterrupt):
            files.write_json({"new": [1, 2, object()]}, str(path), default=interrupted)
        assert files.read_json(str(path)) == {"old": 1} and os.listdir(tmp_path) == ["metrics.json"]
