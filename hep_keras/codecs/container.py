"""The compressed jet file (format ``hep_keras.jets/2``): a small binary container around any codec's output.

Layout (little endian)::

    b"HKJETS2\\n"                 8-byte magic
    u32 n | zstd(JSON header)     format, codec, codec_version, n_jets, bound, params, model_fingerprint, ...
    u32 n | event stream          the event index, coded the same way for every codec (runs + rANS)
    u32 count, then per blob: u64 n | bytes

The header names the codec and its version, so ``decompress`` needs no option to read a file and refuses one
from another codec version or another model (by the SavedModel's fingerprint) with one error line.
Files are written to a temporary name and renamed, so a failure never leaves half a file.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from hep_keras.codecs.base import Encoded
from hep_keras.codecs.entropy import decode_streams, encode_streams
from hep_keras.errors import DataError
from hep_keras.io import atomic_file, check_output_file

MAGIC = b"HKJETS2\n"
FORMAT = "hep_keras.jets/2"


def encode_event(event: np.ndarray) -> bytes:
    """Event index → bytes: runs of equal values as (value difference to the previous run, run length)."""
    event = np.asarray(event, np.int64)
    if len(event) == 0:
        return encode_streams([np.zeros(0, np.int64), np.zeros(0, np.int64)])
    first = np.flatnonzero(np.r_[True, event[1:] != event[:-1]])
    lengths = np.diff(np.r_[first, len(event)])
    return encode_streams([np.diff(event[first], prepend=0), lengths])


def decode_event(data: bytes) -> np.ndarray:
    deltas, lengths = decode_streams(data)
    return np.repeat(np.cumsum(deltas), lengths).astype(np.int64)


def to_bytes(header: dict, event: np.ndarray, encoded: Encoded) -> bytes:
    """The whole file as bytes (``header`` gets ``format`` and ``params`` added)."""
    import zstandard

    head = zstandard.ZstdCompressor(level=19).compress(
        json.dumps({"format": FORMAT, **header, "params": encoded.params}, separators=(",", ":")).encode()
    )
    events = encode_event(event)
    parts = [MAGIC, struct.pack("<I", len(head)), head, struct.pack("<I", len(events)), events]
    parts.append(struct.pack("<I", len(encoded.blobs)))
    for blob in encoded.blobs:
        parts += [struct.pack("<Q", len(blob)), blob]
    return b"".join(parts)


def from_bytes(data: bytes, source: str) -> tuple[dict, np.ndarray, Encoded]:
    """``(header, event, Encoded)`` from a file's bytes; DataError naming ``source`` when it is not one."""
    import zstandard

    if not data.startswith(MAGIC):
        raise DataError(f"{source}: not a hep_keras compressed jet file (format {FORMAT})")
    try:
        at = len(MAGIC)
        (n,) = struct.unpack_from("<I", data, at)
        header = json.loads(zstandard.ZstdDecompressor().decompress(data[at + 4 : at + 4 + n]))
        at += 4 + n
        (n,) = struct.unpack_from("<I", data, at)
        event = decode_event(data[at + 4 : at + 4 + n])
        at += 4 + n
        (count,) = struct.unpack_from("<I", data, at)
        at += 4
        blobs = []
        for _ in range(count):
            (n,) = struct.unpack_from("<Q", data, at)
            blobs.append(data[at + 8 : at + 8 + n])
            at += 8 + n
    except (struct.error, ValueError, zstandard.ZstdError) as err:
        raise DataError(f"{source}: truncated or corrupt compressed jet file ({err})") from None
    if at != len(data) or len(event) != header.get("n_jets"):
        raise DataError(f"{source}: truncated or corrupt compressed jet file")
    return header, event, Encoded(header.pop("params"), blobs)


def write_atomic(out: str | os.PathLike, data: bytes, overwrite: bool = False) -> int:
    """Write ``data`` to ``out`` atomically (:func:`hep_keras.io.atomic_file`); returns the size in bytes."""
    out = check_output_file(out, overwrite)
    with atomic_file(out) as tmp:
        tmp.write_bytes(data)
    return len(data)


def read_file(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path.read_bytes()
