"""Shared pytest fixtures.

``make_jet_file`` writes small, valid, sparse jet-image files in the hep_keras schema (see
:mod:`hep_keras.data.schema`) so that tests never need the real 26 GB file or the shipped sample.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest


def write_jet_file(
    path: Path,
    n: int = 40,
    size: int = 16,
    dtype: str = "float32",
    chunks: tuple | bool | None = True,
    compression: str | None = "gzip",
    shuffle: bool = False,
    y: np.ndarray | None = None,
    extra: dict | None = None,
    drop: tuple[str, ...] = (),
    seed: int = 0,
    occupancy: float = 0.05,
) -> Path:
    """Write a sparse jet-image file and return its path.

    Content (so tests can check that rows stay together):

    * ``X_jets`` ``(n, size, size, 3)``: ~``occupancy`` of the pixels hold Exp(1) GeV energies; pixel
      ``[0, 0, 0]`` (Tracks, top-left corner) holds ``event index + 1`` and pixel ``[c, c, 1]`` (ECAL, centre,
      ``c = size // 2``) holds ``event index + 1000``, so any crop that keeps the centre still identifies the event.
    * ``m0 = event index + 0.5`` and ``pt = 100 + event index`` (GeV), ``y`` alternating 0, 1 unless given.

    Args:
        chunks: ``True`` = HDF5 chunks of ``(8, size, size, 3)`` events, ``None``/``False`` = contiguous, or an
            explicit chunk shape for ``X_jets`` (scalars then get ``(chunks[0],)``).
        compression: ``"gzip"``, ``"lzf"`` or ``None`` (needs chunks).
        shuffle: add the HDF5 byte-shuffle filter (needs chunks).
        y: labels to store instead of the alternating ones (any values, for bad-label tests).
        extra: more top-level entries: ``{name: array}`` datasets, or ``{name: {sub: array}}`` groups.
        drop: keys of the schema to leave out.
    """
    rng = np.random.default_rng(seed)
    images = np.where(rng.random((n, size, size, 3)) < occupancy, rng.exponential(1.0, (n, size, size, 3)), 0.0)
    events = np.arange(n)
    images[:, 0, 0, 0] = events + 1
    images[:, size // 2, size // 2, 1] = events + 1000
    data = {
        "X_jets": images.astype(dtype),
        "m0": (events + 0.5).astype(dtype),
        "pt": (100.0 + events).astype(dtype),
        "y": (events % 2).astype(dtype) if y is None else np.asarray(y),
    }
    if chunks is True:
        chunks = (min(8, max(n, 1)), size, size, 3)
    chunks = chunks or None
    with h5py.File(path, "w") as handle:
        handle.attrs["source"] = "tests/conftest.py synthetic"
        for key, values in data.items():
            if key in drop:
                continue
            dset_chunks = None if chunks is None or n == 0 else (chunks if key == "X_jets" else (chunks[0],))
            filters = {"compression": compression, "shuffle": shuffle} if dset_chunks else {}
            handle.create_dataset(key, data=values, chunks=dset_chunks, **filters)
        if "X_jets" not in drop:
            handle["X_jets"].attrs["units"] = "GeV"
        for name, value in (extra or {}).items():
            if isinstance(value, dict):
                group = handle.create_group(name)
                for sub, arr in value.items():
                    group.create_dataset(sub, data=arr)
                group.attrs["note"] = "extra group"
            else:
                handle.create_dataset(name, data=value)
    return path


@pytest.fixture
def make_jet_file(tmp_path):
    """Factory fixture: ``make_jet_file(name="x.h5", **kwargs)`` -> Path of a new file in ``tmp_path``.

    Keyword arguments are those of :func:`write_jet_file` (n=40, size=16, dtype="float32", chunks=True,
    compression="gzip", shuffle=False, y=None, extra=None, drop=(), seed=0, occupancy=0.05).
    """

    def make(name: str = "x.h5", **kwargs) -> Path:
        return write_jet_file(tmp_path / name, **kwargs)

    return make
