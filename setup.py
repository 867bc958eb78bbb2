"""Packaging lives in setup.cfg; this file only lets `pip install -e .` work everywhere."""

import setuptools

setuptools.setup()
