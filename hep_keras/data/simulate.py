"""Quark/gluon jet images from Pythia8 + FastJet + a simple CMS-like detector, written in the CMS file schema.

Provenance of every event: Pythia8 (``pythia8mc``) hard-QCD 2 -> 2 scattering at sqrt(s) = 13 TeV with the
default Monash tune, multi-parton interactions and showers on, no pile-up; unstable particles with
c*tau0 > 10 mm are kept stable (the usual LHC setting). Final-state visible particles (everything with
status > 0 except neutrinos) are clustered with anti-kT, R = 0.4 (FastJet). The leading jet must have
``pt_min <= pT <= pt_max`` and ``|eta| < eta_max`` and lie within Delta R < R of one of the two outgoing
hard-process partons (Pythia status -23); it is labelled quark (``y = 0``, any quark flavour, b and c
included) or gluon (``y = 1``). Unmatched events are dropped. The first ``N/2`` quark and the first ``N/2``
gluon jets in generation order are kept, so the output is balanced; N must be even. Rows come in pairs (the
k-th quark and the k-th gluon jet, in a seeded random order), so every prefix of 2k rows is balanced too.

Detector approximation (documented in ``docs/simulation.md``), a 125 x 125 window of ECAL-crystal pixels
(Delta eta = Delta phi = 0.0174) centred on the jet axis, rows = eta, columns = phi, GeV per pixel:

* Tracks: pT of charged particles with pT > 0.5 GeV and |eta| < 2.5, each kept with 90 % probability.
* ECAL: energy of photons and electrons, per crystal smeared by 2.8 %/sqrt(E) (+) 0.3 % (+) 40 MeV noise,
  zeroed below 0.1 GeV.
* HCAL: energy of hadrons (charged and neutral) summed in 0.087 x 0.087 towers (5 x 5 pixels), smeared by
  100 %/sqrt(E) (+) 5 %, zeroed below 1 GeV, and spread uniformly over the tower's 25 pixels (so the
  channel sum equals the smeared tower energy).

Energy falling outside the window is dropped. The pure deposit functions (:func:`deposit_image`,
:func:`bin_pixels`, :func:`bin_towers`, :func:`spread_towers`) and the response (:func:`smear_cells`,
:func:`event_image`) need only numpy; Pythia and FastJet are imported lazily by the generator. TensorFlow is
never imported here.

Output (:func:`simulate`): ``X_jets`` float32 (N, 125, 125, 3) (Tracks, ECAL, HCAL), ``m0``, ``pt``, ``y``
float32 (N,), gzip-chunked along axis 0, plus a group ``jets/`` with float32 ``pt``, ``eta``, ``phi``, ``m``,
``E`` and int64 ``event`` (row of ``X_jets`` of the event the jet belongs to) and ``generated_event`` (index
of the generated Pythia event) for every anti-kT jet with pT > 20 GeV of each kept event.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import multiprocessing as mp
import os
import queue as _queue
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from hep_keras.errors import ConfigError, OutputError

PIXEL_SIZE = 0.0174
"""Pixel (ECAL crystal) size in eta and in phi (radians)."""
IMAGE_PIXELS = 125
"""Image height = width in pixels."""
TOWER_PIXELS = 5
"""HCAL tower edge in pixels (0.087 = 5 x 0.0174)."""
CHANNELS = ("Tracks", "ECAL", "HCAL")
INVISIBLE_PIDS = (12, 14, 16)
"""|PDG id| of particles that leave nothing in the detector (neutrinos)."""
MUON_PID = 13
_MAX_PYTHIA_SEED = 900_000_000


# ----------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorConfig:
    """Detector approximation; energies in GeV, lengths in eta/phi units.

    ECAL/HCAL resolution: sigma(E) = sqrt(stochastic^2 * E + (constant * E)^2 + noise^2).
    """

    track_pt_min: float = 0.5
    track_eta_max: float = 2.5
    track_efficiency: float = 0.9
    ecal_stochastic: float = 0.028
    ecal_constant: float = 0.003
    ecal_noise: float = 0.04
    ecal_threshold: float = 0.1
    hcal_stochastic: float = 1.0
    hcal_constant: float = 0.05
    hcal_noise: float = 0.0
    hcal_threshold: float = 1.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` (one line) for a value outside its physical range."""
        if not 0.0 <= self.track_efficiency <= 1.0:
            raise ConfigError(f"detector track_efficiency must be in [0, 1], got {self.track_efficiency}")
        for name, value in asdict(self).items():
            if name != "track_efficiency" and not (math.isfinite(value) and value >= 0.0):
                raise ConfigError(f"detector {name} must be a finite number >= 0, got {value}")


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that determines the generated file (besides the code version).

    Attributes:
        events: number of jets N written (N/2 quark + N/2 gluon); must be even and >= 2.
        seed: master seed (>= 0); Pythia and detector seeds of worker ``w`` derive from ``(seed, w)``.
        workers: worker processes K; the file is identical for the same (seed, K), not across K.
        pt_min, pt_max: PhaseSpace:pTHatMin/Max in GeV, also the accepted leading-jet pT range.
        eta_max: maximum |eta| of the leading jet (default 1.4 keeps the 2.18-wide window inside the
            tracker acceptance |eta| < 2.5).
        ecm: centre-of-mass energy in GeV.
        jet_r: anti-kT radius, also the parton-matching Delta R.
        table_pt_min: pT threshold in GeV of the ``jets/`` table.
        chunk_events: events per HDF5 chunk of ``X_jets``.
        gzip_level: gzip level 0-9 of every dataset.
        shuffle: apply the HDF5 byte-shuffle filter before gzip (off by default: on these sparse images it
            makes files ~1.5-2x larger).
        block_events: generated events per block, the unit of work of a worker and of the deterministic
            merge (part of the seed: changing it changes the file when workers > 1).
        detector: the :class:`DetectorConfig`.
    """

    events: int
    seed: int = 0
    workers: int = 1
    pt_min: float = 70.0
    pt_max: float = 400.0
    eta_max: float = 1.4
    ecm: float = 13000.0
    jet_r: float = 0.4
    table_pt_min: float = 20.0
    chunk_events: int = 32
    gzip_level: int = 4
    shuffle: bool = False
    block_events: int = 50
    detector: DetectorConfig = field(default_factory=DetectorConfig)

    def validate(self) -> None:
        """Raise :class:`ConfigError` with a one-line message naming the option for any invalid value."""
        if self.events < 2 or self.events % 2:
            raise ConfigError(f"--events must be an even number >= 2 (N/2 quark + N/2 gluon jets), got {self.events}")
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if not (math.isfinite(self.pt_min) and self.pt_min > 0):
            raise ConfigError(f"--pt-min must be a positive number of GeV, got {self.pt_min}")
        if not (math.isfinite(self.pt_max) and self.pt_max > self.pt_min):
            raise ConfigError(f"--pt-min must be below --pt-max, got {self.pt_min} >= {self.pt_max} GeV")
        if 2 * self.pt_max >= self.ecm:
            raise ConfigError(f"--pt-max {self.pt_max} GeV is kinematically impossible at sqrt(s) = {self.ecm} GeV")
        if not 0 < self.eta_max <= 5:
            raise ConfigError(f"--eta-max must be in (0, 5], got {self.eta_max}")
        if not 0 < self.jet_r <= 1.5:
            raise ConfigError(f"jet radius must be in (0, 1.5], got {self.jet_r}")
        if self.chunk_events < 1:
            raise ConfigError(f"--chunk-events must be >= 1, got {self.chunk_events}")
        if self.block_events < 1:
            raise ConfigError(f"block_events must be >= 1, got {self.block_events}")
        if not 0 <= self.gzip_level <= 9:
            raise ConfigError(f"--gzip-level must be in 0..9, got {self.gzip_level}")
        self.detector.validate()

    def pythia_settings(self, pythia_seed: int) -> list[str]:
        """The Pythia ``readString`` lines for one stream seeded with ``pythia_seed`` (1..900,000,000)."""
        return [
            f"Beams:eCM = {self.ecm:g}",
            "HardQCD:all = on",
            f"PhaseSpace:pTHatMin = {self.pt_min:g}",
            f"PhaseSpace:pTHatMax = {self.pt_max:g}",
            "ParticleDecays:limitTau0 = on",
            "ParticleDecays:tau0Max = 10",
            "Random:setSeed = on",
            f"Random:seed = {pythia_seed}",
            "Print:quiet = on",
            "Init:showChangedSettings = off",
            "Init:showProcesses = off",
            "Next:numberCount = 0",
        ]


def stream_seeds(seed: int, stream: int) -> tuple[int, np.random.Generator]:
    """Pythia seed (1..9e8) and detector RNG of stream (worker) ``stream``, both derived from ``seed``."""
    state = np.random.SeedSequence([seed, stream, 0]).generate_state(1, dtype=np.uint64)[0]
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream, 1]))
    return int(state % _MAX_PYTHIA_SEED) + 1, rng


# ----------------------------------------------------------------------------------------------------
# Pure deposit functions (numpy only)
# ----------------------------------------------------------------------------------------------------
def wrap_phi(dphi: np.ndarray) -> np.ndarray:
    """Map azimuthal differences (radians) into [-pi, pi)."""
    return (np.asarray(dphi) + np.pi) % (2 * np.pi) - np.pi


def pixel_indices(deta: np.ndarray, dphi: np.ndarray, n_pixels: int = IMAGE_PIXELS, pixel: float = PIXEL_SIZE):
    """Pixel row (eta) and column (phi) of positions relative to the jet axis, and an inside-window mask.

    Pixel ``n_pixels // 2`` (62) is centred on the axis: it covers ``[-pixel/2, +pixel/2)``.

    Args:
        deta, dphi: (P,) offsets from the jet axis (dphi already wrapped).
    Returns:
        ``(row, col, inside)``: int64 (P,), int64 (P,), bool (P,).
    """
    row = np.floor(np.asarray(deta) / pixel + n_pixels / 2).astype(np.int64)
    col = np.floor(np.asarray(dphi) / pixel + n_pixels / 2).astype(np.int64)
    inside = (row >= 0) & (row < n_pixels) & (col >= 0) & (col < n_pixels)
    return row, col, inside


def bin_pixels(deta: np.ndarray, dphi: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Sum ``weight`` (GeV, (P,)) into the 125 x 125 pixel grid; returns float64 (125, 125), outside dropped."""
    row, col, inside = pixel_indices(deta, dphi)
    flat = row[inside] * IMAGE_PIXELS + col[inside]
    sums = np.bincount(flat, weights=np.asarray(weight, dtype=np.float64)[inside], minlength=IMAGE_PIXELS**2)
    return sums.reshape(IMAGE_PIXELS, IMAGE_PIXELS)


