"""Quark/gluon jet images from Pythia8 + FastJet + a simple CMS-like detector, written in the CMS file schema.

Dataset card of the generator (details and validation in ``docs/simulation.md``).

Process
    Pythia8 (``pythia8mc``) hard-QCD 2 -> 2 scattering (``HardQCD:all = on``) at sqrt(s) = 13 TeV with the
    default Monash tune, multi-parton interactions and showers on, no pile-up; ``PhaseSpace:pTHatMin/Max`` =
    ``pt_min``/``pt_max`` (70-400 GeV by default); unstable particles with c*tau0 > 10 mm are kept stable (the
    usual LHC setting).

Jets and labels
    Final-state visible particles (everything with status > 0 except neutrinos) are clustered with anti-kT,
    R = 0.4 (FastJet). The leading jet must have ``pt_min <= pT <= pt_max`` and ``|eta| < eta_max`` (1.4) and
    lie within Delta R < R of one of the two outgoing hard-process partons (Pythia status -23); it is labelled
    quark (``y = 0``, any quark flavour, b and c included) or gluon (``y = 1``). Unmatched events are dropped.
    One image per event (the leading jet). ``m0`` and ``pt`` are the particle-level jet mass and pT (GeV).

Balance
    The first ``N/2`` quark and the first ``N/2`` gluon jets in generation order are kept, so the output is
    balanced; N must be even. Rows come in pairs (the k-th quark and the k-th gluon jet, in a seeded random
    order), so every prefix of 2k rows is balanced too.

Detector approximation
    A 125 x 125 window of ECAL-crystal pixels (Delta eta = Delta phi = 0.0174) centred on the jet axis, rows =
    eta, columns = phi, GeV per pixel:

    * Tracks: pT of charged particles with pT > 0.5 GeV and |eta| < 2.5, each kept with 90 % probability.
    * ECAL: energy of photons and electrons, per crystal smeared by 2.8 %/sqrt(E) (+) 0.3 % (+) 40 MeV noise,
      zeroed below 0.1 GeV.
    * HCAL: energy of hadrons (charged and neutral) summed in 0.087 x 0.087 towers (5 x 5 pixels), smeared by
      100 %/sqrt(E) (+) 5 %, zeroed below 1 GeV, and spread uniformly over the tower's 25 pixels (so the
      channel sum equals the smeared tower energy).

    Energy falling outside the window is dropped. No pile-up, no fake tracks, no noise in empty cells.

Output (:func:`simulate`)
    ``X_jets`` float32 (N, 125, 125, 3) (Tracks, ECAL, HCAL), ``m0``, ``pt``, ``y`` float32 (N,), gzip-chunked
    along axis 0, plus a group ``jets/`` with float32 ``pt``, ``eta``, ``phi``, ``m``, ``E`` and int64
    ``event`` (row of ``X_jets`` of the event the jet belongs to) and ``generated_event`` (index of the
    generated Pythia event) for every anti-kT jet with pT > 20 GeV of each kept event. File attributes record
    the generator and package versions, every setting, the seed and the command line. The file is written to a
    temporary name and renamed at the end, so ``out`` is never half-written.

Determinism
    Worker ``w`` runs its own Pythia and detector RNG seeded from ``(seed, w)`` (:func:`stream_seeds`); blocks
    of ``block_events`` generated events are merged in a fixed global order. The same ``(seed, workers,
    block_events)`` gives bit-identical datasets (only the ``created`` and ``command`` attributes differ);
    another worker count gives a different, equally valid sample. With one worker the datasets do not depend
    on ``block_events``.

Modules (imports point down the list): :mod:`~hep_keras.simulation.config` (settings, constants, seeds),
:mod:`~hep_keras.simulation.detector` (particles -> image, numpy only), :mod:`~hep_keras.simulation.jets`
(clustering, selection, matching, class balance), :mod:`~hep_keras.simulation.generator` (Pythia event
stream, worker processes), :mod:`~hep_keras.simulation.writer` (HDF5 output, :func:`simulate`, observables
of a written file). Pythia8, FastJet and awkward are imported lazily; TensorFlow is never imported.
"""

from hep_keras.physics import CHANNELS, PIXEL_SIZE
from hep_keras.simulation.config import (
    IMAGE_PIXELS,
    INVISIBLE_PIDS,
    MUON_PID,
    TOWER_PIXELS,
    DetectorConfig,
    SimulationConfig,
    stream_seeds,
)
from hep_keras.simulation.detector import (
    Particles,
    bin_pixels,
    bin_towers,
    deposit_image,
    event_image,
    pixel_indices,
    smear_cells,
    spread_towers,
)
from hep_keras.simulation.generator import EventStream, iter_blocks
from hep_keras.simulation.jets import (
    Block,
    JetRecord,
    cluster_jets,
    interleave_classes,
    select_balanced,
    select_leading_jets,
)
from hep_keras.simulation.writer import (
    Progress,
    SampleWriter,
    SimulationSummary,
    file_attributes,
    file_observables,
    observables_markdown,
    package_versions,
    simulate,
)

__all__ = [
    "CHANNELS",
    "IMAGE_PIXELS",
    "INVISIBLE_PIDS",
    "MUON_PID",
    "PIXEL_SIZE",
    "TOWER_PIXELS",
    "Block",
    "DetectorConfig",
    "EventStream",
    "JetRecord",
    "Particles",
    "Progress",
    "SampleWriter",
    "SimulationConfig",
    "SimulationSummary",
    "bin_pixels",
    "bin_towers",
    "cluster_jets",
    "deposit_image",
    "event_image",
    "file_attributes",
    "file_observables",
    "interleave_classes",
    "iter_blocks",
    "observables_markdown",
    "package_versions",
    "pixel_indices",
    "select_balanced",
    "select_leading_jets",
    "simulate",
    "smear_cells",
    "spread_towers",
    "stream_seeds",
]
