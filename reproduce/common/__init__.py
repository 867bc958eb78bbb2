"""What the `reproduce/` scripts share; figure-only code, kept out of the `keras_ace` library."""
