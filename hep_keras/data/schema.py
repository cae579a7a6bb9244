"""Schema check for jet-image HDF5 files.

The schema (CMS quark/gluon open data and the files written by :mod:`hep_keras.simulation`):

=========  ==================  ==========================================================
key        shape               meaning
=========  ==================  ==========================================================
``X_jets`` ``(N, H, W, 3)``    energy per pixel in GeV, channels (Tracks, ECAL, HCAL);
                               the real file has H = W = 125 (ECAL-crystal pixels)
``m0``     ``(N,)``            jet mass in GeV
``pt``     ``(N,)``            jet transverse momentum in GeV
``y``      ``(N,)``            label, 0 = quark, 1 = gluon
=========  ==================  ==========================================================

Any numeric dtype is accepted (float32 and float64 in practice), chunked or contiguous, any HDF5 compression
filter, any N >= 1 and extra top-level keys (e.g. the simulator's ``jets/`` group), which are ignored.

:func:`inspect_jet_file` validates a file and returns a :class:`JetFileInfo`; every problem is a
:class:`~hep_keras.errors.DataError` whose message is one line naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hep_keras.errors import DataError
from hep_keras.physics import CHANNELS

IMAGE_KEY = "X_jets"
SCALAR_KEYS = ("m0", "pt", "y")
REQUIRED_KEYS = (IMAGE_KEY, *SCALAR_KEYS)
MIN_IMAGE_SIZE = 8
CONTIGUOUS_BLOCK_EVENTS = 64
"""Events per read block for files (or datasets) stored contiguously, i.e. without HDF5 chunks."""

_FINGERPRINT_BYTES = 1 << 20


@dataclass(frozen=True)
class JetFileInfo:
    """What :func:`inspect_jet_file` learnt about a valid jet-image file.

    Attributes:
        path: the file.
        n_events: number of events N (length of every per-event dataset).
        image_shape: ``(H, W, C)`` of ``X_jets`` (C = 3: Tracks, ECAL, HCAL).
        dtype: numpy dtype name of ``X_jets`` as stored (e.g. ``"float32"``).
        chunks: HDF5 chunk shape of ``X_jets``, or ``None`` when stored contiguously.
        compression: HDF5 compression filter of ``X_jets`` (``"gzip"``, ``"lzf"``, ...) or ``None``.
        keys: every top-level key of the file, sorted (datasets and groups).
        fingerprint: ``sha256`` hex digest of the file size, its modification time (ns) and its first and last
            MiB. Cheap (reads at most 2 MiB), stable while the file is unchanged on disk, and different after a
            rewrite; a copy of the file has a different mtime and hence a different fingerprint.
        label_counts: ``(n_quark, n_gluon)`` when ``y`` was checked, else ``None``.
    """

    path: Path
    n_events: int
    image_shape: tuple[int, int, int]
    dtype: str
    chunks: tuple[int, ...] | None
    compression: str | None
    keys: tuple[str, ...]
    fingerprint: str
    label_counts: tuple[int, int] | None = None

    @property
    def block_events(self) -> int:
        """Events per chunk-aligned read block of ``X_jets`` (one chunk row, or 64 if contiguous)."""
        return block_events(self.chunks)

    @property
    def decoded_bytes(self) -> int:
        """Size in bytes of ``X_jets`` once decompressed, as stored (not converted to float32)."""
        h, w, c = self.image_shape
        return self.n_events * h * w * c * np.dtype(self.dtype).itemsize

    def summary(self) -> str:
        """A few human-readable lines describing the file."""
        gib = self.decoded_bytes / 2**30
        labels = ""
        if self.label_counts is not None:
            labels = f"\nlabels:       {self.label_counts[0]} quark (y=0), {self.label_counts[1]} gluon (y=1)"
        return (
            f"file:         {self.path}\n"
            f"events:       {self.n_events}\n"
            f"X_jets:       {self.image_shape} {self.dtype} per event, channels {', '.join(CHANNELS)} (GeV)\n"
            f"storage:      chunks={self.chunks} compression={self.compression}, "
            f"{gib:.2f} GiB decoded, {os.path.getsize(self.path) / 2**20:.1f} MiB on disk\n"
            f"keys:         {', '.join(self.keys)}"
            f"{labels}\n"
            f"fingerprint:  {self.fingerprint}"
        )


def block_events(chunks: tuple[int, ...] | None) -> int:
    """Events per chunk-aligned block: whole chunk rows along axis 0, at least ~64 events per block."""
    if not chunks:
        return CONTIGUOUS_BLOCK_EVENTS
    rows = chunks[0]
    return rows * max(1, CONTIGUOUS_BLOCK_EVENTS // rows)


def fingerprint(path: str | os.PathLike) -> str:
    """sha256 of size, mtime (ns) and the first and last MiB of the file (see :class:`JetFileInfo`)."""
    stat = os.stat(path)
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(_FINGERPRINT_BYTES))
        if stat.st_size > _FINGERPRINT_BYTES:
            handle.seek(max(_FINGERPRINT_BYTES, stat.st_size - _FINGERPRINT_BYTES))
            digest.update(handle.read(_FINGERPRINT_BYTES))
    return digest.hexdigest()


def open_jet_file(path: str | os.PathLike, cache_bytes: int | None = None) -> h5py.File:
    """Open ``path`` read-only, turning "missing / not HDF5 / truncated" into a one-line :class:`DataError`.

    ``cache_bytes`` sets the HDF5 chunk cache (``rdcc_nbytes``) of every dataset read through this handle.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an HDF5 file")
    kwargs = {} if cache_bytes is None else {"rdcc_nbytes": int(cache_bytes), "rdcc_nslots": 10007}
    try:
        return h5py.File(path, "r", **kwargs)
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file (truncated or another format): {_one_line(err)}") from err


