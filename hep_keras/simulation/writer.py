"""Writing a sample: :func:`simulate` (atomic output), :class:`SampleWriter`, file attributes, progress line,
and the observables of a written file (:func:`file_observables`, :func:`observables_markdown`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from hep_keras.errors import OutputError
from hep_keras.io import atomic_file, check_output_file
from hep_keras.physics import CHANNELS, PIXEL_SIZE
from hep_keras.simulation.config import IMAGE_PIXELS, SimulationConfig
from hep_keras.simulation.generator import _sigterm_raises_interrupt, iter_blocks
from hep_keras.simulation.jets import JetRecord, interleave_classes, select_balanced


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
    check_output_file(out, overwrite)
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
            with atomic_file(out) as tmp, h5py.File(tmp, "w") as h5file:
                writer = SampleWriter(h5file, config)
                selected = (JetRecord.from_block(b, i) for b, i in select_balanced(blocks, config.events, report))
                for record in interleave_classes(selected, config.seed):
                    writer.add(record)
                blocks.close()
                writer.finish(file_attributes(config, command, generated))
            bar.update(config.events, config.events // 2, config.events // 2, generated, force=True)
        except OSError as err:
            raise OutputError(f"{out}: cannot write ({err.strerror or err})") from None
        finally:
            bar.close()
            blocks.close()
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
