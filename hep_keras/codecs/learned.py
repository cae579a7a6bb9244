"""``ae``: the 4→3 autoencoder as a codec.

Without a bound (the "3-float mode"): the latent numbers as float32 (12 B/jet) or float16 (6 B/jet), no
corrections — the error is whatever the network gives.

With a bound (the learned codec): the latent is quantised with per-dimension steps ``delta_j = alpha * std(z_j)``,
decoded, and the residual of every variable is quantised to the bound with the steps of
:class:`~hep_keras.codecs.base.Quantizer` (log for pT and m, absolute for eta and wrapped phi). The 3 latent code
streams and the 4 residual streams are entropy-coded with fitted histograms and rANS
(:mod:`hep_keras.codecs.entropy`). ``alpha`` is chosen per file among a few values (on up to 20,000 jets) to
minimise the size: a coarse latent leaves wide residuals, a fine one costs latent bits. Jets that cannot be
represented (m = 0, ...) are exceptions. The decoder must reproduce the network's output to ~1e-6; the 2 %
``SAFETY`` margin of the steps covers last-bit differences between machines.

The model enters as :class:`JetModel`: numpy ``encode``/``decode`` callables (the SavedModel endpoints) and a
fingerprint of the SavedModel, stored in the file and checked on decompression.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from hep_keras.codecs.base import (
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
from hep_keras.codecs.entropy import decode_streams, encode_streams

ALPHAS = tuple(2.0**-i for i in range(2, 14))
TUNE_JETS = 20000
BATCH = 16384  # measured fastest on this CPU (benchmarks/compressor_throughput.py)
_TINY = 1e-30


@dataclasses.dataclass
class JetModel:
    """A trained compressor as numpy callables: ``encode (n, 4) → (n, 3)``, ``decode (n, 3) → (n, 4)`` float32."""

    encode: Callable[[np.ndarray], np.ndarray]
    decode: Callable[[np.ndarray], np.ndarray]
    fingerprint: str = ""
    latent_dim: int = 3

    def batched(self, fn, x: np.ndarray, width: int) -> np.ndarray:
        parts = [np.asarray(fn(np.ascontiguousarray(x[i : i + BATCH]))) for i in range(0, len(x), BATCH)]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, width), np.float32)

    def encode_all(self, jets: np.ndarray) -> np.ndarray:
        return self.batched(self.encode, np.asarray(jets, np.float32), self.latent_dim)

    def decode_all(self, latent: np.ndarray) -> np.ndarray:
        return self.batched(self.decode, np.asarray(latent, np.float32), 4).astype(np.float64)

    @classmethod
    def from_saved_model(cls, loaded, fingerprint: str) -> JetModel:
        return cls(lambda x: loaded.encode(x).numpy(), lambda z: loaded.decode(z).numpy(), fingerprint)


def residual_codes(jets: np.ndarray, decoded: np.ndarray, quantizer: Quantizer) -> np.ndarray:
    """``(N, 4)`` int64 quantised residuals of ``jets`` (pt, m > 0) relative to the network's ``decoded``."""
    steps = quantizer.steps
    out = np.empty(jets.shape, np.int64)
    for c in (0, 3):
        out[:, c] = np.rint((np.log(jets[:, c]) - np.log(np.maximum(decoded[:, c], _TINY))) / steps[c])
    out[:, 1] = np.rint((jets[:, 1] - decoded[:, 1]) / steps[1])
    out[:, 2] = np.rint(wrap(jets[:, 2] - decoded[:, 2]) / steps[2])
    return out


def apply_residuals(decoded: np.ndarray, codes: np.ndarray, quantizer: Quantizer) -> np.ndarray:
    steps = quantizer.steps
    out = np.empty(decoded.shape, np.float64)
    for c in (0, 3):
        out[:, c] = np.exp(np.log(np.maximum(decoded[:, c], _TINY)) + codes[:, c] * steps[c])
    out[:, 1] = decoded[:, 1] + codes[:, 1] * steps[1]
    out[:, 2] = wrap(decoded[:, 2] + codes[:, 2] * steps[2])
    return out


def dequantize_latent(codes: np.ndarray, deltas: list[float]) -> np.ndarray:
    return (codes * np.asarray(deltas, np.float64)).astype(np.float32)


class AECodec(Codec):
    """The autoencoder: latent only without a bound, quantised latent + coded residuals with one."""

    name = "ae"
    needs_model = True

    def __init__(self, model: JetModel, latent_dtype: str = "float16"):
        self.model = model
        self.latent_dtype = latent_dtype

    bounded = True  # with a bound it is always the residual mode

    def encode(self, jets, event, bound):
        latent = self.model.encode_all(jets)
        if bound is None:
            stored = latent.astype("<f2" if self.latent_dtype == "float16" else "<f4")
            return Encoded({"mode": "latent", "latent_dtype": self.latent_dtype}, [stored.tobytes()])
        bound = check_lossy_bound(self.name, bound)
        quantizer = Quantizer(bound)
        bad = (jets[:, 0] <= 0) | (jets[:, 3] <= 0)
        stand_in = np.array(jets, np.float64)
        stand_in[bad, 0] = np.where(jets[bad, 0] > 0, jets[bad, 0], 30.0)
        stand_in[bad, 3] = 0.1 * stand_in[bad, 0]
        scale = latent.std(axis=0).astype(np.float64) + 1e-12
        best = None
        tune = slice(0, min(len(jets), TUNE_JETS))
        for alpha in ALPHAS:
            deltas = [float(v) for v in alpha * scale]
            size = len(self._streams(latent[tune], stand_in[tune], deltas, quantizer)[0])
            if best is None or size < best[0]:
                best = (size, deltas)
        deltas = best[1]
        payload, decoded = self._streams(latent, stand_in, deltas, quantizer)
        index, exact = with_exceptions(jets, decoded, bound, bad)
        params = {"mode": "residual", "bound": bound.as_dict(), "deltas": deltas}
        return Encoded(params, [payload, pack_exceptions(index, exact)])

    def _streams(self, latent, jets, deltas, quantizer) -> tuple[bytes, np.ndarray]:
        codes = np.rint(latent / np.asarray(deltas)).astype(np.int64)
        decoded = self.model.decode_all(dequantize_latent(codes, deltas))
        residual = residual_codes(jets, decoded, quantizer)
        payload = encode_streams([*codes.T, *residual.T])
        return payload, apply_residuals(decoded, residual, quantizer)

    def decode(self, encoded, event):
        params = encoded.params
        if params["mode"] == "latent":
            dtype = "<f2" if params["latent_dtype"] == "float16" else "<f4"
            latent = np.frombuffer(encoded.blobs[0], dtype).reshape(-1, self.model.latent_dim)
            return self.model.decode_all(latent)
        quantizer = Quantizer(Bound(**params["bound"]))
        streams = decode_streams(encoded.blobs[0])
        codes = np.stack(streams[:3], axis=1)
        decoded = self.model.decode_all(dequantize_latent(codes, params["deltas"]))
        restored = apply_residuals(decoded, np.stack(streams[3:], axis=1), quantizer)
        return apply_exceptions(restored, encoded.blobs[1])
