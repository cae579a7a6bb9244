"""The shipped quark/gluon sample made by ``python -m hep_keras.simulate`` (provenance in README.md here)."""

from pathlib import Path

SAMPLE_PATH = Path(__file__).with_name("qg_sample.h5")
"""Path of the shipped sample ``qg_sample.h5`` (the CMS quark-gluon schema plus a ``jets/`` table)."""
