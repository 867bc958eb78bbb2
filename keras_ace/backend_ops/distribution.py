"""Training on several devices through Keras' distribution APIs: the scope a model is built in, and the loss scaled for replicas."""

import contextlib

import keras

# Ways to train on the devices of this machine: one device, or a data-parallel copy on each.
DEVICE_DISTRIBUTIONS = (None, "data_parallel")


def scale_loss_for_replicas(loss):
    """Divides a replica's loss by the number of replicas under `tf.distribute`.

    Keras does this in its own `compute_loss`; a model that overrides it must too, or
    `MirroredStrategy` sums the replicas' gradients into N times the mean.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            loss = loss / replicas
    return loss


@contextlib.contextmanager
def distribution_scope(distribution=None):
    """Builds (and, on JAX, trains) models inside on every local device, data-parallel.

    - JAX: `keras.distribution.DataParallel` over `keras.distribution.list_devices()`,
      set as the global distribution (it stays set, so that `fit` after the scope
      shards the batches too).
    - TensorFlow: `tf.distribute.MirroredStrategy`; a model built in its scope keeps
      training on it.
    - PyTorch: Keras has no multi-device training for PyTorch; a `ValueError` says so.

    Args:
        distribution: `None` (one device) or `"data_parallel"`.
    """
    if distribution not in DEVICE_DISTRIBUTIONS:
        raise ValueError(f"Unknown distribution. Expected one of {DEVICE_DISTRIBUTIONS}. Received: distribution={distribution!r}")
    if distribution is None:
        yield
        return
    backend = keras.backend.backend()
    if backend == "jax":
        # Over several processes `ACE.fit` shards NumPy data itself (`distributed.process_rows`),
        # and a data set must be each process's shard: Keras' auto-sharding only takes tf.data.
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=keras.distribution.list_devices(), auto_shard_dataset=False))
        yield
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.distribute.MirroredStrategy().scope():
            yield
    else:
        raise ValueError(
            f"distribution='data_parallel' needs the JAX or TensorFlow backend: Keras has no multi-device "
            f"training for {backend}. Received: KERAS_BACKEND={backend}"
        )
