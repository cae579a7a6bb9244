"""Input-pipeline benchmark: ``jet_images`` throughput and memory vs a raw sequential h5py read.

    python benchmarks/input_pipeline.py [--sizes 20000 40000] [--chunk-events 100] [--cases raw all ...]

Builds ``benchmarks/data/bench_<N>.h5`` (git-ignored; reused when present) by replicating a source file (the
shipped sample ``hep_keras/data/sample/qg_sample.h5`` if present, else synthetic sparse 125x125x3 images),
gzip-compressed in chunks of ``--chunk-events`` events along the event axis, like the real CMS file. Every case
runs in a fresh subprocess, which reports events/s (iteration only, after imports and dataset construction),
events per CPU-second (user + system time of all its threads: the fair comparison on a shared machine) and its
peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``). Prints a Markdown table.

Cases:
  raw        h5py, one chunk row at a time: ``X_jets[i:i+chunk]`` (read + decompress), nothing else.
  all        ``jet_images(f, split="all", batch_size=256)`` iterated once (default settings).
  all-par1   the same with ``num_parallel_reads=1`` (one reader thread).
  train      ``jet_images(f, split="train", batch_size=256)``: 80 % split, block + window shuffling.
  shuffled   ``jet_images(f, split="all", shuffle=True)``: every event, shuffled (the cost of shuffling alone;
             ``train`` also decompresses the 20 % of events that belong to val/test, so it is capped at 0.8x).
  tfds-all, tfds-train   ``tfds_images("tfds:quark_gluon@benchmarks/data/tfds_<N>", ...)`` — the TFDS copy of
             the same file (built once with ``prepare_quark_gluon``; pure graph, sparse storage). The TFDS
             ``train`` split stores only its own events, so it is not capped at 0.8x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
CASES = ("raw", "all", "all-par1", "train", "shuffled", "tfds-all", "tfds-train")
IMAGE = (125, 125, 3)


# ------------------------------------------------------------------------------------------------ files
def _source_events() -> dict[str, np.ndarray]:
    """Events to replicate: the shipped sample, or 512 synthetic sparse events (~2 % occupancy, GeV)."""
    try:
        from hep_keras.data.sample import SAMPLE_PATH

        if Path(SAMPLE_PATH).exists():
            with h5py.File(SAMPLE_PATH) as handle:
                return {key: handle[key][()] for key in ("X_jets", "m0", "pt", "y")}
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    n = 512
    mask = rng.random((n, *IMAGE)) < 0.02
    images = np.where(mask, rng.exponential(2.0, (n, *IMAGE)), 0.0).astype(np.float32)
    return {
        "X_jets": images,
        "m0": rng.uniform(0, 50, n).astype(np.float32),
        "pt": rng.uniform(70, 200, n).astype(np.float32),
        "y": (np.arange(n) % 2).astype(np.float32),
    }


def build_file(n_events: int, chunk_events: int) -> Path:
    """``benchmarks/data/bench_<N>_c<chunk>.h5``: the source replicated to ``n_events``, gzip level 4."""
    path = DATA / f"bench_{n_events}_c{chunk_events}.h5"
    if path.exists():
        return path
    DATA.mkdir(exist_ok=True)
    source = _source_events()
    n_source = len(source["y"])
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as handle:
        for key, values in source.items():
            handle.create_dataset(
                key,
                shape=(n_events, *values.shape[1:]),
                dtype=values.dtype,
                chunks=(chunk_events, *values.shape[1:]),
                compression="gzip",
                compression_opts=4,
            )
        for start in range(0, n_events, chunk_events):
            rows = np.arange(start, min(start + chunk_events, n_events)) % n_source
            for key, values in source.items():
                handle[key][start : start + len(rows)] = values[rows]
    tmp.rename(path)
    return path


def tfds_dir(path: Path) -> Path:
    """TFDS data directory holding ``quark_gluon`` built from ``path`` (built on first use)."""
    out = DATA / f"tfds_{path.stem}"
    if not (out / "quark_gluon").exists():
        from hep_keras.data.tfds import prepare_quark_gluon

        prepare_quark_gluon(path, out)
    return out


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20


# ------------------------------------------------------------------------------------------------ cases
def _peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM: getrusage's ru_maxrss survives exec and reports the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (robust to other load on the machine)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_case(case: str, path: Path) -> dict:
    """Run one case in this process; returns events, seconds, events/s and peak RSS (MiB)."""
    if case == "raw":
        with h5py.File(path, "r", rdcc_nbytes=64 * 2**20) as handle:
            dset = handle["X_jets"]
            step = dset.chunks[0]
            rss_before = _peak_rss_mb()
            start, cpu, events = time.perf_counter(), _cpu_seconds(), 0
            for first in range(0, dset.shape[0], step):
                events += len(dset[first : first + step])
            seconds = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from hep_keras.data import jet_images

        split = "train" if case.endswith("train") else "all"
        if case.startswith("tfds"):
            from hep_keras.data.tfds import tfds_images

            ds = tfds_images(f"tfds:quark_gluon@{tfds_dir(path)}", split, batch_size=256)
        else:
            options = {"num_parallel_reads": 1 if case == "all-par1" else None}  # None = AUTOTUNE
            shuffle = True if case == "shuffled" else None
            ds = jet_images(path, split=split, batch_size=256, shuffle=shuffle, **options)
        rss_before = _peak_rss_mb()
        start, cpu, events = time.perf_counter(), _cpu_seconds(), 0
        for batch in ds:
            events += int(batch.shape[0])
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - cpu
    return {
        "case": case,
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "events_per_cpu_s": events / cpu,
        "load": os.getloadavg()[0],
        "rss_before_mb": rss_before,
        "peak_rss_mb": _peak_rss_mb(),
    }


def measure(case: str, path: Path) -> dict:
    """Run ``case`` in a fresh interpreter (clean peak-RSS) and return its result."""
    out = subprocess.run(
        [sys.executable, __file__, "--run-case", case, "--file", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: list[dict]) -> str:
    """Markdown table; ratio = events/s relative to the raw read of the same file."""
    lines = [
        "| events | case | events/s (wall) | × raw (wall) | events / CPU-s | × raw (CPU) | MB/s decoded "
        "| peak RSS (MiB) | RSS at start (MiB) | load avg |",
        "|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    raw = {r["n"]: r["events_per_s"] for r in results if r["case"] == "raw"}
    raw_cpu = {r["n"]: r["events_per_cpu_s"] for r in results if r["case"] == "raw"}
    event_mb = np.prod(IMAGE) * 4 / 1e6
    for r in results:
        ratio = r["events_per_s"] / raw[r["n"]] if r["n"] in raw else float("nan")
        ratio_cpu = r["events_per_cpu_s"] / raw_cpu[r["n"]] if r["n"] in raw_cpu else float("nan")
        lines.append(
            f"| {r['n']} | {r['case']} | {r['events_per_s']:.0f} | {ratio:.2f} | {r['events_per_cpu_s']:.0f} | "
            f"{ratio_cpu:.2f} | {r['events_per_s'] * event_mb:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['rss_before_mb']:.0f} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 40_000])
    parser.add_argument("--chunk-events", type=int, default=100)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--run-case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_case:
        print(json.dumps(run_case(args.run_case, args.file)))
        return
    results = []
    for n_events in args.sizes:
        start = time.perf_counter()
        path = build_file(n_events, args.chunk_events)
        size_mb = path.stat().st_size / 2**20
        print(f"{path.name}: {size_mb:.0f} MiB on disk ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        if any(case.startswith("tfds") for case in args.cases):
            start = time.perf_counter()
            print(
                f"TFDS copy: {disk_mb(tfds_dir(path)):.0f} MiB on disk vs HDF5 {size_mb:.0f} MiB "
                f"({time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
            )
        for case in args.cases:
            result = {"n": n_events, **measure(case, path)}
            print(f"  {case}: {result['events_per_s']:.0f} events/s", file=sys.stderr)
            results.append(result)
    print(f"cpu cores: {os.cpu_count()}, chunk = {args.chunk_events} events, gzip level 4, batch 256\n")
    print(table(results))


if __name__ == "__main__":
    main()
