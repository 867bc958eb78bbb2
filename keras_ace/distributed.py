"""Training over several processes (several hosts): data-parallel over every process's devices.

Every process runs the same script. It calls `initialize` first, builds its ACE with
`distribution="data_parallel"` (`keras.distribution.DataParallel` over the devices of
all processes) and calls `fit` with the whole training set, as one process would: `fit`
feeds each process its rows of every global batch (`process_rows`), so that the
processes together train on the batches one process would train on. Only JAX is
supported (`jax.distributed`, joined as `keras.distribution.initialize` joins it, with a
heartbeat timeout); TensorFlow's `MultiWorkerMirroredStrategy` does not train a Keras 3
model (keras-team/keras#20585). How to start it on several hosts: docs/multi_host.md.

    keras_ace.distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=0)  # 1 on the other host
    model = keras_ace.build_ace("mnist", distribution="data_parallel")
    model.fit(x_train, y_train, epochs=50)       # global batch 250: 125 rows from each process
    if keras_ace.distributed.is_chief():
        model.save("ace.keras")
    keras_ace.distributed.wait_for_all()
"""

import contextlib
import os
import warnings

import keras
import numpy as np

# Seconds without a heartbeat after which the surviving processes are stopped (JAX's own
# default is 100).
HEARTBEAT_TIMEOUT_S = 30
# Keras' own environment variables for the arguments of `keras.distribution.initialize`.
ENVIRONMENT = {
    "coordinator_address": "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "num_processes": "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "process_id": "KERAS_DISTRIBUTION_PROCESS_ID",
}

MULTI_WORKER_REFUSAL = (
    "Training over several processes needs the JAX backend: Keras 3 does not train under "
    "TensorFlow's MultiWorkerMirroredStrategy (keras-team/keras#20585). Set KERAS_BACKEND=jax."
)


def initialize(coordinator_address=None, num_processes=None, process_id=None, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S):
    """Joins this process to a run over several processes; call it first, in every process.

    Args:
        coordinator_address: `"host:port"` of process 0, which every process can reach
            (default: `KERAS_DISTRIBUTION_JOB_ADDRESSES`).
        num_processes: how many processes take part (default:
            `KERAS_DISTRIBUTION_NUM_PROCESSES`).
        process_id: this process's number, 0 to `num_processes - 1`; process 0 writes
            the files (default: `KERAS_DISTRIBUTION_PROCESS_ID`).
        heartbeat_timeout_s: a process not heard from for this long stops the others
            with an error, instead of leaving them waiting.
    """
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(MULTI_WORKER_REFUSAL if backend == "tensorflow" else
                         f"Training over several processes needs the JAX backend. Received: KERAS_BACKEND={backend}")
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    for name, value in given.items():
        if value is None:
            value = os.environ.get(ENVIRONMENT[name])
            if value is None:
                raise ValueError(f"{name} is needed: pass it or set {ENVIRONMENT[name]}.")
        given[name] = value
    address = str(given["coordinator_address"]).split(",")[0]
    count, index = int(given["num_processes"]), int(given["process_id"])
    if not 0 <= index < count:
        raise ValueError(f"process_id must be in [0, {count}). Received: process_id={index}")

    import jax
    # Keras' private helper (the seed all processes agree on); tests/test_multi_process.py
    # fails on a Keras that moves it.
    from keras.src.backend.jax.distribution_lib import initialize_rng

    # Collectives between the CPU devices of several processes (on GPUs, NCCL is used).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # keras.distribution.initialize calls jax.distributed.initialize without a heartbeat
    # timeout; the same call with one, then Keras' common seed for every process.
    jax.distributed.initialize(address, count, index, heartbeat_timeout_seconds=int(heartbeat_timeout_s))
    initialize_rng()


def process_count():
    """The number of processes training together (1 unless `initialize` joined several)."""
    if keras.backend.backend() != "jax":
        return 1
    import jax

    return jax.process_count()


def process_index():
    """This process's number among `process_count()`."""
    if keras.backend.backend() != "jax":
        return 0
    import jax

    return jax.process_index()


def is_chief():
    """Whether this process writes the files of a run (process 0)."""
    return process_index() == 0


def batch_share(global_batch, count=None):
    """The rows each of `count` processes (default: all) gives a global batch; it must divide evenly."""
    count = process_count() if count is None else count
    if global_batch % count:
        raise ValueError(f"The batch size must divide by the number of processes ({count}). Received: batch_size={global_batch}")
    return global_batch // count


def process_rows(num_rows, global_batch, count=None, index=None):
    """The rows this process feeds of data that every process holds whole.

    Global batch `b` is rows `b * global_batch` onwards, as in one process; process `p`
    feeds its `p`-th equal share of each, and `DataParallel` puts the shares back
    together in process order. A last, partial batch is shared the same way where it
    divides by the process count, and left out otherwise (with a warning).

    Returns:
        (rows, per_process_batch): row indices into the data, and the batch size each
        process gives `fit`.
    """
    count = process_count() if count is None else count
    index = process_index() if index is None else index
    share = batch_share(global_batch, count)
    whole = num_rows // global_batch * global_batch
    rows = np.arange(whole).reshape(-1, count, share)[:, index].reshape(-1)
    rest = num_rows - whole
    if rest and rest % count == 0:
        rows = np.concatenate([rows, np.arange(whole, num_rows).reshape(count, -1)[index]])
    elif rest:
        warnings.warn(f"The last {rest} rows do not divide among {count} processes and are left out of each epoch.")
    return rows, share


@contextlib.contextmanager
def failure_named():
    """Over several processes, an error inside says which process stopped and where to look.

    When one process dies, the others fail at their next exchange of gradients (for
    instance "Gloo AllGather failed ... Connection closed by peer") and stop; JAX then
    ends them after `heartbeat_timeout_s`.
    """
    try:
        yield
    except Exception as error:
        if process_count() < 2:
            raise
        raise RuntimeError(
            f"Training stopped in process {process_index()} of {process_count()}: {error}\n"
            f"If another process of this run died, its own log says why."
        ) from error


def wait_for_all(name="keras_ace.distributed.wait_for_all"):
    """Every process waits here until all have come (a no-op in one process)."""
    if process_count() < 2:
        return
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)
