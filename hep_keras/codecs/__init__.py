"""Jet 4-vector codecs behind one interface, the compressed file format, and the choice of the smallest codec.

Codecs (:data:`CODECS`; details in each module):

``float32`` ``float16``  casts (:mod:`.generic`)
``quantized``            per-variable quantisation to the bound + zstd (:mod:`.generic`)
``zfp``                  zfpy fixed-accuracy on (ln pt, eta, phi, ln m) (:mod:`.generic`)
``context``              quantisation + per-event prediction + fitted entropy model, rANS (:mod:`.context`)
``ae``                   the autoencoder: latent only, or quantised latent + coded residuals (:mod:`.learned`)

:func:`compress_jets` encodes, decodes again and checks the achieved errors against the bound before anything is
written; a codec that cannot meet the bound on this file raises :class:`~hep_keras.errors.ConfigError` (one
line). :func:`choose_codec` (``--codec auto``) returns the codec giving the smallest file within the bound.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hep_keras.codecs.base import Bound, Codec, check_jets, max_errors, unmet
from hep_keras.codecs.container import from_bytes, to_bytes
from hep_keras.codecs.context import ContextCodec
from hep_keras.codecs.generic import Float16Codec, Float32Codec, QuantizedCodec, ZfpCodec
from hep_keras.codecs.learned import AECodec, JetModel
from hep_keras.errors import ConfigError, DataError

CODECS: dict[str, type[Codec]] = {
    c.name: c for c in (Float32Codec, Float16Codec, QuantizedCodec, ZfpCodec, ContextCodec, AECodec)
}
#: what ``--codec auto`` tries (``ae`` only when a model is given)
AUTO_CANDIDATES = ("float16", "quantized", "context", "ae", "float32")
AUTO_SAMPLE_JETS = 50000


def make_codec(name: str, model: JetModel | None = None, latent_dtype: str = "float16") -> Codec:
    """The codec called ``name``; ConfigError for an unknown name or a model codec without a model."""
    if name not in CODECS:
        raise ConfigError(f"--codec: unknown codec {name!r} (known: auto, {', '.join(CODECS)})")
    cls = CODECS[name]
    if cls.needs_model:
        if model is None:
            raise ConfigError(f"--codec {name} needs the model: give the export directory (saved_models/compressor)")
        return cls(model, latent_dtype=latent_dtype)
    return cls()


@dataclasses.dataclass
class Result:
    """One compression: the file bytes, the restored jets (as the decompressor will see them) and their errors."""

    codec: str
    data: bytes
    restored: np.ndarray
    max_errors: dict[str, float]

    @property
    def nbytes(self) -> int:
        return len(self.data)


def compress_jets(
    jets: np.ndarray,
    event: np.ndarray,
    codec: Codec,
    bound: Bound | None,
    source: str = "jets",
    header: dict | None = None,
) -> Result:
    """Encode ``jets`` (N, 4) with ``codec``, decode it again and check the bound; ConfigError if it is not met."""
    jets = check_jets(jets, source)
    event = np.asarray(event, np.int64)
    encoded = codec.encode(jets, event, bound)
    model = getattr(codec, "model", None)
    head = {
        "codec": codec.name,
        "codec_version": codec.version,
        "n_jets": len(jets),
        "bound": None if bound is None else bound.as_dict(),
        "variables": ["pt", "eta", "phi", "m"],
        "units": ["GeV", "", "rad", "GeV"],
        "model_fingerprint": model.fingerprint if model is not None else None,
        **(header or {}),
    }
    data = to_bytes(head, event, encoded)
    restored = codec.decode(encoded, event)
    worst = max_errors(jets, restored)
    if bound is not None:
        broken = unmet(bound, worst)
        if broken:
            raise ConfigError(f"--codec {codec.name} cannot meet the bound ({bound}) on {source}: {broken}")
    return Result(codec.name, data, restored, worst)


def choose_codec(
    jets: np.ndarray,
    event: np.ndarray,
    bound: Bound | None,
    model: JetModel | None = None,
    source: str = "jets",
    latent_dtype: str = "float16",
) -> tuple[str, dict[str, int]]:
    """``--codec auto``: the codec with the smallest file within ``bound`` on (the first 50k jets of) the input.

    Without a bound the choice is ``float32`` (exact for float32 input): a lossy codec needs a bound.
    Returns the name and the candidates' sizes in bytes (None for those that cannot meet the bound).
    """
    if bound is None:
        return "float32", {}
    jets, event = jets[:AUTO_SAMPLE_JETS], event[:AUTO_SAMPLE_JETS]
    sizes: dict[str, int | None] = {}
    for name in AUTO_CANDIDATES:
        if CODECS[name].needs_model and model is None:
            continue
        try:
            sizes[name] = compress_jets(jets, event, make_codec(name, model, latent_dtype), bound, source).nbytes
        except ConfigError:
            sizes[name] = None
    usable = {k: v for k, v in sizes.items() if v is not None}
    if not usable:
        raise ConfigError(f"--codec auto: no codec meets the bound ({bound}) on {source}")
    return min(usable, key=usable.get), sizes


def decompress_bytes(data: bytes, source: str, model: JetModel | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(jets (N, 4) float64, event (N,), header)`` from a compressed file's bytes.

    DataError (one line naming ``source``) for another format, an unknown codec or codec version, or a file
    compressed with another model; ConfigError when the file needs a model and none is given.
    """
    header, event, encoded = from_bytes(data, source)
    name = header.get("codec")
    if name not in CODECS:
        raise DataError(
            f"{source}: compressed with codec {name!r}, unknown to this version (known: {', '.join(CODECS)})"
        )
    cls = CODECS[name]
    if header.get("codec_version") != cls.version:
        raise DataError(
            f"{source}: written by {name} codec version {header.get('codec_version')}, this version reads {cls.version}"
        )
    if cls.needs_model:
        if model is None:
            raise ConfigError(f"{source}: compressed with the {name} codec; give the export directory it was made with")
        if header.get("model_fingerprint") != model.fingerprint:
            raise DataError(f"{source}: was compressed with a different model than the one given")
    codec = make_codec(name, model)
    return codec.decode(encoded, event), event, header


__all__ = [
    "AUTO_CANDIDATES",
    "CODECS",
    "Bound",
    "JetModel",
    "Result",
    "choose_codec",
    "compress_jets",
    "decompress_bytes",
    "make_codec",
]
