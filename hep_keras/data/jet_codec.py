"""The compressed jet file: latent numbers + what is needed to restore them, with an optional error bound.

Used by ``python -m hep_keras.compress`` / ``decompress``; the model enters only as two numpy callables
``encode: (N, 4) float32 physical → (N, 3) float32`` and ``decode: (N, 3) → (N, 4)`` (the SavedModel's
endpoints), so this module never imports TensorFlow.

File layout (HDF5, format ``hep_keras.compressed_jets/1``)::

    latent            (N, 3) float16 or float32   the encoder output
    event             (N,)   int64, gzip+shuffle  event index of each jet
    corrections/<var> (N,)   int8/int16, gzip     quantised correction, only with an error bound;
                                                  attrs: step, kind ("log" for pt/m, "abs" for eta/phi)
    exact/index       (K,)   uint32               jets stored exactly (bound not reachable by a correction)
    exact/values      (K, 4) float32              their original (pt, eta, phi, m)
    attrs: format, model_fingerprint, variables, units, n_jets, latent_dtype, max_rel_error, max_abs_error,
           source, source_fingerprint

Error bound (``max_rel_error`` ε, ``max_abs_error`` δ): every restored pt and m satisfies
``|restored - original| <= ε * original`` and every eta and phi ``|restored - original| <= δ`` (phi as an
angle; δ defaults to ε, in units of eta and of radians). For a jet that misses it, the compressor stores
``q = round(log(original / decoded) / s)`` with ``s = 2 ln(1 + ε) * SAFETY`` (pt, m) or
``q = round((original - decoded) / s)`` with ``s = 2 δ * SAFETY`` (eta, phi); the restored value is
``decoded * exp(q s)`` or ``decoded + q s``. The bound is verified on the values as they will be written
(float32); a jet still outside it (|q| too large for int16, m = 0, ...) is stored exactly. ``SAFETY`` = 0.9
leaves 10 % of the bound for a decoder that differs in the last float32 bits on another machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.data.jets import UNITS, VARIABLES, JetTable, energy_from_ptetam
from hep_keras.errors import DataError
from hep_keras.io import atomic_file, check_output_file
from hep_keras.physics import wrap_phi

FORMAT = "hep_keras.compressed_jets/1"
SAFETY = 0.9
RAW_BYTES_PER_JET = 16  # 4 x float32
LOG_VARIABLES = ("pt", "m")
_INT16_MAX = 32767


@dataclasses.dataclass
class Compressed:
    """Everything written to a compressed file (see the module docstring)."""

    latent: np.ndarray
    event: np.ndarray
    corrections: dict[str, tuple[np.ndarray, float]]
    exact_index: np.ndarray
    exact_values: np.ndarray
    attrs: dict[str, Any]


def directory_fingerprint(path: str | os.PathLike) -> str:
    """sha256 over the relative names and bytes of every file under ``path`` (a SavedModel directory)."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def directory_bytes(path: str | os.PathLike) -> int:
    """Total size in bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _restore_variable(name: str, decoded: np.ndarray, q: np.ndarray | None, step: float) -> np.ndarray:
    """Apply a quantised correction to one decoded column (float64)."""
    decoded = decoded.astype(np.float64)
    if q is None:
        return decoded
    if name in LOG_VARIABLES:
        return decoded * np.exp(q.astype(np.float64) * step)
    value = decoded + q.astype(np.float64) * step
    return wrap_phi(value) if name == "phi" else value


def restore(
    decoded: np.ndarray,
    corrections: dict[str, tuple[np.ndarray, float]],
    exact_index: np.ndarray,
    exact_values: np.ndarray,
) -> np.ndarray:
    """Decoded ``(N, 4)`` + corrections → restored ``(N, 4)`` float32, exactly as it is written to disk."""
    columns = []
    for i, name in enumerate(VARIABLES):
        q, step = corrections.get(name, (None, 0.0))
        columns.append(_restore_variable(name, decoded[:, i], q, step))
    out = np.stack(columns, axis=1).astype(np.float32)
    if len(exact_index):
        out[exact_index] = exact_values
    return out


def _within(name: str, original: np.ndarray, restored: np.ndarray, rel: float, abs_: float) -> np.ndarray:
    """Boolean per jet: does ``restored`` meet the bound for variable ``name``?"""
    restored = restored.astype(np.float64)
    if name in LOG_VARIABLES:
        return np.abs(restored - original) <= rel * np.abs(original)
    delta = restored - original
    if name == "phi":
        delta = np.mod(delta + np.pi, 2 * np.pi) - np.pi
    return np.abs(delta) <= abs_


def _quantise(name: str, original: np.ndarray, decoded: np.ndarray, rel: float, abs_: float):
    """Integer corrections ``q`` (int64) and their step for one variable; q = 0 where the jet is fine."""
    decoded = decoded.astype(np.float64)
    if name in LOG_VARIABLES:
        step = 2 * np.log1p(rel) * SAFETY
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.log(original / decoded)
        ratio = np.where(np.isfinite(ratio), ratio, 0.0)
        q = np.rint(ratio / step)
    else:
        step = 2 * abs_ * SAFETY
        delta = original - decoded
        if name == "phi":
            delta = np.mod(delta + np.pi, 2 * np.pi) - np.pi
        q = np.rint(delta / step)
    return np.clip(q, -_INT16_MAX, _INT16_MAX).astype(np.int64), float(step)


def compress(
    table: JetTable,
    encode,
    decode,
    latent_dtype: str = "float16",
    max_rel_error: float | None = None,
    max_abs_error: float | None = None,
    batch_size: int = 65536,
) -> Compressed:
    """Encode ``table``; with a bound, add the corrections so that every restored jet meets it.

    Args:
        table: the jets.
        encode, decode: numpy callables ``(n, 4) → (n, 3)`` and ``(n, 3) → (n, 4)`` (float32).
        latent_dtype: ``float16`` or ``float32`` storage of the latent numbers.
        max_rel_error: relative bound ε for pt and m (None: no bound, no corrections).
        max_abs_error: absolute bound for eta and phi (default: ε).
        batch_size: jets per encode/decode call.
    """
    original = table.four_vectors(np.float64)
    x = original.astype(np.float32)
    latent = _batched(encode, x, batch_size).astype(latent_dtype)
    if not np.all(np.isfinite(latent)):
        raise DataError(f"{table.source}: latent numbers overflow {latent_dtype}; use --latent-dtype float32")
    decoded = _batched(decode, latent.astype(np.float32), batch_size).astype(np.float64)
    attrs = {"latent_dtype": latent_dtype, "max_rel_error": -1.0, "max_abs_error": -1.0}
    corrections: dict[str, tuple[np.ndarray, float]] = {}
    exact = np.zeros(len(table), dtype=bool)
    if max_rel_error is not None:
        abs_bound = max_rel_error if max_abs_error is None else max_abs_error
        attrs.update(max_rel_error=float(max_rel_error), max_abs_error=float(abs_bound))
        for i, name in enumerate(VARIABLES):
            q, step = _quantise(name, original[:, i], decoded[:, i], max_rel_error, abs_bound)
            dtype = np.int8 if np.abs(q).max(initial=0) <= 127 else np.int16
            corrections[name] = (q.astype(dtype), step)
            restored = _restore_variable(name, decoded[:, i], q, step).astype(np.float32)
            exact |= ~_within(name, original[:, i], restored, max_rel_error, abs_bound)
    exact_index = np.flatnonzero(exact).astype(np.uint32)
    exact_values = original[exact_index].astype(np.float32)
    for q, _step in corrections.values():
        q[exact_index] = 0
    return Compressed(latent, table.event.astype(np.int64), corrections, exact_index, exact_values, attrs)


def _batched(fn, x: np.ndarray, batch_size: int) -> np.ndarray:
    parts = [np.asarray(fn(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 3), np.float32)


def write_compressed(out: str | os.PathLike, data: Compressed, overwrite: bool = False) -> int:
    """Write ``data`` atomically (temp file + rename) to ``out``; returns the file size in bytes."""
    import h5py

    out = check_output_file(out, overwrite)
    with atomic_file(out) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("latent", data=data.latent)
            handle.create_dataset("event", data=data.event, compression="gzip", shuffle=True)
            for name, (q, step) in data.corrections.items():
                dset = handle.create_dataset(f"corrections/{name}", data=q, compression="gzip", shuffle=True)
                dset.attrs["step"] = step
                dset.attrs["kind"] = "log" if name in LOG_VARIABLES else "abs"
            if len(data.exact_index):
                handle.create_dataset("exact/index", data=data.exact_index)
                handle.create_dataset("exact/values", data=data.exact_values)
            for key, value in {"format": FORMAT, "n_jets": len(data.latent), **data.attrs}.items():
                handle.attrs[key] = value
    return out.stat().st_size


def read_compressed(path: str | os.PathLike) -> Compressed:
    """Read a compressed file; DataError (one line) when it is not one."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") != FORMAT:
                raise DataError(f"{path}: not a hep_keras compressed jet file (format attribute missing)")
            attrs = dict(handle.attrs)
            corrections = {
                name: (dset[()], float(dset.attrs["step"])) for name, dset in handle.get("corrections", {}).items()
            }
            exact = handle.get("exact")
            index = exact["index"][()] if exact is not None else np.zeros(0, np.uint32)
            values = exact["values"][()] if exact is not None else np.zeros((0, 4), np.float32)
            return Compressed(handle["latent"][()], handle["event"][()], corrections, index, values, attrs)
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({str(err).splitlines()[0]})") from None
    except KeyError as err:
        raise DataError(f"{path}: incomplete compressed file (missing {err})") from None


