"""What every jet codec shares: the error bound, the per-variable quantiser, error measures, exceptions.

Jets are ``(N, 4)`` float64 arrays of (pT [GeV], eta, phi [rad], m [GeV]) plus an ``(N,)`` int64 event index.

Error bound (:class:`Bound`): relative for pT and m, ``|x' - x| <= rel * |x|``; absolute for eta and phi,
``|x' - x| <= abs`` (phi as an angle: the difference is wrapped into (-pi, pi]). The bound is checked on the
restored values *rounded to float32*, as they are written to disk.

Quantiser (:class:`Quantizer`), used by every error-bounded codec: ``q = rint(ln x / s)`` with
``s = 2 ln(1 + rel) * SAFETY`` for pT and m (a relative error is an absolute error of ln x), ``q = rint(eta / s)``
with ``s = 2 abs * SAFETY`` for eta, and ``q = rint(phi / s) mod K`` with ``K = ceil(2 pi / (2 abs SAFETY))``,
``s = 2 pi / K`` for phi (K bins on the circle: phi = +pi and -pi are the same bin). ``SAFETY`` < 1 leaves room
for the float32 rounding of the output and for a neural decoder that differs in its last bits on another machine.

Jets a codec cannot represent within the bound (m = 0 or negative under a relative bound, pT <= 0, ...) are kept
as *exceptions*: their row index and exact float64 values are stored beside the codec's payload
(:func:`pack_exceptions`), so every codec with a bound meets it on every jet.
"""

from __future__ import annotations

import dataclasses
import math
import struct

import numpy as np

from hep_keras.errors import ConfigError, DataError

VARIABLES = ("pt", "eta", "phi", "m")
LOG_COLUMNS = (0, 3)
ETA, PHI = 1, 2
SAFETY = 0.98
#: smallest bound a lossy codec accepts: below it float32 storage of the output breaks it
MIN_BOUND = 1e-6


@dataclasses.dataclass(frozen=True)
class Bound:
    """Per-jet error bound: ``rel`` for pT and m (relative), ``abs`` for eta and phi (absolute, rad for phi)."""

    rel: float
    abs: float

    @classmethod
    def from_options(cls, rel: float | None, abs_: float | None = None) -> Bound | None:
        """From ``--max-rel-error``/``--max-abs-error`` (abs defaults to rel); ConfigError when out of range."""
        if rel is None and abs_ is None:
            return None
        for option, value in (("--max-rel-error", rel), ("--max-abs-error", abs_)):
            if value is None:
                continue
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{option} must be a non-negative number, got {value}")
            if value >= 1:
                raise ConfigError(f"{option} must be below 1, got {value}")
        rel = abs_ if rel is None else rel
        return cls(float(rel), float(rel if abs_ is None else abs_))

    def as_dict(self) -> dict[str, float]:
        return {"rel": self.rel, "abs": self.abs}

    def __str__(self) -> str:
        return f"rel {self.rel:g} (pt, m), abs {self.abs:g} (eta, phi)"


def check_lossy_bound(codec: str, bound: Bound | None) -> Bound:
    """ConfigError unless ``bound`` is a usable bound for the lossy codec ``codec``."""
    if bound is None:
        raise ConfigError(f"--codec {codec} needs an error bound: give --max-rel-error")
    if min(bound.rel, bound.abs) < MIN_BOUND:
        raise ConfigError(
            f"--codec {codec} is lossy and cannot meet a bound below {MIN_BOUND:g} (got {bound}); "
            "use --codec float32 for exact float32 values"
        )
    return bound


