"""Throughput of the jet compressor against the hardware, and of the entropy-coded codecs.

    python benchmarks/compressor_throughput.py [--export saved_models/compressor] [--jets 1048576] [--repeats 3]

1. **Network**: encode+decode jets/s of the exported SavedModel (``encode`` then ``decode`` endpoint, float32)
   at several batch sizes, as exported and inside one XLA-compiled ``tf.function``, beside the theoretical
   limit ``matmul FLOP/s / (2 * MACs per jet)``: MACs counted from the SavedModel's dense kernels, FLOP/s measured
   in the same process with a 2048x2048 float32 ``tf.matmul``. Each repeat measures the matmul and the model
   back to back, so the ratio is fair on a shared machine; the best repeat is reported.
2. **Codecs**: encode and decode jets/s (numpy + rANS, one process) of ``quantized``, ``context`` and of the
   entropy coder alone, on ``--jets`` realistic jets (copies of the shipped sample's events, rotated and
   mirrored per event and smeared per jet, see :func:`realistic_jets`).

Without ``--export`` an untrained default-width JetCompressor is exported to a temporary directory (the cost of
a forward pass does not depend on the weights).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

BATCHES = (4096, 16384, 65536)


def realistic_jets(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` jets (+ event index) from the shipped sample's events, each copy rotated in phi and mirrored in eta per
    event and smeared per jet (pT, m by 5 %, 10 %; eta, phi by 0.05), so that nothing repeats exactly."""
    from hep_keras.data.jets import read_jets
    from hep_keras.data.sample import SAMPLE_PATH

    table = read_jets(SAMPLE_PATH)
    base, event = table.four_vectors(np.float64), table.event
    rng = np.random.default_rng(seed)
    copies = -(-n // len(base))
    out, events = [], []
    for c in range(copies):
        per_event = rng.uniform(size=(event.max() + 1, 2))
        jets = base.copy()
        jets[:, 0] *= np.exp(rng.normal(0, 0.05, len(jets)))
        jets[:, 3] *= np.exp(rng.normal(0, 0.1, len(jets)))
        jets[:, 1] = np.where(per_event[event, 0] < 0.5, -1, 1) * jets[:, 1] + rng.normal(0, 0.05, len(jets))
        jets[:, 2] += 2 * np.pi * per_event[event, 1] + rng.normal(0, 0.05, len(jets))
        jets[:, 2] = np.mod(jets[:, 2] + np.pi, 2 * np.pi) - np.pi
        out.append(jets)
        events.append(event + c * (event.max() + 1))
    return np.concatenate(out)[:n], np.concatenate(events)[:n]


def matmul_flops(size: int = 2048, reps: int = 8) -> float:
    import tensorflow as tf

    a, b = tf.random.normal((size, size)), tf.random.normal((size, size))
    fn = tf.function(tf.matmul)
    fn(a, b).numpy()
    start = time.perf_counter()
    for _ in range(reps):
        c = fn(a, b)
    c.numpy()
    return 2 * size**3 * reps / (time.perf_counter() - start)


def macs_per_jet(loaded) -> int:
    """Multiply-adds of one encode+decode: the sum of the 2-D kernel sizes."""
    return int(sum(np.prod(v.shape) for v in loaded.variables if len(v.shape) == 2))


def model_rate(fn, x: np.ndarray, batch: int) -> float:
    import tensorflow as tf

    batches = [tf.constant(x[i : i + batch]) for i in range(0, len(x) - batch + 1, batch)]
    fn(batches[0]).numpy()
    start = time.perf_counter()
    for b in batches:
        fn(b).numpy()
    return len(batches) * batch / (time.perf_counter() - start)


def network(export: Path | None, n: int, repeats: int) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        saved = export / "saved_model" if export else untrained_export(Path(tmp))
        loaded = tf.saved_model.load(str(saved))
    macs = macs_per_jet(loaded)
    x, _ = realistic_jets(n)
    x = x.astype(np.float32)
    variants = {
        "SavedModel encode, decode": lambda b: loaded.decode(loaded.encode(b)),
        "XLA tf.function(encode→decode)": tf.function(lambda b: loaded.decode(loaded.encode(b)), jit_compile=True),
    }
    print(f"MACs per jet (encode + decode): {macs}")
    print("| variant | batch | jets/s | matmul GFLOP/s (same repeat) | limit jets/s | fraction of limit |")
    print("|---|---|---|---|---|---|")
    best = (0.0, "")
    for name, fn in variants.items():
        for batch in BATCHES:
            results = []
            for _ in range(repeats):
                flops = matmul_flops()
                rate = model_rate(fn, x, batch)
                results.append((rate / (flops / (2 * macs)), rate, flops))
            frac, rate, flops = max(results)
            limit = flops / (2 * macs)
            print(f"| {name} | {batch} | {rate:.3g} | {flops / 1e9:.0f} | {limit:.3g} | {frac:.0%} |")
            best = max(best, (frac, f"{name}, batch {batch}"))
    print(f"\nbest: {best[1]} at {best[0]:.0%} of the limit (target 30 %)")


def untrained_export(tmp: Path) -> Path:
    import keras
    import tensorflow as tf

    from hep_keras.models.compressor import JetCompressor

    model = JetCompressor(widths=[200, 100, 50], activation="gelu")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("encode", model.encode, input_signature=[tf.TensorSpec((None, 4), tf.float32)])
    archive.add_endpoint("decode", model.decode, input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    archive.write_out(str(tmp / "saved_model"), verbose=False)
    return tmp / "saved_model"


def codecs(n: int, repeats: int) -> None:
    from hep_keras.codecs import Bound, make_codec
    from hep_keras.codecs.context import event_structure
    from hep_keras.codecs.entropy import decode_streams, encode_streams

    jets, event = realistic_jets(n)
    print(f"\ncodecs on {len(jets)} jets (one process; numpy + zstd / rANS)")
    print("| codec | bound | encode jets/s | decode jets/s |")
    print("|---|---|---|---|")
    for eps in (1e-3, 1e-2, 5e-2):
        for name in ("quantized", "context"):
            codec, bound = make_codec(name), Bound(eps, eps)
            best = [0.0, 0.0]
            for _ in range(repeats):
                start = time.perf_counter()
                encoded = codec.encode(jets, event, bound)
                mid = time.perf_counter()
                codec.decode(encoded, event)
                end = time.perf_counter()
                best = [max(best[0], len(jets) / (mid - start)), max(best[1], len(jets) / (end - mid))]
            print(f"| {name} | {eps:g} | {best[0]:.3g} | {best[1]:.3g} |")
    rank, _ = event_structure(event)
    streams = [np.rint(jets[:, 1] / 0.0196).astype(np.int64), rank, np.rint(np.log(jets[:, 0]) / 0.0196).astype(int)]
    start = time.perf_counter()
    data = encode_streams(streams)
    mid = time.perf_counter()
    decode_streams(data)
    end = time.perf_counter()
    print(f"| rANS alone (3 streams of n) | - | {len(jets) / (mid - start):.3g} | {len(jets) / (end - mid):.3g} |")
    print("(sizes: benchmarks/compressor_rate_distortion.py; these copies are synthetic and zstd finds their repeats)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, help="export directory of `fit compressor`")
    parser.add_argument("--jets", type=int, default=1 << 20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-network", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"load: {os.getloadavg()} on {os.cpu_count()} cores")
    if not args.skip_network:
        network(args.export, args.jets, args.repeats)
    codecs(args.jets, args.repeats)


if __name__ == "__main__":
    main()