def inspect_jet_file(
    path: str | os.PathLike,
    require: tuple[str, ...] = REQUIRED_KEYS,
    check_values: bool = False,
) -> JetFileInfo:
    """Validate a jet-image file and describe it.

    Args:
        path: HDF5 file in the schema above.
        require: keys that must be present. ``X_jets`` (if required) must be ``(N, H, W, 3)`` with
            H, W >= 8; every other required key must be a per-event dataset whose first axis is N
            (``m0``, ``pt``, ``y`` must be exactly ``(N,)``). ``y`` must hold only 0 and 1.
        check_values: also scan all of ``X_jets`` for NaN/Inf, chunk by chunk (slow on big files: it
            decompresses everything). ``m0``, ``pt`` and ``y`` are always checked in full. Without it, the
            reader (:func:`hep_keras.data.jet_images`) checks each block as it reads it.

    Returns:
        :class:`JetFileInfo`.

    Raises:
        DataError: one line naming the file and the first problem found.
    """
    path = Path(path)
    with open_jet_file(path) as handle:
        keys = tuple(sorted(handle.keys()))
        datasets = {key: _dataset(handle, key, path) for key in require}
        n_events = _check_shapes(path, datasets)
        for key, dset in datasets.items():
            _check_readable(path, key, dset)
        label_counts = None
        for key in SCALAR_KEYS:
            if key in datasets:
                values = _check_finite_vector(path, key, datasets[key])
                if key == "y":
                    label_counts = _check_labels(path, values)
        image = datasets.get(IMAGE_KEY)
        if image is not None and check_values:
            _scan_images(path, image)
        image = image if image is not None else handle.get(IMAGE_KEY)
        image_shape = tuple(int(s) for s in image.shape[1:]) if isinstance(image, h5py.Dataset) else ()
        return JetFileInfo(
            path=path,
            n_events=n_events,
            image_shape=image_shape,
            dtype=str(image.dtype) if isinstance(image, h5py.Dataset) else "",
            chunks=image.chunks if isinstance(image, h5py.Dataset) else None,
            compression=image.compression if isinstance(image, h5py.Dataset) else None,
            keys=keys,
            fingerprint=fingerprint(path),
            label_counts=label_counts,
        )


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _dataset(handle: h5py.File, key: str, path: Path) -> h5py.Dataset:
    if key not in handle:
        has = ", ".join(sorted(handle.keys())) or "nothing"
        raise DataError(f"{path}: missing dataset '{key}' (the file has: {has})")
    obj = handle[key]
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: '{key}' is a group, expected a dataset")
    if obj.dtype.kind not in "biuf":
        raise DataError(f"{path}: '{key}' has non-numeric dtype {obj.dtype}")
    return obj