def check_jets(jets: np.ndarray, source: str = "jets") -> np.ndarray:
    """``(N, 4)`` float64 copy of ``jets``; DataError naming ``source`` and the column for NaN/Inf."""
    jets = np.asarray(jets, dtype=np.float64)
    if jets.ndim != 2 or jets.shape[1] != 4:
        raise DataError(f"{source}: expected an (N, 4) array of pt, eta, phi, m, got shape {jets.shape}")
    bad = ~np.isfinite(jets)
    if bad.any():
        col = int(np.flatnonzero(bad.any(axis=0))[0])
        rows = np.flatnonzero(bad[:, col])
        raise DataError(
            f"{source}: column {VARIABLES[col]} has {len(rows)} non-finite value(s) (NaN/Inf), first at jet {rows[0]}"
        )
    return jets


def wrap(phi: np.ndarray) -> np.ndarray:
    """Angles into (-pi, pi]."""
    wrapped = np.mod(phi + np.pi, 2 * np.pi) - np.pi
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def errors(original: np.ndarray, restored: np.ndarray) -> dict[str, np.ndarray]:
    """Per-jet errors: relative for pt, m and E (= sqrt((pt cosh eta)^2 + m^2)), absolute for eta, wrapped phi.

    A relative error of a zero original is 0 when restored exactly and inf otherwise.
    """
    original = np.asarray(original, np.float64)
    restored = np.asarray(restored, np.float64)

    def rel(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.abs(b - a) / np.abs(a)
        return np.where(b == a, 0.0, out)

    energy = [np.hypot(x[:, 0] * np.cosh(x[:, 1]), x[:, 3]) for x in (original, restored)]
    return {
        "pt": rel(original[:, 0], restored[:, 0]),
        "eta": np.abs(restored[:, 1] - original[:, 1]),
        "phi": np.abs(wrap(restored[:, 2] - original[:, 2])),
        "m": rel(original[:, 3], restored[:, 3]),
        "E": rel(*energy),
    }


def violations(original: np.ndarray, restored: np.ndarray, bound: Bound) -> np.ndarray:
    """Boolean ``(N,)``: jets whose float32-rounded restored values break ``bound`` in any variable."""
    r = np.asarray(restored).astype(np.float32).astype(np.float64)
    bad = np.abs(r[:, 0] - original[:, 0]) > bound.rel * np.abs(original[:, 0])
    bad |= np.abs(r[:, 3] - original[:, 3]) > bound.rel * np.abs(original[:, 3])
    bad |= np.abs(r[:, 1] - original[:, 1]) > bound.abs
    dphi = np.abs(r[:, 2] - original[:, 2])
    bad |= np.minimum(dphi, 2 * np.pi - dphi) > bound.abs
    return bad


def max_errors(original: np.ndarray, restored: np.ndarray) -> dict[str, float]:
    """Largest error per variable (float32-rounded restored values)."""
    return {k: float(v.max(initial=0.0)) for k, v in errors(original, np.asarray(restored).astype(np.float32)).items()}


def unmet(bound: Bound, worst: dict[str, float]) -> str | None:
    """``"eta 0.0019 > 0.001"`` for the first variable whose worst error breaks ``bound``, else None."""
    for name in VARIABLES:
        limit = bound.rel if name in ("pt", "m") else bound.abs
        if worst[name] > limit:
            return f"{name} {worst[name]:.3g} > {limit:g}"
    return None


@dataclasses.dataclass(frozen=True)
class Quantizer:
    """Per-variable uniform quantiser of (ln pT, eta, phi on the circle, ln m) for ``bound`` (module docstring)."""

    bound: Bound

    @property
    def steps(self) -> np.ndarray:
        """Quantisation steps (ln pt, eta, phi, ln m)."""
        s_log = 2 * math.log1p(self.bound.rel) * SAFETY
        return np.array([s_log, 2 * self.bound.abs * SAFETY, 2 * math.pi / self.phi_bins, s_log])

    @property
    def phi_bins(self) -> int:
        return int(math.ceil(2 * math.pi / (2 * self.bound.abs * SAFETY)))

    def quantize(self, jets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 4)`` int64 codes and the boolean ``(N,)`` mask of jets it cannot represent (pt or m <= 0)."""
        steps = self.steps
        bad = (jets[:, 0] <= 0) | (jets[:, 3] <= 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(np.where(bad[:, None], 1.0, jets[:, list(LOG_COLUMNS)]))
        codes = np.empty(jets.shape, np.int64)
        codes[:, LOG_COLUMNS] = np.rint(logs / steps[list(LOG_COLUMNS)])
        codes[:, ETA] = np.rint(jets[:, ETA] / steps[ETA])
        codes[:, PHI] = np.mod(np.rint(jets[:, PHI] / steps[PHI]).astype(np.int64), self.phi_bins)
        return codes, bad

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Codes → ``(N, 4)`` float64 jets."""
        steps = self.steps
        out = np.empty(codes.shape, np.float64)
        out[:, LOG_COLUMNS] = np.exp(codes[:, LOG_COLUMNS] * steps[list(LOG_COLUMNS)])
        out[:, ETA] = codes[:, ETA] * steps[ETA]
        phi = codes[:, PHI] * steps[PHI]  # in [0, 2 pi)
        out[:, PHI] = np.where(phi > np.pi, phi - 2 * np.pi, phi)
        return out


def pack_exceptions(index: np.ndarray, values: np.ndarray) -> bytes:
    """Row indices (delta-coded) and exact float64 ``(K, 4)`` values of the jets stored exactly."""
    import zstandard

    index = np.asarray(index, np.int64)
    deltas = np.diff(index, prepend=0).astype("<i8")
    body = struct.pack("<Q", len(index)) + deltas.tobytes() + np.asarray(values, "<f8").tobytes()
    return zstandard.ZstdCompressor(level=19).compress(body)


def unpack_exceptions(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    import zstandard

    body = zstandard.ZstdDecompressor().decompress(data)
    (n,) = struct.unpack_from("<Q", body, 0)
    index = np.cumsum(np.frombuffer(body, "<i8", n, 8))
    values = np.frombuffer(body, "<f8", 4 * n, 8 + 8 * n).reshape(n, 4)
    return index.astype(np.int64), values.astype(np.float64)


def with_exceptions(original: np.ndarray, restored: np.ndarray, bound: Bound, forced: np.ndarray | None = None):
    """Rows of ``restored`` breaking ``bound`` (or ``forced``): returns ``(index, exact values)``."""
    bad = violations(original, restored, bound)
    if forced is not None:
        bad |= forced
    index = np.flatnonzero(bad)
    return index, original[index]


def apply_exceptions(restored: np.ndarray, data: bytes) -> np.ndarray:
    index, values = unpack_exceptions(data)
    restored = np.array(restored, np.float64)
    restored[index] = values
    return restored


@dataclasses.dataclass
class Encoded:
    """A codec's output: ``params`` (JSON-able, stored in the file header) and its binary ``blobs``."""

    params: dict
    blobs: list[bytes]

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.blobs)


class Codec:
    """Interface of a jet codec. Subclasses set the class attributes and implement ``encode``/``decode``.

    ``encode(jets (N, 4) float64, event (N,) int64, bound | None) -> Encoded`` and
    ``decode(Encoded, event (N,) int64) -> (N, 4) float64``. The event index is stored by the container for
    every codec alike (:mod:`hep_keras.codecs.container`), so a codec may use it as context on both sides.
    A codec with ``needs_model`` gets the model (``encode``/``decode`` numpy callables) in its constructor.
    """

    name: str = ""
    version: int = 1
    #: False for a codec that meets any bound >= 0 on float32 input (float32)
    lossy: bool = True
    #: True when the codec guarantees the bound on every jet (else it is checked and may be refused)
    bounded: bool = False
    needs_model: bool = False

    def encode(self, jets: np.ndarray, event: np.ndarray, bound: Bound | None) -> Encoded:
        raise NotImplementedError

    def decode(self, encoded: Encoded, event: np.ndarray) -> np.ndarray:
        raise NotImplementedError
