"""``python -m hep_keras.simulate``: generate quark/gluon jet images (Pythia8 + FastJet + detector model).

Example::

    python -m hep_keras.simulate --events 2000 --out qg.h5 --seed 1 --workers 2

Writes ``X_jets`` (N, 125, 125, 3) GeV per pixel (Tracks, ECAL, HCAL), ``m0``, ``pt``, ``y`` and a ``jets/``
table; see :mod:`hep_keras.simulation` and ``docs/simulation.md``. Never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from hep_keras.simulation import SimulationConfig, simulate


def build_parser() -> argparse.ArgumentParser:
    """The command-line options (defaults are those of :class:`SimulationConfig`)."""
    d = SimulationConfig(events=2)
    parser = argparse.ArgumentParser(
        prog="python -m hep_keras.simulate",
        description="Generate balanced quark/gluon jet images in the CMS quark-gluon HDF5 schema.",
    )
    parser.add_argument("--events", type=int, required=True, help="jets to write, even: N/2 quark + N/2 gluon")
    parser.add_argument("--out", required=True, help="output .h5 file (written atomically)")
    parser.add_argument("--seed", type=int, default=d.seed, help="master seed (default %(default)s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="worker processes; output is identical for the same seed and workers (default %(default)s)",
    )
    parser.add_argument(
        "--pt-min", type=float, default=d.pt_min, help="min pT-hat and jet pT, GeV (default %(default)s)"
    )
    parser.add_argument(
        "--pt-max", type=float, default=d.pt_max, help="max pT-hat and jet pT, GeV (default %(default)s)"
    )
    parser.add_argument("--eta-max", type=float, default=d.eta_max, help="max |eta| of the jet (default %(default)s)")
    parser.add_argument(
        "--chunk-events",
        type=int,
        default=d.chunk_events,
        help="events per HDF5 chunk of X_jets (default %(default)s)",
    )
    parser.add_argument("--gzip-level", type=int, default=d.gzip_level, help="gzip level 0-9 (default %(default)s)")
    parser.add_argument("--shuffle", action="store_true", help="apply the HDF5 shuffle filter before gzip")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress line on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the simulation, print a one-line summary; errors are raised as HepKerasError."""
    args = build_parser().parse_args(argv)
    config = SimulationConfig(
        events=args.events,
        seed=args.seed,
        workers=args.workers,
        pt_min=args.pt_min,
        pt_max=args.pt_max,
        eta_max=args.eta_max,
        chunk_events=args.chunk_events,
        gzip_level=args.gzip_level,
        shuffle=args.shuffle,
    )
    config.validate()
    command = shlex.join(["python", "-m", "hep_keras.simulate", *(sys.argv[1:] if argv is None else argv)])
    summary = simulate(config, args.out, overwrite=args.overwrite, command=command, progress=not args.quiet)
    print(
        f"wrote {summary.path}: {summary.n_jets} jets from {summary.n_generated} events "
        f"in {summary.seconds:.1f}s ({summary.n_generated / max(summary.seconds, 1e-9):.1f} events/s)"
    )
    return 0
