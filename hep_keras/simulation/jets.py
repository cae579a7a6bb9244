"""Jets: FastJet anti-kT clustering, leading-jet selection, parton matching and quark/gluon class balancing.

:class:`Block` (the accepted jets of consecutive generated events) is the unit passed from the generator to
the writer; :func:`select_balanced` and :func:`interleave_classes` turn blocks into the balanced, paired row
order of the output file. FastJet and awkward are imported lazily.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from hep_keras.errors import ConfigError
from hep_keras.physics import CHANNELS, wrap_phi
from hep_keras.simulation.config import IMAGE_PIXELS, SimulationConfig


@dataclass
class Block:
    """Accepted jets of ``n_generated`` consecutive generated events (block ``index`` of the global order).

    ``images`` float32 (k, 125, 125, 3); ``label`` int8 (k,); ``pt``/``m0`` float64 (k,) GeV;
    ``generated_event`` int64 (k,); ``table`` dict of (J,) arrays ``pt, eta, phi, m, E`` (float64) and
    ``owner`` (int64, index 0..k-1 of the accepted jet whose event the table jet belongs to).
    """

    index: int
    n_generated: int
    images: np.ndarray
    label: np.ndarray
    pt: np.ndarray
    m0: np.ndarray
    generated_event: np.ndarray
    table: dict[str, np.ndarray]


def _jet_kinematics(px, py, pz, e):
    """pT, pseudorapidity, phi, mass (clipped at 0) and E of 4-vectors (numpy arrays, GeV)."""
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    phi = np.arctan2(py, px)
    m = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    return pt, eta, phi, m, e


def cluster_jets(px, py, pz, e, offsets, jet_definition, min_pt: float):
    """Jets (pT > ``min_pt`` GeV) of every event as flat numpy arrays sorted by (event, -pT).

    Inputs are flat (P,) particle arrays with (n_events + 1,) ``offsets`` and a ``fastjet.JetDefinition``;
    returns ``(owner, [pt, eta, phi, m, E])`` with ``owner`` the event index of each jet.
    """
    import awkward as ak
    import fastjet

    flat = ak.zip({"px": px, "py": py, "pz": pz, "E": e})
    vectors = ak.unflatten(flat, np.diff(offsets))
    jets = fastjet.ClusterSequence(vectors, jet_definition).inclusive_jets(min_pt=min_pt)
    owner = np.repeat(np.arange(len(jets)), ak.to_numpy(ak.num(jets, axis=1)))
    kin = _jet_kinematics(*(ak.to_numpy(ak.flatten(jets[k], axis=1)) for k in ("px", "py", "pz", "E")))
    order = np.lexsort((-kin[0], owner))
    return owner[order], [k[order] for k in kin]


def _match_label(jet_eta, jet_phi, parton_id, parton_eta, parton_phi, radius) -> int | None:
    """0 (quark) / 1 (gluon) from the closest outgoing hard parton within ``radius``, else ``None``."""
    if len(parton_id) == 0:
        return None
    dr = np.hypot(parton_eta - jet_eta, wrap_phi(parton_phi - jet_phi))
    best = int(np.argmin(dr))
    if dr[best] >= radius:
        return None
    code = abs(int(parton_id[best]))
    if code == 21:
        return 1
    if 1 <= code <= 6:
        return 0
    return None


def select_leading_jets(bounds, jet_pt, jet_eta, jet_phi, partons, config: SimulationConfig):
    """Yield ``(event, jet_row, label)`` for each event whose leading jet passes the cuts and is matched.

    Args:
        bounds: (n_events + 1,) offsets of each event's jets in the flat jet arrays (sorted by decreasing pT).
        jet_pt, jet_eta, jet_phi: (J,) flat jet kinematics (GeV, pseudorapidity, radians).
        partons: ``(pid, eta, phi, offsets)`` of the outgoing hard partons, flat with (n_events + 1,) offsets.
        config: supplies ``pt_min``, ``pt_max``, ``eta_max`` and the matching radius ``jet_r``.
    """
    pid, eta, phi, offsets = partons
    for i in range(len(bounds) - 1):
        j = bounds[i]
        if j == bounds[i + 1]:
            continue
        if not (config.pt_min <= jet_pt[j] <= config.pt_max and abs(jet_eta[j]) < config.eta_max):
            continue
        q = slice(offsets[i], offsets[i + 1])
        label = _match_label(jet_eta[j], jet_phi[j], pid[q], eta[q], phi[q], config.jet_r)
        if label is not None:
            yield i, j, label


@dataclass
class JetRecord:
    """One kept jet: its image (stored sparse while it waits for a partner of the other class) and its event.

    ``flat_index``/``values``: non-zero entries of the (125, 125, 3) float32 image; ``table``: the event's jets
    (``pt, eta, phi, m, E`` arrays, leading first).
    """

    label: int
    pt: float
    m0: float
    generated_event: int
    flat_index: np.ndarray
    values: np.ndarray
    table: dict[str, np.ndarray]

    @classmethod
    def from_block(cls, block: Block, i: int) -> JetRecord:
        """Accepted jet ``i`` of ``block``."""
        image = block.images[i].reshape(-1)
        flat_index = np.flatnonzero(image).astype(np.int32)
        mine = block.table["owner"] == i
        table = {k: block.table[k][mine] for k in ("pt", "eta", "phi", "m", "E")}
        return cls(
            int(block.label[i]),
            float(block.pt[i]),
            float(block.m0[i]),
            int(block.generated_event[i]),
            flat_index,
            image[flat_index],
            table,
        )

    def image(self) -> np.ndarray:
        """The dense float32 (125, 125, 3) image."""
        dense = np.zeros(IMAGE_PIXELS * IMAGE_PIXELS * len(CHANNELS), np.float32)
        dense[self.flat_index] = self.values
        return dense.reshape(IMAGE_PIXELS, IMAGE_PIXELS, len(CHANNELS))


def interleave_classes(records: Iterator[JetRecord], seed: int) -> Iterator[JetRecord]:
    """Emit the k-th quark and the k-th gluon jet together, in a seeded random order within each pair.

    Every prefix of ``2k`` rows of the output is therefore balanced (``k`` of each class), while the order
    inside a pair is not predictable. Jets of the class that runs ahead wait in memory (sparse, ~3 kB each).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2**31, 2]))
    waiting: tuple[list[JetRecord], list[JetRecord]] = ([], [])
    for record in records:
        waiting[record.label].append(record)
        if waiting[0] and waiting[1]:
            pair = (waiting[0].pop(0), waiting[1].pop(0))
            first = int(rng.integers(2))
            yield pair[first]
            yield pair[1 - first]


def select_balanced(blocks: Iterator[Block], n_events: int, on_progress=None) -> Iterator[tuple[Block, int]]:
    """Yield ``(block, i)`` of the first ``n/2`` quark and first ``n/2`` gluon jets in block order.

    Raises :class:`ConfigError` if the generator needs more than ``100 n + 20000`` events (a pT/eta window
    with almost no jets of one class).
    """
    half = n_events // 2
    counts = [0, 0]
    generated = 0
    limit = 100 * n_events + 20_000
    for block in blocks:
        generated += block.n_generated
        for i, label in enumerate(block.label.tolist()):
            if counts[label] < half:
                counts[label] += 1
                yield block, i
        if on_progress:
            on_progress(counts, generated)
        if counts[0] == half and counts[1] == half:
            return
        if generated > limit:
            raise ConfigError(
                f"only {counts[0]} quark and {counts[1]} gluon jets after {generated} events: "
                "widen --pt-min/--pt-max or --eta-max"
            )
