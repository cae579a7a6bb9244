"""Rewrite a jet-image file for fast streaming: small chunks along the event axis, chosen compression.

``python -m hep_keras.data prepare IN.h5 OUT.h5 --chunk-events 64 --compression gzip`` rewrites every per-event
top-level dataset (first axis = N: ``X_jets``, ``m0``, ``pt``, ``y`` and any extra ones) with chunks of
``(chunk_events, ...)`` and the requested filter, block by block (memory: one block of a few hundred events).
Everything else (groups such as the simulator's ``jets/``, datasets of another length) is copied as is with
``H5Ocopy``; all attributes are kept. Values are copied bit-exactly (same dtype). The output is written to a
temporary file next to ``OUT`` and renamed at the end, so ``OUT`` is never half-written.

Small chunks (32-64 events) make splits cheap to read (a split touches every chunk) and keep the reader's
memory low; gzip level 1-4 decompresses as fast as level 9 and writes much faster; ``lzf`` is faster still but
h5py-only.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import h5py

from hep_keras.data.schema import IMAGE_KEY, JetFileInfo, block_events, inspect_jet_file, open_jet_file
from hep_keras.errors import ConfigError, OutputError
from hep_keras.io import atomic_file, check_output_file

COMPRESSIONS = ("gzip", "lzf", "none")
COPY_BLOCK_EVENTS = 256
"""Minimum events per copy block (rounded up to whole output chunks and at least one input chunk row)."""


def prepare(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    chunk_events: int = 64,
    compression: str = "gzip",
    gzip_level: int = 4,
    shuffle: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> JetFileInfo:
    """Rewrite ``src`` into ``dst`` with chunks ``(chunk_events, ...)`` and ``compression``; returns dst's info.

    Args:
        src: a valid jet-image file (checked with :func:`~hep_keras.data.inspect_jet_file` first).
        dst: output path; must not exist unless ``overwrite``.
        chunk_events: events per HDF5 chunk of every per-event dataset.
        compression: ``"gzip"``, ``"lzf"`` or ``"none"``.
        gzip_level: 0-9, only for gzip.
        shuffle: add the HDF5 byte-shuffle filter (helps float compression a little, costs a little speed).
        overwrite: replace an existing ``dst``.
        progress: print a progress line on stderr.

    Raises:
        DataError: ``src`` is missing or invalid. ConfigError: bad options. OutputError: ``dst`` exists
            (without ``overwrite``) or cannot be written.
    """
    src, dst = Path(src), Path(dst)
    filters = _filters(chunk_events, compression, gzip_level, shuffle)
    info = inspect_jet_file(src)
    check_output_file(dst, overwrite)
    with atomic_file(dst) as tmp:
        with open_jet_file(src, cache_bytes=_cache_bytes(src)) as source:
            try:
                target = h5py.File(tmp, "w")
            except OSError as err:
                raise OutputError(f"{dst}: cannot write in {dst.parent}: {_one_line(err)}") from err
            with target:
                _copy_attrs(source, target)
                per_event = _create_per_event(source, target, info.n_events, chunk_events, filters)
                _copy_others(source, target, per_event)
                _copy_blocks(source, target, per_event, info.n_events, _copy_block(source, chunk_events), progress)
    return inspect_jet_file(dst)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _filters(chunk_events: int, compression: str, gzip_level: int, shuffle: bool) -> dict:
    if int(chunk_events) != chunk_events or chunk_events < 1:
        raise ConfigError(f"--chunk-events must be a positive integer, got {chunk_events}")
    if compression not in COMPRESSIONS:
        raise ConfigError(f"--compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
    if compression == "gzip" and not 0 <= int(gzip_level) <= 9:
        raise ConfigError(f"--gzip-level must be in 0..9, got {gzip_level}")
    filters = {"compression": None if compression == "none" else compression, "shuffle": bool(shuffle)}
    if compression == "gzip":
        filters["compression_opts"] = int(gzip_level)
    return filters


def _cache_bytes(src: Path) -> int:
    """Chunk cache of the input: two chunk rows of X_jets (blocks need not align with input chunks)."""
    with open_jet_file(src) as handle:
        dset = handle[IMAGE_KEY]
        rows = dset.chunks[0] if dset.chunks else 1
        row_bytes = rows * dset.dtype.itemsize * math.prod(dset.shape[1:])
    return max(16 * 2**20, 2 * row_bytes + 2**20)


def _copy_block(source: h5py.File, chunk_events: int) -> int:
    """Events per copy block: whole output chunks, at least one input chunk row and COPY_BLOCK_EVENTS."""
    want = max(block_events(source[IMAGE_KEY].chunks), COPY_BLOCK_EVENTS)
    return chunk_events * math.ceil(want / chunk_events)


def _copy_attrs(source: h5py.HLObject, target: h5py.HLObject) -> None:
    """Copy every attribute with its stored HDF5 type."""
    for name in source.attrs:
        target.attrs.create(name, source.attrs[name], dtype=source.attrs.get_id(name).dtype)


def _create_per_event(source: h5py.File, target: h5py.File, n_events: int, chunk_events: int, filters: dict):
    """Create (empty) rechunked copies of the top-level datasets whose first axis is N; returns their names."""
    names = []
    for name, obj in source.items():
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 and obj.shape[0] == n_events:
            chunks = (min(chunk_events, n_events), *obj.shape[1:])
            dset = target.create_dataset(name, shape=obj.shape, dtype=obj.dtype, chunks=chunks, **filters)
            _copy_attrs(obj, dset)
            names.append(name)
    return names


def _copy_others(source: h5py.File, target: h5py.File, per_event: list[str]) -> None:
    """Copy groups and non-per-event datasets unchanged (HDF5 object copy, attributes included)."""
    for name in source:
        if name not in per_event:
            source.copy(source[name], target, name=name)


def _copy_blocks(source, target, names, n_events: int, step: int, progress: bool) -> None:
    report = _Progress(n_events) if progress else None
    for start in range(0, n_events, step):
        stop = min(start + step, n_events)
        for name in names:
            target[name][start:stop] = source[name][start:stop]
        if report:
            report(stop)
    if report:
        report.done()


class _Progress:
    """``prepare: 1024/139306 events (0.7%), 850 events/s`` on stderr; redrawn in place on a terminal."""

    def __init__(self, total: int):
        self.total = total
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last_tenth = -1

    def __call__(self, done: int) -> None:
        tenth = 10 * done // self.total
        if not self.tty and tenth == self.last_tenth:
            return
        self.last_tenth = tenth
        rate = done / max(time.monotonic() - self.start, 1e-9)
        line = f"prepare: {done}/{self.total} events ({100 * done / self.total:.1f}%), {rate:.0f} events/s"
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


__all__ = ["COMPRESSIONS", "prepare"]
