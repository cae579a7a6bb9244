"""Throughput of the simulator: Pythia alone vs the full ``simulate`` (cluster, label, image, write).

    python benchmarks/simulate.py --jets 300 --workers 1 2

For each worker count K it runs the full :func:`hep_keras.data.simulate.simulate` to a temporary file, then
lets K spawned processes run only Pythia (same settings and seeds, ``nextBatch``) for the same number of
generated events. Both timings are wall-clock and include process start-up and Pythia initialisation.
Prints a markdown table (events/s = generated Pythia events per second; ratio = full / Pythia only).
Not part of the test run; numbers depend on what else runs on the machine (the load average is printed).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from hep_keras.data.simulate import EventStream, SimulationConfig, simulate


def _pythia_only(config: SimulationConfig, worker: int, n_events: int) -> int:
    """Initialise worker ``worker``'s Pythia and generate ``n_events`` events; returns the number generated."""
    stream = EventStream(config, stream=worker)
    done = 0
    while done < n_events:
        done += len(stream.generate_raw(min(config.block_events, n_events - done)))
    return done


def pythia_rate(config: SimulationConfig, n_events: int) -> float:
    """Events/s of Pythia alone on ``config.workers`` processes (wall clock, start-up included)."""
    per_worker = math.ceil(n_events / config.workers)
    start = time.perf_counter()
    if config.workers == 1:
        total = _pythia_only(config, 0, per_worker)
    else:
        with mp.get_context("spawn").Pool(config.workers) as pool:
            total = sum(pool.starmap(_pythia_only, [(config, w, per_worker) for w in range(config.workers)]))
    return total / (time.perf_counter() - start)


def simulate_rate(config: SimulationConfig) -> tuple[int, float]:
    """(generated events, events/s) of the full simulation writing to a temporary file."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = simulate(config, Path(tmp) / "bench.h5", progress=False, command="benchmark")
    return summary.n_generated, summary.n_generated / summary.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=300, help="jets written by each full run (even)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for workers in args.workers:
        config = SimulationConfig(events=args.jets, seed=args.seed, workers=workers)
        n_generated, full = simulate_rate(config)
        alone = pythia_rate(config, n_generated)
        rows.append((workers, n_generated, alone, full, full / alone))
    print(f"cores: {os.cpu_count()}, load average after the runs: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"jets per run: {args.jets} (balanced), block_events: {SimulationConfig(events=2).block_events}\n")
    print("| workers | generated events | Pythia only (events/s) | full simulate (events/s) | ratio |")
    print("|--:|--:|--:|--:|--:|")
    for workers, n_generated, alone, full, ratio in rows:
        print(f"| {workers} | {n_generated} | {alone:.1f} | {full:.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