def restored_table(data: Compressed, decode, batch_size: int = 65536, source: str = "") -> JetTable:
    """Decode + correct a :class:`Compressed` into a :class:`JetTable` (E computed from pt, eta, m)."""
    decoded = _batched(decode, data.latent.astype(np.float32), batch_size).astype(np.float64)
    values = restore(decoded, data.corrections, data.exact_index, data.exact_values).astype(np.float64)
    pt, eta, phi, m = values.T
    return JetTable(
        pt=pt,
        eta=eta,
        phi=phi,
        m=m,
        E=energy_from_ptetam(pt, eta, m),
        event=np.asarray(data.event, np.int64),
        source=source,
    )


def ratio_report(n_jets: int, compressed_bytes: int, model_bytes: int) -> str:
    """Lines with the compression ratio: raw 4 x float32 per jet vs the file, without and with the model."""
    raw = n_jets * RAW_BYTES_PER_JET
    lines = [
        f"jets: {n_jets}; raw 4 x float32: {raw} bytes ({RAW_BYTES_PER_JET} B/jet)",
        f"compressed file: {compressed_bytes} bytes ({compressed_bytes / max(n_jets, 1):.2f} B/jet), "
        f"ratio {raw / max(compressed_bytes, 1):.3f}",
        f"with the model ({model_bytes} bytes): ratio {raw / max(compressed_bytes + model_bytes, 1):.3f}",
    ]
    return "\n".join(lines)


__all__ = [
    "UNITS",
    "Compressed",
    "compress",
    "read_compressed",
    "restore",
    "restored_table",
    "write_compressed",
]
