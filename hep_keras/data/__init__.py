"""Jet-image data: schema check, streaming ``tf.data`` pipeline, splits and file preparation.

Quick reference (shapes per event; images in GeV per pixel, channels Tracks, ECAL, HCAL)::

    from hep_keras.data import inspect_jet_file, jet_images, split_indices, read_events, SPLITS
    info = inspect_jet_file("qg.h5")                 # JetFileInfo, DataError if the file is bad
    ds = jet_images("qg.h5", split="train", batch_size=64)             # (batch, H, W, 3) float32
    ds = jet_images("qg.h5", split="val", fields=("X_jets", "y"))      # (images, labels)
    idx = split_indices(info.n_events, "test")      # sorted int64 event indices
    arrays = read_events("qg.h5", idx[:100])        # {"X_jets": ..., "y": ..., "m0": ..., "pt": ...}

TensorFlow is imported only when :func:`jet_images` or :func:`data_errors` is called.
"""

from hep_keras.data.images import SPLITS, data_errors, jet_images, read_events, split_indices
from hep_keras.data.schema import REQUIRED_KEYS, JetFileInfo, inspect_jet_file
from hep_keras.physics import CHANNELS

__all__ = [
    "CHANNELS",
    "REQUIRED_KEYS",
    "SPLITS",
    "JetFileInfo",
    "data_errors",
    "inspect_jet_file",
    "jet_images",
    "read_events",
    "split_indices",
]