def bin_towers(deta: np.ndarray, dphi: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Sum ``weight`` (GeV, (P,)) into the 25 x 25 HCAL towers of 5 x 5 pixels; float64 (25, 25)."""
    n_towers = IMAGE_PIXELS // TOWER_PIXELS
    row, col, inside = pixel_indices(deta, dphi)
    flat = (row[inside] // TOWER_PIXELS) * n_towers + col[inside] // TOWER_PIXELS
    sums = np.bincount(flat, weights=np.asarray(weight, dtype=np.float64)[inside], minlength=n_towers**2)
    return sums.reshape(n_towers, n_towers)


def spread_towers(towers: np.ndarray) -> np.ndarray:
    """Spread each tower energy (GeV, (25, 25)) uniformly over its 5 x 5 pixels; returns (125, 125).

    The sum over a tower's 25 pixels equals the tower energy.
    """
    per_pixel = np.asarray(towers) / TOWER_PIXELS**2
    return np.repeat(np.repeat(per_pixel, TOWER_PIXELS, axis=0), TOWER_PIXELS, axis=1)


def deposit_image(
    deta: np.ndarray, dphi: np.ndarray, track_pt: np.ndarray, ecal_e: np.ndarray, hcal_e: np.ndarray
) -> np.ndarray:
    """Ideal (no resolution, no threshold) image of particles at offsets ``(deta, dphi)`` from the jet axis.

    Args:
        deta, dphi: (P,) position of each particle relative to the image centre (dphi wrapped to [-pi, pi)).
        track_pt: (P,) GeV put in the Tracks channel (0 for particles without a track).
        ecal_e: (P,) GeV put in the ECAL channel (one pixel).
        hcal_e: (P,) GeV put in the HCAL channel (its 0.087 x 0.087 tower, spread over 5 x 5 pixels).
    Returns:
        float32 (125, 125, 3), channels (Tracks, ECAL, HCAL). Each channel sums to the energy that fell inside
        the window.
    """
    tracks = bin_pixels(deta, dphi, track_pt)
    ecal = bin_pixels(deta, dphi, ecal_e)
    hcal = spread_towers(bin_towers(deta, dphi, hcal_e))
    return np.stack([tracks, ecal, hcal], axis=-1).astype(np.float32)


def smear_cells(
    cells: np.ndarray,
    rng: np.random.Generator,
    stochastic: float,
    constant: float,
    noise: float,
    threshold: float,
) -> np.ndarray:
    """Gaussian calorimeter response applied to the non-empty cells of ``cells`` (GeV, any shape).

    sigma(E) = sqrt(stochastic^2 E + (constant E)^2 + noise^2); results are clipped at 0 and cells below
    ``threshold`` set to 0. Empty cells stay exactly 0 (no pure-noise hits). Draws one normal per non-empty
    cell in C order, so the result is deterministic for a given ``rng`` state.
    """
    out = np.array(cells, dtype=np.float64, copy=True)
    hit = out > 0
    energy = out[hit]
    sigma = np.sqrt(stochastic**2 * energy + (constant * energy) ** 2 + noise**2)
    smeared = np.maximum(energy + sigma * rng.standard_normal(energy.shape), 0.0)
    smeared[smeared < threshold] = 0.0
    out[hit] = smeared
    return out


@dataclass(frozen=True)
class Particles:
    """Final-state visible particles of one event (all arrays (P,)): GeV, pseudorapidity, radians, PDG id."""

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    e: np.ndarray
    pid: np.ndarray
    charge: np.ndarray


def event_image(
    particles: Particles, jet_eta: float, jet_phi: float, detector: DetectorConfig, rng: np.random.Generator
) -> np.ndarray:
    """Detector image (float32 (125, 125, 3), GeV per pixel) of one event centred on ``(jet_eta, jet_phi)``.

    Muons leave only a track; photons and electrons ECAL energy (electrons also a track); every other visible
    particle is a hadron: HCAL energy (and a track when charged). See the module docstring for the response.
    """
    deta = particles.eta - jet_eta
    dphi = wrap_phi(particles.phi - jet_phi)
    apid = np.abs(particles.pid)
    keep_track = rng.random(apid.shape) < detector.track_efficiency
    is_track = (
        (particles.charge != 0)
        & (particles.pt > detector.track_pt_min)
        & (np.abs(particles.eta) < detector.track_eta_max)
        & keep_track
    )
    is_em = (apid == 22) | (apid == 11)
    is_hadron = ~is_em & (apid != MUON_PID) & ~np.isin(apid, INVISIBLE_PIDS)
    tracks = bin_pixels(deta, dphi, np.where(is_track, particles.pt, 0.0))
    ecal = smear_cells(
        bin_pixels(deta, dphi, np.where(is_em, particles.e, 0.0)),
        rng,
        detector.ecal_stochastic,
        detector.ecal_constant,
        detector.ecal_noise,
        detector.ecal_threshold,
    )
    towers = smear_cells(
        bin_towers(deta, dphi, np.where(is_hadron, particles.e, 0.0)),
        rng,
        detector.hcal_stochastic,
        detector.hcal_constant,
        detector.hcal_noise,
        detector.hcal_threshold,
    )
    return np.stack([tracks, ecal, spread_towers(towers)], axis=-1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Generation: one Pythia stream -> blocks of accepted jets
# ----------------------------------------------------------------------------------------------------
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


@contextlib.contextmanager
def _stdout_silenced():
    """Send file descriptor 1 to /dev/null (FastJet's C++ banner ignores Python's sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _jet_kinematics(px, py, pz, e):
    """pT, pseudorapidity, phi, mass (clipped at 0) and E of 4-vectors (numpy arrays, GeV)."""
    pt = np.hypot(px, py)
    eta = np.arcsinh(np.divide(pz, pt, out=np.zeros_like(pz), where=pt > 0))
    phi = np.arctan2(py, px)
    m = np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0.0))
    return pt, eta, phi, m, e


