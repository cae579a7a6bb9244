"""Compressor benchmark: residual goals on held-out generated jets, error-bound cost, SavedModel throughput.

    python benchmarks/compressor_jets.py /tmp/jets_train.h5 --events 7000 --seed 1   # training jets
    python benchmarks/compressor_jets.py /tmp/jets_test.h5 --events 5000 --seed 2    # held-out jets
    python benchmarks/compressor.py --train /tmp/jets_train.h5 --test /tmp/jets_test.h5 \
        --work-dir /tmp/compressor_bench [--set epochs=150 ...] [--sweep]

Trains ``fit compressor`` on ``--train`` (unless ``WORK/export`` exists), then on ``--test`` (different Pythia
seed) measures through the exported SavedModel only:

* sigma of the relative residual of pT and m, RMS of the absolute residual of eta and phi (goal 0.01, 0.05,
  0.005, 0.005), with the latent stored as float32 and as float16;
* the bytes per jet of the compressed file with ``--max-rel-error`` 0.01 / 0.05 (every jet within the bound);
* encode+decode throughput in jets/s on ONE core (a subprocess with TF intra/inter-op threads = 1, batches of
  65536); ``--sweep`` adds the throughput of narrower (untrained) networks of the same shape.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

GOALS = {"pt": 0.01, "eta": 0.005, "phi": 0.005, "m": 0.05}
THROUGHPUT_CODE = r"""
import os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
loaded = tf.saved_model.load(sys.argv[1])
batch, n = int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
x = np.stack([30 + rng.exponential(50, n), rng.uniform(-2.5, 2.5, n), rng.uniform(-3.1, 3.1, n),
              rng.uniform(1, 30, n)], 1).astype(np.float32)
batches = [tf.constant(x[i:i + batch]) for i in range(0, n, batch)]
loaded.decode(loaded.encode(batches[0]))
best = 0.0
for _ in range(3):
    t0 = time.perf_counter()
    for b in batches:
        loaded.decode(loaded.encode(b)).numpy()
    best = max(best, n / (time.perf_counter() - t0))
