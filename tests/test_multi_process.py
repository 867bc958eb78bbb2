"""Training over several processes: two processes on this machine (localhost, one CPU device each)."""

import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from keras_ace import distributed
from tests.conftest import requires_mnist

WORKER = """
import json, os, sys, time
import numpy as np
import keras
import keras_ace

count, index, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
if count > 1:
    keras_ace.distributed.initialize(f"localhost:{port}", count, index, heartbeat_timeout_s=10)
rng = np.random.default_rng(0)
x = rng.random((72, 16, 16, 1)).astype("float32")  # two whole global batches of 32 and a last one of 8
y = rng.integers(0, 10, 72)
tiny = dict(encoder_units=(32, 32), decoder_units=32, classifier_filters=(4, 4, 4), classifier_units=16,
            ssn_filters=(4, 4), ssn_units=8, input_dropout=0.0, hidden_dropout=0.0, image_shape=(16, 16, 1), seed=0)
keras.utils.set_random_seed(0)
model = keras_ace.build_ace("mnist", symmetry="spatial", distribution="data_parallel" if count > 1 else None, **tiny)


class DieAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if os.environ.get("KERAS_ACE_TEST_DIE") == str(index):
            os._exit(3)


start = time.perf_counter()
history = model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0, callbacks=[DieAfterFirstEpoch()],
                    validation_data=(x[:32], y[:32]))
seconds = time.perf_counter() - start
np.savez(out, *[keras.ops.convert_to_numpy(w) for w in model.weights])
print(json.dumps({"loss": history.history["loss"], "val_loss": history.history["val_loss"], "seconds": seconds,
                  "processes": keras_ace.distributed.process_count()}))
"""

needs_jax = pytest.mark.skipif(keras.backend.backend() != "jax", reason="training over several processes is JAX's")


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_worker(tmp_path, count, index, port, env=None):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return subprocess.Popen(
        [sys.executable, str(script), str(count), str(index), str(port), str(tmp_path / f"weights_{count}_{index}.npz")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KERAS_BACKEND": "jax", **(env or {})},
    )


def result(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_process_rows_rebuild_the_global_batches():
    """Each process's share of every global batch, put back in process order, is that batch."""
    for rows, batch, count in ((72, 32, 2), (250, 250, 2), (1000, 250, 5), (70, 32, 2)):
        shares = [distributed.process_rows(rows, batch, count, index) for index in range(count)]
        assert {share for _, share in shares} == {batch // count}
        per_step = [[r[i : i + share] for i in range(0, len(r), share)] for r, share in shares]  # fit's local batches
        rebuilt = np.concatenate([np.concatenate(step) for step in zip(*per_step)])
        whole = rows // batch * batch
        last = rows - whole
        expected = rows if last % count == 0 else whole
        np.testing.assert_array_equal(rebuilt, np.arange(expected))
    with pytest.raises(ValueError, match="must divide by the number of processes"):
        distributed.process_rows(100, 25, 2, 0)


def test_other_backends_refuse_with_one_clear_line():
    if keras.backend.backend() == "jax":
        pytest.skip("JAX trains over several processes")
    match = "keras-team/keras#20585" if keras.backend.backend() == "tensorflow" else "needs the JAX backend"
    with pytest.raises(ValueError, match=match):
        distributed.initialize("localhost:1", 2, 0)
    assert distributed.process_count() == 1 and distributed.is_chief()


@pytest.mark.slow
@pytest.mark.every_backend
@needs_jax
def test_two_processes_train_like_one(tmp_path):
    """The same global batches: two processes end with the same weights, equal to one process's."""
    port = free_port()
    pair = [start_worker(tmp_path, 2, index, port) for index in range(2)]
    alone = start_worker(tmp_path, 1, 0, 0)
    both = [result(process) for process in pair]
    one = result(alone)
    assert [r["processes"] for r in both] == [2, 2] and one["processes"] == 1
    for r in both:
        np.testing.assert_allclose(r["loss"], one["loss"], rtol=1e-5)
        np.testing.assert_allclose(r["val_loss"], one["val_loss"], rtol=1e-5)
    first, second, alone = (np.load(tmp_path / f"weights_{c}_{i}.npz") for c, i in ((2, 0), (2, 1), (1, 0)))
    assert len(alone.files) > 20
    for name in alone.files:
        np.testing.assert_array_equal(first[name], second[name])
        np.testing.assert_allclose(first[name], alone[name], atol=1e-5)
    assert any(np.abs(alone[name]).max() > 0 for name in alone.files)


@pytest.mark.slow
@pytest.mark.every_backend
@needs_jax
def test_a_process_that_dies_stops_the_other(tmp_path):
    """Process 1 dies after its first epoch; process 0 stops with an error naming itself, in bounded time."""
    port = free_port()
    start = time.monotonic()
    survivor = start_worker(tmp_path, 2, 0, port, {"KERAS_ACE_TEST_DIE": "1"})
    dying = start_worker(tmp_path, 2, 1, port, {"KERAS_ACE_TEST_DIE": "1"})
    _, err = survivor.communicate(timeout=240)
    dying.communicate(timeout=30)
    assert dying.returncode == 3
    assert survivor.returncode != 0
    assert "Training stopped in process 0 of 2" in err, err[-3000:]
    assert time.monotonic() - start < 180


@pytest.mark.slow
@pytest.mark.every_backend
@needs_jax
@requires_mnist
def test_figure_script_trains_over_two_processes(tmp_path):
    """`fig2.py --distribute --tfds-dir` in two processes, each reading its half of a TFDS copy of MNIST.

    Process 0 writes the figure; process 1 only its own folder.
    """
    pytest.importorskip("tensorflow_datasets")
    from data_tools import tfds_data
    from tests.test_reproduce import ROOT
    from tests.test_reproduce import TINY

    tfds_dir = str(tmp_path / "tfds")
    tfds_data.prepare("mnist", tfds_dir, size=500)
    out = tmp_path / "fig2"
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{free_port()}",
           "KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}
    command = [sys.executable, os.path.join(ROOT, "reproduce", "fig2.py"), *TINY, "--panels", "fig2_mnist",
               "--estimate-samples", "2", "--estimate-images", "10", "--output-dir", str(out), "--distribute",
               "--train-size", "500", "--tfds-dir", tfds_dir]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**env, "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}) for index in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    assert "Wrote" in outputs[0][0] and "Wrote" not in outputs[1][0]
    assert "TFDS shard (2 global batches of 250 an epoch)" in outputs[0][0]
    assert {"fig2.png", "metrics.json", "fig2_mnist.keras"} <= {f.name for f in out.iterdir()}
    assert not (out / "process_1" / "fig2.png").exists() and (out / "process_1" / "fig2_mnist.keras").exists()