def _check_shapes(path: Path, datasets: dict[str, h5py.Dataset]) -> int:
    """Check ranks and that all datasets have the same number of events; returns N."""
    for key, dset in datasets.items():
        shape = tuple(dset.shape)
        if key == IMAGE_KEY:
            ok = len(shape) == 4 and shape[3] == 3 and min(shape[1:3]) >= MIN_IMAGE_SIZE
            if not ok:
                raise DataError(
                    f"{path}: '{key}' has shape {shape}, expected (N, H, W, 3) with H, W >= {MIN_IMAGE_SIZE}"
                )
        elif key in SCALAR_KEYS and len(shape) != 1:
            raise DataError(f"{path}: '{key}' has shape {shape}, expected (N,)")
        elif len(shape) < 1:
            raise DataError(f"{path}: '{key}' is a scalar, expected one value per event")
    lengths = {key: int(dset.shape[0]) for key, dset in datasets.items()}
    if len(set(lengths.values())) > 1:
        found = ", ".join(f"{key} has {n}" for key, n in lengths.items())
        raise DataError(f"{path}: length mismatch between datasets ({found} events)")
    n_events = next(iter(lengths.values()), 0)
    if datasets and n_events == 0:
        raise DataError(f"{path}: contains no events (N = 0)")
    return n_events


def _storage_end(dset: h5py.Dataset) -> int:
    """Byte offset just past the last stored byte of ``dset`` (0 if nothing is allocated)."""
    dsid = dset.id
    if dset.chunks is None:
        offset = dsid.get_offset()
        return 0 if offset is None else offset + dsid.get_storage_size()
    n_chunks = dsid.get_num_chunks()
    if n_chunks == 0:
        return 0
    if n_chunks > 100_000:  # only the last one, to stay cheap
        infos = [dsid.get_chunk_info(n_chunks - 1)]
    else:
        infos = (dsid.get_chunk_info(i) for i in range(n_chunks))
    return max(info.byte_offset + info.size for info in infos)


def _check_readable(path: Path, key: str, dset: h5py.Dataset) -> None:
    """Detect truncation: storage must end inside the file and the last event must decode."""
    size = os.path.getsize(path)
    try:
        end = _storage_end(dset)
    except (OSError, RuntimeError, AttributeError):
        end = 0
    if end > size:
        raise DataError(f"{path}: truncated: '{key}' needs {end} bytes but the file has {size}")
    try:
        dset[dset.shape[0] - 1]
    except OSError as err:
        raise DataError(f"{path}: cannot read the last event of '{key}' (truncated?): {_one_line(err)}") from err


def _check_finite_vector(path: Path, key: str, dset: h5py.Dataset) -> np.ndarray:
    values = dset[()]
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise DataError(f"{path}: '{key}' has {bad.size} NaN/Inf values (first at event {bad[0]})")
    return values


def _check_labels(path: Path, y: np.ndarray) -> tuple[int, int]:
    bad = np.unique(y[(y != 0) & (y != 1)])
    if bad.size:
        shown = ", ".join(f"{v:g}" for v in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise DataError(f"{path}: 'y' must be 0 (quark) or 1 (gluon), found {shown}")
    n_gluon = int(np.count_nonzero(y))
    return (int(y.size) - n_gluon, n_gluon)


def _scan_images(path: Path, dset: h5py.Dataset) -> None:
    """Scan ``X_jets`` block by block (one chunk row at a time) for NaN/Inf."""
    step = block_events(dset.chunks)
    n_events = dset.shape[0]
    for start in range(0, n_events, step):
        block = dset[start : start + step]
        check_finite_block(path, IMAGE_KEY, block, start)


def check_finite_block(path: str | os.PathLike, key: str, block: np.ndarray, events: int | np.ndarray) -> None:
    """Raise :class:`DataError` if ``block`` holds NaN or Inf.

    ``events`` gives the file event index of each row of ``block``: an array, or the first index of a
    contiguous range. Cheap on clean data (one reduction over the block); bad events are located only on
    failure, and the message names the file and the event range.
    """
    if block.dtype.kind != "f" or block.size == 0:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        total = block.sum()
    if np.isfinite(total):
        return
    per_event = np.isfinite(block.reshape(block.shape[0], -1)).all(axis=1)
    bad = np.flatnonzero(~per_event)
    if bad.size == 0:  # the sum overflowed but every value is finite
        return
    if np.isscalar(events):
        events = int(events) + np.arange(block.shape[0])
    first, last = int(events[bad[0]]), int(events[bad[-1]])
    where = ""
    if block.ndim == 4 and block.shape[-1] == len(CHANNELS):  # images: name the channel(s) of the first event
        channels = np.flatnonzero(~np.isfinite(block[bad[0]]).all(axis=(0, 1)))
        where = f", channel {'/'.join(CHANNELS[c] for c in channels)} of event {first}"
    raise DataError(
        f"{path}: '{key}' has NaN/Inf in {bad.size} event(s) between events {first} and {last}{where} "
        f"(reading events {int(events[0])}-{int(events[-1])})"
    )
