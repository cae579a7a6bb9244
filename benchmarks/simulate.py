"""Throughput of the simulator: Pythia alone vs the full ``simulate`` (cluster, label, image, write).

    python benchmarks/simulate.py --jets 300 --workers 1 2

For each worker count K it runs the full :func:`hep_keras.simulation.simulate` to a temporary file, then
lets K spawned processes run only Pythia (same settings and seeds, ``nextBatch``) for the same number of
generated events. Both timings are wall-clock and include process start-up and Pythia initialisation.
Prints a markdown table: wall-clock events/s (generated Pythia events per second) and CPU seconds per 1000
events summed over all processes (this one and its children). The CPU ratio (Pythia-only CPU / full CPU) is
what the throughput target refers to on a machine with the cores to itself; the wall-clock ratio is only
meaningful on an idle machine (the load average is printed). Not part of the test run.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

from hep_keras.simulation import EventStream, SimulationConfig, simulate


def _pythia_only(config: SimulationConfig, worker: int, n_events: int) -> int:
    """Initialise worker ``worker``'s Pythia and generate ``n_events`` events; returns the number generated."""
    stream = EventStream(config, stream=worker)
    done = 0
    while done < n_events:
        done += len(stream.generate_raw(min(config.block_events, n_events - done)))
    return done


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished (reaped) children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pythia_rate(config: SimulationConfig, n_events: int) -> tuple[float, float]:
    """(events/s, CPU s per event) of Pythia alone on ``config.workers`` processes, start-up included."""
    per_worker = math.ceil(n_events / config.workers)
    cpu, start = _cpu_seconds(), time.perf_counter()
    if config.workers == 1:
        total = _pythia_only(config, 0, per_worker)
    else:
        with mp.get_context("spawn").Pool(config.workers) as pool:
            total = sum(pool.starmap(_pythia_only, [(config, w, per_worker) for w in range(config.workers)]))
            pool.close()
            pool.join()
    return total / (time.perf_counter() - start), (_cpu_seconds() - cpu) / total


def simulate_rate(config: SimulationConfig) -> tuple[int, float, float]:
    """(generated events, events/s, CPU s per event) of the full simulation writing to a temporary file."""
    cpu = _cpu_seconds()
    with tempfile.TemporaryDirectory() as tmp:
        summary = simulate(config, Path(tmp) / "bench.h5", progress=False, command="benchmark")
    n = summary.n_generated
    return n, n / summary.seconds, (_cpu_seconds() - cpu) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=300, help="jets written by each full run (even)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        config = SimulationConfig(events=args.jets, seed=args.seed, workers=workers)
        n_generated, full, full_cpu = simulate_rate(config)
        alone, alone_cpu = pythia_rate(config, n_generated)
        rows.append((workers, n_generated, alone, full, alone_cpu, full_cpu))
    print(f"cores: {os.cpu_count()}, load average after the runs: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"jets per run: {args.jets} (balanced), block_events: {SimulationConfig(events=2).block_events}\n")
    print(
        "| workers | generated events | Pythia only (events/s) | full simulate (events/s) | wall ratio "
        "| Pythia only (CPU s / 1000 ev) | full (CPU s / 1000 ev) | CPU ratio |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|")
    for workers, n, alone, full, alone_cpu, full_cpu in rows:
        print(
            f"| {workers} | {n} | {alone:.1f} | {full:.1f} | {full / alone:.2f} "
            f"| {1000 * alone_cpu:.1f} | {1000 * full_cpu:.1f} | {alone_cpu / full_cpu:.2f} |"
        )


if __name__ == "__main__":
    main()
