"""The one decorator that makes a public class saveable and loadable by name."""

import keras


def keras_ace_export(cls):
    """Registers `cls` as `keras_ace>ClassName`, so `.keras` files load without `custom_objects`."""
    return keras.saving.register_keras_serializable(package="keras_ace")(cls)