def _flat_record(events) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flatten a ``nextBatch`` array to numpy: particle fields (id, status, px, py, pz, e) and event index."""
    import awkward as ak

    prt = events.prt
    counts = ak.to_numpy(ak.num(prt, axis=1))
    fields = {k: ak.to_numpy(ak.flatten(prt[k], axis=1)) for k in ("id", "status")}
    fields.update({k: ak.to_numpy(ak.flatten(prt.p[k], axis=1)) for k in ("px", "py", "pz", "e")})
    return fields, np.repeat(np.arange(len(counts)), counts)


def _offsets(event: np.ndarray, n_events: int) -> np.ndarray:
    """(n_events + 1,) start offsets of each event in a flat array sorted by ``event``."""
    return np.concatenate([[0], np.cumsum(np.bincount(event, minlength=n_events))]).astype(np.int64)


class EventStream:
    """One seeded Pythia instance plus detector RNG producing :class:`Block` s (the work of one worker)."""

    def __init__(self, config: SimulationConfig, stream: int = 0):
        import fastjet
        import pythia8mc

        self.config = config
        pythia_seed, self.rng = stream_seeds(config.seed, stream)
        self.pythia = pythia8mc.Pythia("", False)
        for line in config.pythia_settings(pythia_seed):
            self.pythia.readString(line)
        with _stdout_silenced():
            if not self.pythia.init():
                raise RuntimeError("Pythia initialisation failed")
        self.jet_definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_r)
        self._charge: dict[int, float] = {}
        self._banner_done = False

    def charges(self, pid: np.ndarray) -> np.ndarray:
        """Electric charge (units of e) of each PDG id, from Pythia's particle table (cached)."""
        unique, inverse = np.unique(pid, return_inverse=True)
        for code in unique.tolist():
            if code not in self._charge:
                self._charge[code] = self.pythia.particleData.charge(code)
        return np.array([self._charge[c] for c in unique.tolist()], dtype=np.float64)[inverse]

    def generate_raw(self, n_events: int):
        """``n_events`` Pythia events as an awkward array (``Pythia.nextBatch``)."""
        return self.pythia.nextBatch(n_events)

    def block(self, index: int) -> Block:
        """Generate, cluster, select and image block ``index`` (``config.block_events`` events)."""
        events = self.generate_raw(self.config.block_events)
        return self.process(events, index)

    def _cluster(self, px, py, pz, e, offsets):
        """anti-kT jets (pT > table_pt_min) of every event as flat numpy arrays sorted by (event, -pT).

        Inputs are flat (P,) particle arrays with (n_events + 1,) ``offsets``; returns ``(owner, [pt, eta,
        phi, m, E])`` with ``owner`` the event index of each jet.
        """
        import awkward as ak
        import fastjet

        flat = ak.zip({"px": px, "py": py, "pz": pz, "E": e})
        vectors = ak.unflatten(flat, np.diff(offsets))
        context = contextlib.nullcontext() if self._banner_done else _stdout_silenced()
        with context:
            jets = fastjet.ClusterSequence(vectors, self.jet_definition).inclusive_jets(min_pt=self.config.table_pt_min)
        self._banner_done = True
        owner = np.repeat(np.arange(len(jets)), ak.to_numpy(ak.num(jets, axis=1)))
        kin = _jet_kinematics(*(ak.to_numpy(ak.flatten(jets[k], axis=1)) for k in ("px", "py", "pz", "E")))
        order = np.lexsort((-kin[0], owner))
        return owner[order], [k[order] for k in kin]

    def process(self, events, index: int) -> Block:
        """Turn a ``nextBatch`` awkward array into the :class:`Block` of its accepted leading jets."""
        cfg = self.config
        n_events = len(events)
        record, event = _flat_record(events)
        apid = np.abs(record["id"])
        visible = (record["status"] > 0) & ~np.isin(apid, INVISIBLE_PIDS)
        hard = record["status"] == -23
        px, py, pz, pe = (record[k][visible] for k in ("px", "py", "pz", "e"))
        p_off, q_off = _offsets(event[visible], n_events), _offsets(event[hard], n_events)
        jet_event, (jpt, jeta, jphi, jm, je) = self._cluster(px, py, pz, pe, p_off)
        pid = record["id"][visible].astype(np.int64)
        ppt, peta, pphi, _, _ = _jet_kinematics(px, py, pz, pe)
        charge = self.charges(pid)
        qid = record["id"][hard].astype(np.int64)
        _, qeta, qphi, _, _ = _jet_kinematics(*(record[k][hard] for k in ("px", "py", "pz", "e")))
        bounds = np.searchsorted(jet_event, np.arange(n_events + 1))
        partons = (qid, qeta, qphi, q_off)
        images, labels, pts, masses, gen, table_rows = [], [], [], [], [], []
        for i, j, label in select_leading_jets(bounds, jpt, jeta, jphi, partons, cfg):
            s = slice(p_off[i], p_off[i + 1])
            particles = Particles(ppt[s], peta[s], pphi[s], pe[s], pid[s], charge[s])
            images.append(event_image(particles, jeta[j], jphi[j], cfg.detector, self.rng))
            labels.append(label)
            pts.append(jpt[j])
            masses.append(jm[j])
            gen.append(index * cfg.block_events + i)
            table_rows.append(np.arange(bounds[i], bounds[i + 1]))
        rows = np.concatenate(table_rows) if table_rows else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(len(table_rows)), [len(r) for r in table_rows]).astype(np.int64)
        table = {
            "pt": jpt[rows],
            "eta": jeta[rows],
            "phi": jphi[rows],
            "m": jm[rows],
            "E": je[rows],
            "owner": owner,
        }
        shape = (len(images), IMAGE_PIXELS, IMAGE_PIXELS, len(CHANNELS))
        return Block(
            index=index,
            n_generated=n_events,
            images=np.stack(images) if images else np.zeros(shape, np.float32),
            label=np.asarray(labels, dtype=np.int8),
            pt=np.asarray(pts, dtype=np.float64),
            m0=np.asarray(masses, dtype=np.float64),
            generated_event=np.asarray(gen, dtype=np.int64),
            table=table,
        )


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


