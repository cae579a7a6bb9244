"""``context``: quantise to the bound, predict each code from what the decoder already has, entropy-code the rest.

The codes are those of the ``quantized`` baseline (:class:`hep_keras.codecs.base.Quantizer`), so the error is
the same; only their coding differs. Jets of one event (consecutive rows with the same event index; files list
them in falling pT) are coded relative to each other, and every prediction uses only integer codes the decoder
already knows, with float64 additions and multiplications (bit-identical on every IEEE machine):

* pT: the leading jet of an event as is; every later jet as the difference to the previous jet's code.
* phi: the leading jet as is; later jets relative to the leading jet + pi (dijets are back to back), modulo the
  number of phi bins, centred.
* m: the difference to a linear prediction of ln m from (ln pT, eta^2, |eta|, leading or not), least-squares
  fitted on the file being compressed (4+1 coefficients in the header).
* eta: as is, in separate streams for leading / second / later jets (leading jets are more central).

Each of these 10 integer streams (pT, eta and phi split into leading / second / later jets) is coded with its own
fitted histogram and rANS (:mod:`hep_keras.codecs.entropy`). Jets that cannot be represented are exceptions.
No neural network is involved; the gain over ``quantized`` comes from the entropy model and the context.
"""

from __future__ import annotations

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
)
from hep_keras.codecs.entropy import decode_streams, encode_streams

FIT_JETS = 100_000  # jets used to fit the mass prediction


def event_structure(event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rank, start)``: the position of each jet in its run of equal ``event`` values and the run's first row."""
    event = np.asarray(event)
    n = len(event)
    rows = np.arange(n)
    first = np.ones(n, bool)
    first[1:] = event[1:] != event[:-1]
    start = np.maximum.accumulate(np.where(first, rows, 0)) if n else rows
    return rows - start, start


def mass_features(codes: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """``(N, 5)`` float64 regressors of the mass code: 1, pT code, eta code^2, |eta code|, leading."""
    pt, eta = codes[:, 0].astype(np.float64), codes[:, 1].astype(np.float64)
    return np.stack([np.ones_like(pt), pt, eta * eta, np.abs(eta), (rank == 0).astype(np.float64)], axis=1)


def predict_mass(features: np.ndarray, coef: list[float]) -> np.ndarray:
    """Integer prediction of the mass code; a fixed order of float64 ``*`` and ``+`` (reproducible)."""
    total = np.zeros(len(features))
    for j, c in enumerate(coef):
        total = total + features[:, j] * c
    return np.rint(total).astype(np.int64)


def group_cumsum(values: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Cumulative sum restarting at every run start."""
    total = np.cumsum(values)
    return total - (total[start] - values[start])


def _centre(d: np.ndarray, k: int) -> np.ndarray:
    d = np.mod(d, k)
    return np.where(d >= (k + 1) // 2, d - k, d)


class ContextCodec(Codec):
    name = "context"
    bounded = True

    def encode(self, jets, event, bound):
        bound = check_lossy_bound(self.name, bound)
        quantizer = Quantizer(bound)
        bad = (jets[:, 0] <= 0) | (jets[:, 3] <= 0)
        stand_in = np.array(jets, np.float64)
        stand_in[bad, 0] = np.where(jets[bad, 0] > 0, jets[bad, 0], 30.0)
        stand_in[bad, 3] = 0.1 * stand_in[bad, 0]
        codes, _ = quantizer.quantize(stand_in)
        index, exact = with_exceptions(jets, quantizer.dequantize(codes), bound, bad)
        rank, start = event_structure(event)
        features = mass_features(codes, rank)
        good = ~bad
        fit = np.flatnonzero(good)[:FIT_JETS]
        coef = np.linalg.lstsq(features[fit], codes[fit, 3].astype(np.float64), rcond=None)[0] if len(fit) else 0
        coef = [float(c) for c in np.broadcast_to(coef, (features.shape[1],))]
        k = quantizer.phi_bins
        d_pt = codes[:, 0] - codes[np.maximum(np.arange(len(codes)) - 1, 0), 0]
        d_phi = _centre(codes[:, 2] - codes[start, 2] - k // 2, k)
        lead, second, later = rank == 0, rank == 1, rank >= 2
        streams = [
            codes[lead, 0],
            d_pt[second],
            d_pt[later],
            codes[lead, 1],
            codes[second, 1],
            codes[later, 1],
            codes[lead, 2],
            d_phi[second],
            d_phi[later],
            codes[:, 3] - predict_mass(features, coef),
        ]
        params = {"bound": bound.as_dict(), "mass_coef": coef}
        return Encoded(params, [encode_streams(streams), pack_exceptions(index, exact)])

    def decode(self, encoded, event):
        quantizer = Quantizer(Bound(**encoded.params["bound"]))
        rank, start = event_structure(event)
        n, k = len(event), quantizer.phi_bins
        pt0, pt1, pt2, eta0, eta1, eta2, phi0, phi1, phi2, dm = decode_streams(encoded.blobs[0])
        lead, second, later = rank == 0, rank == 1, rank >= 2
        codes = np.zeros((n, 4), np.int64)
        steps = np.zeros(n, np.int64)
        steps[lead], steps[second], steps[later] = pt0, pt1, pt2
        codes[:, 0] = group_cumsum(steps, start)
        codes[lead, 1], codes[second, 1], codes[later, 1] = eta0, eta1, eta2
        phi = np.zeros(n, np.int64)
        phi[lead] = phi0
        codes[:, 2] = phi  # leading jets first: the others refer to them
        rel = np.zeros(n, np.int64)
        rel[second], rel[later] = phi1, phi2
        codes[~lead, 2] = np.mod(rel[~lead] + codes[start[~lead], 2] + k // 2, k)
        codes[:, 3] = dm + predict_mass(mass_features(codes, rank), encoded.params["mass_coef"])
        return apply_exceptions(quantizer.dequantize(codes), encoded.blobs[1])