print(best)
"""


def train(train_path: str, work: Path, sets: list[str]) -> Path:
    """``fit compressor`` on ``train_path`` (90 % train / 10 % val) unless ``work/export`` exists."""
    from hep_keras.commands.fit import build_parser, config_from_args
    from hep_keras.training.loop import fit_model
    from hep_keras.training.recipes import get_recipe

    export = work / "export"
    if export.exists():
        return export
    argv = ["compressor", "--data", train_path, "--set", "fractions=[0.9, 0.1, 0.0]"]
    for item in sets:
        argv += ["--set", item]
    config = config_from_args(build_parser().parse_args(argv), get_recipe("compressor"))
    fit_model("compressor", config, work / "run", export, overwrite=True, verbose=2)
    return export


def residual_table(export: Path, test_path: str) -> dict:
    """Residual metrics through the SavedModel with a float32 and a float16 latent."""
    from hep_keras.data.jets import read_jets
    from hep_keras.evaluation.jet_residuals import residual_metrics
    from hep_keras.export import load_saved_model

    loaded, _ = load_saved_model(export)
    jets = read_jets(test_path).four_vectors(np.float64)
    x = jets.astype(np.float32)
    out = {"n_test_jets": len(jets)}
    for dtype in ("float32", "float16"):
        z = loaded.encode(x).numpy().astype(dtype).astype(np.float32)
        out[dtype] = residual_metrics(jets, loaded.decode(z).numpy().astype(np.float64))
    return out


def bound_cost(export: Path, test_path: str, bound: float) -> dict:
    """Bytes per jet of the compressed file with ``--max-rel-error bound`` and the largest violations."""
    from hep_keras.data.jet_codec import compress, read_compressed, restored_table, write_compressed
    from hep_keras.data.jets import read_jets
    from hep_keras.export import load_saved_model

    loaded, meta = load_saved_model(export)
    table = read_jets(test_path)
    enc, dec = (lambda x: loaded.encode(x).numpy()), (lambda z: loaded.decode(z).numpy())
    data = compress(table, enc, dec, latent_dtype=meta.get("latent_dtype", "float32"), max_rel_error=bound)
    with tempfile.TemporaryDirectory() as tmp:
        size = write_compressed(Path(tmp) / "c.h5", data)
        restored = restored_table(read_compressed(Path(tmp) / "c.h5"), dec)
    dphi = np.mod(restored.phi - table.phi + np.pi, 2 * np.pi) - np.pi
    worst = max(
        float(np.max(np.abs(restored.pt / table.pt - 1))),
        float(np.max(np.abs(restored.m - table.m) / np.maximum(table.m, 1e-30))),
        float(np.max(np.abs(restored.eta - table.eta))),
        float(np.max(np.abs(dphi))),
    )
    corrected = {name: float(np.mean(q != 0)) for name, (q, _) in data.corrections.items()}
    return {
        "bound": bound,
        "bytes_per_jet": size / len(table),
        "exact_fraction": len(data.exact_index) / len(table),
        "corrected_fraction": corrected,
        "worst_violation_ratio": worst / bound,
    }


def throughput(saved_model: Path, batch: int = 65536, n: int = 524288) -> float:
    """encode+decode jets/s through the SavedModel in a subprocess pinned to one TF thread."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", THROUGHPUT_CODE, str(saved_model), str(batch), str(n)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def sweep(work: Path) -> dict[str, float]:
    """Throughput of untrained exports of narrower widths (the cost is independent of the weights)."""
    import keras
    import tensorflow as tf

    from hep_keras.models.compressor import JetCompressor

    out = {}
    for widths in ([200, 100, 50], [100, 50, 25], [64, 32, 16], [32, 16]):
        model = JetCompressor(widths=widths)
        path = work / f"sweep_{'-'.join(map(str, widths))}"
        if not path.exists():
            archive = keras.export.ExportArchive()
            archive.track(model)
            archive.add_endpoint("encode", model.encode, input_signature=[tf.TensorSpec((None, 4), tf.float32)])
            archive.add_endpoint("decode", model.decode, input_signature=[tf.TensorSpec((None, 3), tf.float32)])
            archive.write_out(str(path), verbose=False)
        out["4-" + "-".join(map(str, widths)) + "-3"] = throughput(path)
    return out


def print_table(results: dict) -> None:
    res = results["residuals"]
    print(f"\nheld-out jets: {res['n_test_jets']}")
    print("| variable | measure | goal | float32 latent | float16 latent | 68% half-width | W1 | met |")
    print("|---|---|---|---|---|---|---|---|")
    for var in ("pt", "eta", "phi", "m"):
        key = "std" if var in ("pt", "m") else "rms"
        a, b = res["float32"][var], res["float16"][var]
        kind = "σ rel" if var in ("pt", "m") else "RMS abs"
        met = "yes" if a[key] <= GOALS[var] else "no"
        print(
            f"| {var} | {kind} | {GOALS[var]} | {a[key]:.4f} | {b[key]:.4f} | {a['half_width_68']:.4f} "
            f"| {a['w1']:.3g} | {met} |"
        )
    print("\n| --max-rel-error | bytes/jet (raw 16) | jets stored exactly | corrected pt/eta/phi/m | worst/bound |")
    print("|---|---|---|---|---|")
    for b in results["bounds"]:
        frac = "/".join(f"{b['corrected_fraction'][v]:.2f}" for v in ("pt", "eta", "phi", "m"))
        print(
            f"| {b['bound']} | {b['bytes_per_jet']:.2f} | {b['exact_fraction']:.4f} | {frac} "
            f"| {b['worst_violation_ratio']:.3f} |"
        )
    print(f"\nthroughput (1 thread, batch 65536, encode+decode): {results['throughput']:.3g} jets/s")
    for name, rate in results.get("sweep", {}).items():
        print(f"  {name}: {rate:.3g} jets/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--work-dir", default="/tmp/compressor_bench")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sweep", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    export = train(args.train, work, args.set)
    results = {
        "residuals": residual_table(export, args.test),
        "bounds": [bound_cost(export, args.test, b) for b in (0.01, 0.05)],
        "throughput": throughput(export / "saved_model"),
    }
    if args.sweep:
        results["sweep"] = sweep(work)
    (work / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    print_table(results)


if __name__ == "__main__":
    main()