# ----------------------------------------------------------------------------------------------------
# Workers and the deterministic merge
# ----------------------------------------------------------------------------------------------------
def _worker_main(config: SimulationConfig, worker: int, out_queue, stop) -> None:
    """Worker process: generate blocks ``worker, worker + K, worker + 2K, ...`` until told to stop.

    Exits on its own when the parent disappears (killed without cleanup), so no orphan keeps running.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    parent = os.getppid()
    try:
        stream = EventStream(config, stream=worker)
        local = 0
        while not stop.is_set() and os.getppid() == parent:
            item = ("block", stream.block(local * config.workers + worker))
            while not stop.is_set() and os.getppid() == parent:
                try:
                    out_queue.put(item, timeout=1.0)
                    break
                except _queue.Full:
                    continue
            local += 1
    except Exception as err:  # reported to the parent, which raises
        out_queue.put(("error", f"{type(err).__name__}: {err}"))
    finally:
        # do not block at exit flushing a block nobody will read (parent gone or finished)
        out_queue.cancel_join_thread()


@contextlib.contextmanager
def _sigterm_raises_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt (so temp files and workers are cleaned up)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _receive(out_queue, process, worker: int) -> Block:
    """Next block from ``worker``; raises RuntimeError if the worker failed or died."""
    while True:
        try:
            kind, payload = out_queue.get(timeout=1.0)
        except _queue.Empty:
            if not process.is_alive():
                raise RuntimeError(f"simulation worker {worker} died (exit code {process.exitcode})") from None
            continue
        if kind == "error":
            raise RuntimeError(f"simulation worker {worker} failed: {payload}")
        return payload


def iter_blocks(config: SimulationConfig) -> Iterator[Block]:
    """Blocks in global order 0, 1, 2, ... (block ``g`` comes from worker ``g % K``); infinite iterator.

    ``workers == 1`` runs in this process. Otherwise K spawned processes each run an :class:`EventStream`
    seeded from ``(seed, worker)``; each stays at most two blocks ahead (one queued, one in progress).
    Closing the iterator terminates them.
    """
    if config.workers == 1:
        stream = EventStream(config, stream=0)
        index = 0
        while True:
            yield stream.block(index)
            index += 1
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    queues = [ctx.Queue(maxsize=1) for _ in range(config.workers)]
    processes = [
        ctx.Process(target=_worker_main, args=(config, w, queues[w], stop), daemon=True, name=f"simulate-{w}")
        for w in range(config.workers)
    ]
    for process in processes:
        process.start()
    try:
        index = 0
        while True:
            worker = index % config.workers
            yield _receive(queues[worker], processes[worker], worker)
            index += 1
    finally:
        stop.set()
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        for q in queues:
            q.cancel_join_thread()
            q.close()


# ----------------------------------------------------------------------------------------------------
# Selection, progress and writing
# ----------------------------------------------------------------------------------------------------
class Progress:
    """One stderr progress line, redrawn at most twice a second (a plain line every 10 s when not a tty)."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total, self.enabled = total, enabled
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.start = self.last = time.monotonic()
        self.width = 0

    def update(self, kept: int, n_quark: int, n_gluon: int, generated: int, force: bool = False) -> None:
        """Report ``kept`` of ``total`` jets after ``generated`` events."""
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < (0.5 if self.tty else 10.0)):
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = generated / elapsed
        half = self.total // 2
        # the rarer class (usually quarks) sets the pace: extrapolate each class separately
        eta = max(elapsed * (half - c) / c if c else float("inf") for c in (n_quark, n_gluon))
        left = f", ~{eta:.0f}s left" if math.isfinite(eta) else ""
        line = (
            f"simulate: {kept}/{self.total} jets (quark {n_quark}, gluon {n_gluon}) | {generated} events "
            f"| {rate:.1f} events/s | {elapsed:.0f}s elapsed{left}"
        )
        self.width = max(self.width, len(line))
        print(
            ("\r" + line.ljust(self.width)) if self.tty else line,
            end="" if self.tty else "\n",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        """End the progress line."""
        if self.enabled and self.tty:
            print(file=self.stream, flush=True)


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


class SampleWriter:
    """Writes the schema (``X_jets``, ``m0``, ``pt``, ``y``, ``jets/``) to an open h5py file, chunk by chunk."""

    def __init__(self, h5file, config: SimulationConfig):
        n = config.events
        self.file, self.n, self.chunk = h5file, n, min(config.chunk_events, n)
        self.filters = {
            "compression": "gzip",
            "compression_opts": config.gzip_level,
            "shuffle": config.shuffle,
        }
        image_shape = (n, IMAGE_PIXELS, IMAGE_PIXELS, len(CHANNELS))
        self.images = h5file.create_dataset(
            "X_jets", image_shape, dtype="float32", chunks=(self.chunk, *image_shape[1:]), **self.filters
        )
        self.scalars = {k: np.zeros(n, np.float32) for k in ("m0", "pt", "y")}
        self.buffer: list[np.ndarray] = []
        self.rows = 0
        self.table: dict[str, list[np.ndarray]] = {k: [] for k in ("pt", "eta", "phi", "m", "E", "event", "gen")}

    def add(self, record: JetRecord) -> None:
        """Append ``record`` as the next row of ``X_jets``/``m0``/``pt``/``y`` and its event's jets to the table."""
        row = self.rows
        self.buffer.append(record.image())
        self.scalars["m0"][row], self.scalars["pt"][row], self.scalars["y"][row] = (
            record.m0,
            record.pt,
            record.label,
        )
        n_jets = len(record.table["pt"])
        for key in ("pt", "eta", "phi", "m", "E"):
            self.table[key].append(record.table[key])
        self.table["event"].append(np.full(n_jets, row, np.int64))
        self.table["gen"].append(np.full(n_jets, record.generated_event, np.int64))
        self.rows += 1
        if len(self.buffer) == self.chunk or self.rows == self.n:
            self._flush()

    def _flush(self) -> None:
        start = self.rows - len(self.buffer)
        self.images[start : self.rows] = np.stack(self.buffer)
        self.buffer = []

    def finish(self, attrs: dict) -> None:
        """Write scalars, the ``jets/`` table and file attributes."""
        for key, values in self.scalars.items():
            self.file.create_dataset(key, data=values, chunks=(min(self.n, 4096),), **self.filters)
        group = self.file.create_group("jets")
        names = {
            "pt": "pt",
            "eta": "eta",
            "phi": "phi",
            "m": "m",
            "E": "E",
            "event": "event",
            "gen": "generated_event",
        }
        for key, name in names.items():
            data = np.concatenate(self.table[key])
            data = data.astype(np.int64 if key in ("event", "gen") else np.float32)
            group.create_dataset(name, data=data, chunks=(max(1, min(len(data), 65536)),), **self.filters)
        group.attrs["description"] = (
            "all anti-kT jets with pT > table_pt_min of each kept event, sorted by event then decreasing pT; "
            "event = row of X_jets, generated_event = index of the generated Pythia event; GeV, radians"
        )
        for key, value in attrs.items():
            self.file.attrs[key] = value


@dataclass(frozen=True)
class SimulationSummary:
    """What :func:`simulate` did: jets written, events generated, wall time (s), output path."""

    path: Path
    n_jets: int
    n_generated: int
    seconds: float


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


def package_versions() -> dict[str, str]:
    """Versions of the generator stack (``unknown`` if a distribution is not installed)."""
    versions = {}
    for dist in ("pythia8mc", "fastjet", "awkward", "numpy", "h5py", "hep_keras"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def file_attributes(config: SimulationConfig, command: str, n_generated: int) -> dict:
    """HDF5 attributes: generator and versions, every setting (also as JSON), seed, command, date."""
    versions = package_versions()
    pythia_version = versions["pythia8mc"].rsplit(".", 1)[0] if versions["pythia8mc"] != "unknown" else "unknown"
    settings = asdict(config)
    return {
        "generator": f"Pythia {pythia_version} (pythia8mc), hard QCD 2->2, sqrt(s) = {config.ecm:g} GeV",
        "generator_version": pythia_version,
        "pythia8mc_version": versions["pythia8mc"],
        "fastjet_version": versions["fastjet"],
        "awkward_version": versions["awkward"],
        "hep_keras_version": versions["hep_keras"],
        "seed": config.seed,
        "workers": config.workers,
        "command": command,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "settings": json.dumps(settings, sort_keys=True),
        "pythia_settings": json.dumps(
            [
                line if not line.startswith("Random:seed ") else "Random:seed = stream_seeds(seed, worker)"
                for line in config.pythia_settings(0)
            ]
        ),
        "detector": json.dumps(asdict(config.detector), sort_keys=True),
        "jet_algorithm": f"anti-kT R={config.jet_r:g} (FastJet), visible final-state particles",
        "channels": json.dumps(list(CHANNELS)),
        "pixel_size": PIXEL_SIZE,
        "units": "GeV per pixel (Tracks: track pT; ECAL, HCAL: energy); m0, pt in GeV; y 0=quark 1=gluon",
        "n_generated_events": n_generated,
    }


def _check_output(out: Path, overwrite: bool) -> Path:
    """Validate ``out`` before any work; returns the temporary path beside it (created empty)."""
    if out.is_dir():
        raise OutputError(f"{out}: is a directory, expected an .h5 file name")
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: already exists (pass --overwrite to replace it)")
    if not out.parent.is_dir():
        raise OutputError(f"{out}: directory {out.parent} does not exist")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp.touch()
    except OSError as err:
        raise OutputError(f"{out}: cannot write in {out.parent} ({err.strerror or err})") from None
    return tmp


def simulate(
    config: SimulationConfig,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    command: str | None = None,
    progress: bool = True,
) -> SimulationSummary:
    """Generate ``config.events`` balanced quark/gluon jet images and write them to ``out`` atomically.

    The file is written to a temporary file beside ``out`` and renamed at the end; on any failure or
    Ctrl-C the temporary file is removed and ``out`` is untouched. Raises :class:`ConfigError` for invalid
    settings and :class:`OutputError` if ``out`` exists (without ``overwrite``) or cannot be written.
    """
    import h5py

    config.validate()
    out = Path(out)
    tmp = _check_output(out, overwrite)
    command = command if command is not None else shlex.join([sys.executable, *sys.argv])
    start = time.monotonic()
    bar = Progress(config.events, enabled=progress)
    generated = 0

    def report(counts, n_generated):
        nonlocal generated
        generated = n_generated
        bar.update(sum(counts), counts[0], counts[1], n_generated)

    with _sigterm_raises_interrupt():
        blocks = iter_blocks(config)
        try:
            with h5py.File(tmp, "w") as h5file:
                writer = SampleWriter(h5file, config)
                selected = (JetRecord.from_block(b, i) for b, i in select_balanced(blocks, config.events, report))
                for record in interleave_classes(selected, config.seed):
                    writer.add(record)
                blocks.close()
                writer.finish(file_attributes(config, command, generated))
            bar.update(config.events, config.events // 2, config.events // 2, generated, force=True)
            os.replace(tmp, out)
        except OSError as err:
            raise OutputError(f"{out}: cannot write ({err.strerror or err})") from None
        finally:
            bar.close()
            blocks.close()
            tmp.unlink(missing_ok=True)
    return SimulationSummary(out, config.events, generated, time.monotonic() - start)


# ----------------------------------------------------------------------------------------------------
# Observables of a written file (for the provenance tables)
# ----------------------------------------------------------------------------------------------------
def file_observables(path: str | os.PathLike, block: int = 256) -> dict[str, dict[str, np.ndarray]]:
    """Per-jet observables of a schema file, split by class: ``{"all"|"quark"|"gluon": {name: (n,) array}}``.

    Names: ``pt``, ``m0`` (GeV, from the file), ``E_<channel>`` (channel sum in GeV) and ``occ_<channel>``
    (non-zero pixels) for Tracks, ECAL, HCAL. Reads ``X_jets`` in blocks of ``block`` events.
    """
    import h5py

    with h5py.File(path, "r") as f:
        n = f["y"].shape[0]
        obs = {"pt": f["pt"][()].astype(np.float64), "m0": f["m0"][()].astype(np.float64)}
        y = f["y"][()].astype(np.int64)
        sums, occupancy = np.zeros((n, 3)), np.zeros((n, 3))
        for start in range(0, n, block):
            x = f["X_jets"][start : start + block].astype(np.float64)
            sums[start : start + len(x)] = x.sum(axis=(1, 2))
            occupancy[start : start + len(x)] = (x > 0).sum(axis=(1, 2))
    for c, name in enumerate(CHANNELS):
        obs[f"E_{name}"], obs[f"occ_{name}"] = sums[:, c], occupancy[:, c]
    return {
        "all": obs,
        "quark": {k: v[y == 0] for k, v in obs.items()},
        "gluon": {k: v[y == 1] for k, v in obs.items()},
    }


def observables_markdown(path: str | os.PathLike) -> str:
    """Markdown table: mean and 5/50/95 % quantiles of each observable, all jets and per class."""
    groups = file_observables(path)
    lines = [
        "| observable | all: mean | all: 5% / 50% / 95% | quark: mean | gluon: mean |",
        "|:--|--:|--:|--:|--:|",
    ]
    units = {"pt": "GeV", "m0": "GeV"}
    for name, values in groups["all"].items():
        unit = units.get(name, "GeV" if name.startswith("E_") else "pixels")
        q5, q50, q95 = np.percentile(values, [5, 50, 95])
        lines.append(
            f"| {name} [{unit}] | {values.mean():.1f} | {q5:.1f} / {q50:.1f} / {q95:.1f} "
            f"| {groups['quark'][name].mean():.1f} | {groups['gluon'][name].mean():.1f} |"
        )
    return "\n".join(lines)
