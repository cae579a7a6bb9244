"""The generic baselines every learned codec is judged against.

* ``float32``: the four columns as float32 (16 B/jet; exact for float32 input files).
* ``float16``: cast to float16 (8 B/jet); no guarantee — its error is whatever the cast gives (pt above 65504
  GeV overflows, |eta| > 4 loses more than 1e-3).
* ``quantized``: the per-variable quantiser of :mod:`hep_keras.codecs.base` (log for pt, m; absolute for eta;
  the circle for phi) to the requested bound, each column offset to >= 0, stored in the narrowest unsigned
  integer, byte-shuffled (when smaller) and compressed with ``zstandard`` level 19.
* ``zfp``: ``zfpy`` in fixed-accuracy mode on (ln pt, eta, phi, ln m) with the tolerances of the bound.

The bounded ones (quantized, zfp) store the jets they cannot represent exactly (m = 0, ...) as exceptions.
"""

from __future__ import annotations

import math

import numpy as np

from hep_keras.codecs.base import (
    SAFETY,
    Bound,
    Codec,
    Encoded,
    Quantizer,
    apply_exceptions,
    check_lossy_bound,
    pack_exceptions,
    with_exceptions,
    wrap,
)

ZSTD_LEVEL = 19


class Float32Codec(Codec):
    name = "float32"
    lossy = False

    def encode(self, jets, event, bound):
        return Encoded({}, [np.asarray(jets, "<f4").tobytes()])

    def decode(self, encoded, event):
        return np.frombuffer(encoded.blobs[0], "<f4").reshape(-1, 4).astype(np.float64)


class Float16Codec(Codec):
    name = "float16"

    def encode(self, jets, event, bound):
        with np.errstate(over="ignore"):
            return Encoded({}, [np.asarray(jets, "<f2").tobytes()])

    def decode(self, encoded, event):
        return np.frombuffer(encoded.blobs[0], "<f2").reshape(-1, 4).astype(np.float64)


def pack_column(values: np.ndarray) -> tuple[dict, bytes]:
    """Integers → (params, zstd bytes): offset to >= 0, narrowest unsigned type, byte-shuffled when smaller."""
    import zstandard

    values = np.asarray(values, np.int64)
    lo = int(values.min(initial=0))
    shifted = values - lo
    top = int(shifted.max(initial=0))
    width = 1 if top < 2**8 else 2 if top < 2**16 else 4 if top < 2**32 else 8
    raw = shifted.astype(f"<u{width}")
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    plain = compressor.compress(raw.tobytes())
    shuffled = compressor.compress(raw.view(np.uint8).reshape(-1, width).T.tobytes()) if width > 1 else plain
    use_shuffle = len(shuffled) < len(plain)
    return {"lo": lo, "width": width, "shuffle": use_shuffle}, shuffled if use_shuffle else plain


def unpack_column(params: dict, data: bytes, n: int) -> np.ndarray:
    import zstandard

    width = params["width"]
    raw = np.frombuffer(zstandard.ZstdDecompressor().decompress(data), np.uint8)
    if params["shuffle"]:
        raw = raw.reshape(width, n).T.copy()
    return raw.view(f"<u{width}").reshape(n).astype(np.int64) + params["lo"]


class QuantizedCodec(Codec):
    """Per-variable quantisation to the bound + zstd (the issue's "few lines" baseline, done carefully)."""

    name = "quantized"
    bounded = True

    def encode(self, jets, event, bound):
        bound = check_lossy_bound(self.name, bound)
        quantizer = Quantizer(bound)
        codes, bad = quantizer.quantize(jets)
        index, exact = with_exceptions(jets, quantizer.dequantize(codes), bound, bad)
        codes[index] = 0
        params, blobs = {"bound": bound.as_dict(), "columns": []}, []
        for col in range(4):
            p, blob = pack_column(codes[:, col])
            params["columns"].append(p)
            blobs.append(blob)
        return Encoded(params, [*blobs, pack_exceptions(index, exact)])

    def decode(self, encoded, event):
        n = len(event)
        quantizer = Quantizer(Bound(**encoded.params["bound"]))
        codes = np.stack(
            [unpack_column(p, b, n) for p, b in zip(encoded.params["columns"], encoded.blobs, strict=False)], 1
        )
        return apply_exceptions(quantizer.dequantize(codes), encoded.blobs[4])


class ZfpCodec(Codec):
    """``zfpy`` fixed-accuracy on (ln pt, eta, phi, ln m); tolerance ln(1+rel)·SAFETY or abs·SAFETY."""

    name = "zfp"
    bounded = True

    @staticmethod
    def tolerances(bound: Bound) -> list[float]:
        log_tol = math.log1p(bound.rel) * SAFETY
        return [log_tol, bound.abs * SAFETY, bound.abs * SAFETY, log_tol]

    def encode(self, jets, event, bound):
        import zfpy

        bound = check_lossy_bound(self.name, bound)
        bad = (jets[:, 0] <= 0) | (jets[:, 3] <= 0)
        features = np.array(jets, np.float64)
        features[bad] = [1.0, 0.0, 0.0, 1.0]
        features[:, [0, 3]] = np.log(features[:, [0, 3]])
        blobs = [
            zfpy.compress_numpy(np.ascontiguousarray(features[:, c]), tolerance=tol)
            for c, tol in enumerate(self.tolerances(bound))
        ]
        restored = self._restore(blobs)
        index, exact = with_exceptions(jets, restored, bound, bad)
        return Encoded({"bound": bound.as_dict()}, [*blobs, pack_exceptions(index, exact)])

    @staticmethod
    def _restore(blobs: list[bytes]) -> np.ndarray:
        import zfpy

        out = np.stack([zfpy.decompress_numpy(b) for b in blobs[:4]], axis=1)
        out[:, [0, 3]] = np.exp(out[:, [0, 3]])
        out[:, 2] = wrap(out[:, 2])
        return out

    def decode(self, encoded, event):
        return apply_exceptions(self._restore(encoded.blobs), encoded.blobs[4])
