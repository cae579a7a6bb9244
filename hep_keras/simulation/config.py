"""Settings of the simulator: :class:`SimulationConfig`, :class:`DetectorConfig`, image constants and seeds.

Everything that determines a generated file besides the code version. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from hep_keras.errors import ConfigError

IMAGE_PIXELS = 125
"""Image height = width in pixels."""
TOWER_PIXELS = 5
"""HCAL tower edge in pixels (0.087 = 5 x 0.0174)."""
INVISIBLE_PIDS = (12, 14, 16)
"""|PDG id| of particles that leave nothing in the detector (neutrinos)."""
MUON_PID = 13
_MAX_PYTHIA_SEED = 900_000_000


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
