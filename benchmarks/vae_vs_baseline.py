"""Our ``JetImageVAE`` vs the reference notebook VAE users start from, at the same wall-clock budget.

    python benchmarks/vae_vs_baseline.py --data benchmarks/data/qg_20k.h5 --budget-seconds 600
    python benchmarks/vae_vs_baseline.py --data SAMPLE --events-limit 4000 --budget-seconds 60   # smoke run

``--data SAMPLE`` is the shipped 4,000-jet sample. Make a 20k-jet file with (git-ignored directory)::

    python -m hep_keras.simulate --events 20000 --seed 7 --workers 2 --out benchmarks/data/qg_20k.h5

Both models train on the same train split (``jet_images``, batch 32, the recipe's seed and 80/10/10 fractions)
until ``--budget-seconds`` of wall clock have passed since ``on_train_begin`` (tracing/compilation included),
then reconstruct the first ``--test-events`` events of the test split; metrics are
:func:`hep_keras.evaluation.metrics.reconstruction_metrics` on 125×125×3 GeV images.

* **ours**: :class:`~hep_keras.models.JetImageVAE` built by ``hep_keras.training.recipes.vae`` (``load_data`` +
  ``build_model``) with the recipe's default config (``batch_size`` 32, Adam 1e-3, ``jit_compile="auto"``);
  reconstruction = ``model.predict`` (latent mean), GeV in and out.
* **reference**: the notebook architecture. Input ``x`` (GeV, 125×125×3) → ``r = tf.image.resize(x, (128, 128))``
  (bilinear) → per image ``lo, hi = min(r), max(r)`` over all pixels and channels → ``(r - lo) / (hi - lo)``
  in [0, 1]. Encoder Conv2D(32, 3, s2, relu) → Conv2D(64, 3, s2, relu) → Flatten → Dense(1024, relu) →
  ``z_mean``, ``z_log_var`` (1024 each); decoder Dense(16·16·64, relu) → Reshape(16, 16, 64) →
  Conv2DTranspose 64, 32 (relu), 3 (sigmoid), all 3×3, stride 2, padding same. Loss = mean binary
  cross-entropy × 128·128·3 + KL (batch means), Adam 1e-3, batch 32, same ``jit_compile``.
  **Back to GeV**: ``reco_GeV = tf.image.resize(output_of_z_mean, (125, 125)) × (hi - lo) + lo`` with the
  ``lo, hi`` of that event's resized input (``lo`` is 0 for every jet image: they all have empty pixels).
  The row "reference preprocessing only" applies the same resize → scale → unscale → resize-back chain to
  the input itself (no network): the floor that interpolation alone puts on the reference.

Throughput: images/s of ``fit`` measured from the end of batch ``--warmup-batches`` to the last batch (data
pipeline included, as a user sees it). FLOP/s utilisation: training FLOPs per image = 3 × the forward FLOPs
of one image (``tf.compat.v1.profiler`` ``float_operation()`` on the graph of the training forward pass with
batch 1: ``compute_losses`` for ours, encoder + sampling + decoder + loss for the reference; fwd + bwd ≈ 3 ×
fwd; the per-step optimizer update is not counted), × images/s, ÷ the dense float32 matmul FLOP/s of this
CPU measured in the same run (``tf.linalg.matmul`` of two ``--matmul-size`` square matrices, 2·n³ FLOPs, best
of ``--matmul-reps`` after a warm-up).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from hep_keras.data import read_events, split_indices
from hep_keras.evaluation.metrics import reconstruction_metrics

REFERENCE_SIZE = 128
REFERENCE_LATENT = 1024
DEFAULT_DATA = Path(__file__).resolve().parent / "data" / "qg_20k.h5"
SIMULATE_HINT = "python -m hep_keras.simulate --events 20000 --seed 7 --workers 2 --out benchmarks/data/qg_20k.h5"


# ------------------------------------------------------------------------------------------ reference model
def to_unit_range(images_gev: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Reference preprocessing: ``(N, H, W, 3)`` GeV → (``(N, 128, 128, 3)`` in [0, 1], lo ``(N,)``, hi ``(N,)``).

    Bilinear ``tf.image.resize`` to 128×128, then per-image min-max over all pixels and channels.
    """
    resized = tf.image.resize(tf.cast(images_gev, tf.float32), (REFERENCE_SIZE, REFERENCE_SIZE))
    lo = tf.reduce_min(resized, axis=(1, 2, 3))
    hi = tf.reduce_max(resized, axis=(1, 2, 3))
    span = tf.maximum(hi - lo, 1e-12)[:, None, None, None]
    return (resized - lo[:, None, None, None]) / span, lo, hi


def to_gev(unit_images: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor, size: int) -> np.ndarray:
    """Inverse of :func:`to_unit_range`: ``(N, 128, 128, 3)`` in [0, 1] → ``(N, size, size, 3)`` GeV.

    ``resize(unit, (size, size)) × (hi - lo) + lo`` per event (bilinear resize back).
    """
    back = tf.image.resize(tf.cast(unit_images, tf.float32), (size, size))
    return (back * (hi - lo)[:, None, None, None] + lo[:, None, None, None]).numpy()


def reference_encoder() -> keras.Model:
    """``(N, 128, 128, 3)`` → ``[z_mean, z_log_var]``, each ``(N, 1024)``."""
    inputs = keras.Input((REFERENCE_SIZE, REFERENCE_SIZE, 3))
    h = keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Dense(1024, activation="relu")(keras.layers.Flatten()(h))
    z_mean = keras.layers.Dense(REFERENCE_LATENT, name="z_mean")(h)
    z_log_var = keras.layers.Dense(REFERENCE_LATENT, name="z_log_var")(h)
    return keras.Model(inputs, [z_mean, z_log_var], name="reference_encoder")


def reference_decoder() -> keras.Model:
    """``(N, 1024)`` → ``(N, 128, 128, 3)`` in (0, 1) (sigmoid)."""
    z = keras.Input((REFERENCE_LATENT,))
    h = keras.layers.Dense(16 * 16 * 64, activation="relu")(z)
    h = keras.layers.Reshape((16, 16, 64))(h)
    h = keras.layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu")(h)
    out = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid")(h)
    return keras.Model(z, out, name="reference_decoder")


class ReferenceVAE(keras.Model):
    """The notebook VAE on ``(N, 128, 128, 3)`` images in [0, 1]; loss = BCE × 128·128·3 + KL."""

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.encoder = reference_encoder()
        self.decoder = reference_decoder()
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = [keras.metrics.Mean(name=n) for n in ("loss", "reconstruction_loss", "kl_loss")]

    @property
    def metrics(self):
        return self.trackers

    def call(self, images, training=False):
        """Deterministic reconstruction (latent mean), ``(N, 128, 128, 3)`` in (0, 1)."""
        return self.decoder(self.encoder(images, training=training)[0], training=training)

    def compute_losses(self, images, training=False) -> dict[str, tf.Tensor]:
        """Loss terms (float32 scalars, batch means) of a batch in [0, 1]; the latent is sampled."""
        z_mean, z_log_var = self.encoder(images, training=training)
        eps = keras.random.normal(tf.shape(z_mean), seed=self.seed_generator)
        reconstruction = self.decoder(z_mean + tf.exp(0.5 * z_log_var) * eps, training=training)
        bce = tf.reduce_mean(keras.losses.binary_crossentropy(images[..., None], reconstruction[..., None]))
        reconstruction_loss = bce * REFERENCE_SIZE * REFERENCE_SIZE * 3
        kl = tf.reduce_mean(-0.5 * tf.reduce_sum(1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=-1))
        return {"loss": reconstruction_loss + kl, "reconstruction_loss": reconstruction_loss, "kl_loss": kl}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            losses = self.compute_losses(data, training=True)
        gradients = tape.gradient(losses["loss"], self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
        for tracker in self.trackers:
            tracker.update_state(losses[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.trackers}


# ----------------------------------------------------------------------------------------------- training
class BudgetTimer(keras.callbacks.Callback):
    """Stops ``fit`` once ``budget_s`` seconds of wall clock have passed since ``on_train_begin``.

    Records the end time of every batch; :meth:`summary` turns them into images/s after warm-up.
    """

    def __init__(self, budget_s: float, batch_size: int, warmup_batches: int):
        super().__init__()
        self.budget_s, self.batch_size, self.warmup_batches = budget_s, batch_size, warmup_batches
        self.start = 0.0
        self.ends: list[float] = []

    def on_train_begin(self, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())
        if self.ends[-1] - self.start >= self.budget_s:
            self.model.stop_training = True

    def summary(self) -> dict[str, Any]:
        """Batches run, wall seconds, and images/s from the end of the warm-up batch to the last batch.

        Warm-up is ``warmup_batches``, reduced (to at least 1: the traced/compiled first step) when fewer than
        ``warmup_batches + 2`` batches ran; ``images_per_s`` is NaN with fewer than 2 batches.
        """
        warm = max(1, min(self.warmup_batches, len(self.ends) - 2))
        timed = len(self.ends) - warm
        rate = timed * self.batch_size / (self.ends[-1] - self.ends[warm - 1]) if timed > 0 else float("nan")
        return {
            "images_per_s": rate,
            "batches": len(self.ends),
            "warmup_batches": warm,
            "wall_s": (self.ends[-1] if self.ends else self.start) - self.start,
        }


def train(model: keras.Model, dataset, budget_s: float, batch_size: int, warmup_batches: int) -> dict[str, Any]:
    """``model.fit`` on ``dataset`` (re-iterated per epoch) until the budget is used; returns the timing."""
    timer = BudgetTimer(budget_s, batch_size, warmup_batches)
    model.fit(dataset, epochs=1_000_000, callbacks=[timer], shuffle=False, verbose=0)
    return timer.summary()


# ------------------------------------------------------------------------------------------------- FLOPs
def forward_flops(fn, shape: tuple[int, ...]) -> int:
    """Float operations of one call of ``fn`` on a float32 tensor of ``shape``, from ``tf.compat.v1.profiler``."""
    graph = tf.function(fn).get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)


def matmul_flops_per_s(n: int, reps: int) -> float:
    """Dense float32 FLOP/s of this CPU: best of ``reps`` timings of an ``n×n @ n×n`` ``tf.linalg.matmul``."""
    a = tf.random.normal((n, n), dtype=tf.float32)
    b = tf.random.normal((n, n), dtype=tf.float32)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.linalg.matmul(x, y)))
    matmul(a, b).numpy()  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        matmul(a, b).numpy()
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best


# ------------------------------------------------------------------------------------------------- models
def recipe_config(data: Path, events_limit: int | None) -> dict[str, Any]:
    """The ``fit vae`` recipe's default config (common defaults + recipe defaults) for this data file."""
    from hep_keras.training.config import check_common, resolve_config
    from hep_keras.training.recipes import recipe_defaults, vae

    config = resolve_config(recipe_defaults(vae), ("benchmark", {"data": str(data), "max_events": events_limit}))
    check_common(config)
    vae.validate(config)
    return config


def build_reference(config: dict[str, Any]) -> ReferenceVAE:
    """The reference VAE, compiled with Adam 1e-3 and the recipe's ``jit_compile``."""
    model = ReferenceVAE(seed=config["seed"])
    model.build((None, REFERENCE_SIZE, REFERENCE_SIZE, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=config["jit_compile"])
    return model


def reference_reconstruct(model: ReferenceVAE, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """GeV ``(N, S, S, 3)`` → reference reconstruction in GeV ``(N, S, S, 3)`` (latent mean)."""
    out = []
    for i in range(0, len(images), batch_size):
        unit, lo, hi = to_unit_range(images[i : i + batch_size])
        out.append(to_gev(model(unit, training=False), lo, hi, images.shape[1]))
    return np.concatenate(out)


def preprocessing_round_trip(images: np.ndarray) -> np.ndarray:
    """The reference's resize → min-max → inverse → resize-back chain without a network (GeV in and out)."""
    unit, lo, hi = to_unit_range(images)
    return to_gev(unit, lo, hi, images.shape[1])


def test_images(config: dict[str, Any], path: Path, n_events: int, count: int) -> np.ndarray:
    """The first ``count`` events of the recipe's test split: ``(count, 125, 125, 3)`` GeV."""
    n = min(n_events, config["max_events"]) if config["max_events"] else n_events
    index = split_indices(n, "test", tuple(config["fractions"]), config["seed"])[:count]
    return read_events(path, index, fields=("X_jets",))["X_jets"]


# ------------------------------------------------------------------------------------------------ report
ROWS: list[tuple[str, tuple[str, ...], str]] = [
    # label, key path into reconstruction_metrics, "better" rule: one = |x-1| smaller, low = smaller
    *[
        (f"{name} response {stat}", ("response", f"energy_{key}", stat), "one" if stat == "mean" else "low")
        for key, name in (
            ("tracks", "E tracks"),
            ("ecal", "E ECAL"),
            ("hcal", "E HCAL"),
            ("total", "E total"),
        )
        for stat in ("mean", "std")
    ],
    *[
        (f"{k} response {s}", ("response", k, s), "one" if s == "mean" else "low")
        for k in ("mass", "pt")
        for s in ("mean", "std")
    ],
    *[(f"occupancy ratio {c}", ("occupancy_ratio", c), "one") for c in ("tracks", "ecal", "hcal")],
    ("W1 mass (GeV)", ("wasserstein1", "mass"), "low"),
    ("W1 pT (GeV)", ("wasserstein1", "pt"), "low"),
    ("W1 E total (GeV)", ("wasserstein1", "energy_total"), "low"),
    ("pixel MAE (GeV)", ("pixel", "mae_gev"), "low"),
]
GOALS = {  # label -> (text, test of ours)
    "E total response mean": ("1 ± 0.02", lambda x: abs(x - 1) <= 0.02),
    "E total response std": ("≤ 0.05", lambda x: x <= 0.05),
    "mass response std": ("≤ 0.10", lambda x: x <= 0.10),
}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _lookup(metrics: dict[str, Any], keys: tuple[str, ...]) -> float:
    for key in keys:
        metrics = metrics[key]
    return float(metrics)


def _better(ours: float, ref: float, rule: str) -> bool:
    if rule == "one":
        return abs(np.log(max(ours, 1e-12))) < abs(np.log(max(ref, 1e-12)))
    return ours < ref


def markdown_table(results: dict[str, Any]) -> str:
    """Side-by-side Markdown table of throughput and held-out metrics (ours, reference, preprocessing floor)."""
    ours, ref, floor = (results["metrics"][k] for k in ("ours", "reference", "preprocessing_only"))
    lines = [
        "| quantity | ours (JetImageVAE) | reference VAE | reference preprocessing only | goal | goal met "
        "| ours better |",
        "|:--|--:|--:|--:|:--|:--|:--|",
    ]
    speed_o, speed_r = results["train"]["ours"]["images_per_s"], results["train"]["reference"]["images_per_s"]
    lines.append(
        f"| training images/s | {speed_o:.1f} | {speed_r:.1f} | – | ours ≥ 5× ref | "
        f"{_yes(speed_o >= 5 * speed_r)} ({speed_o / speed_r:.2f}×) | {_yes(speed_o > speed_r)} |"
    )
    lines.append(
        f"| training FLOP/s ÷ matmul FLOP/s | {results['train']['ours']['flops_fraction']:.3f} | "
        f"{results['train']['reference']['flops_fraction']:.3f} | – | – | – | – |"
    )
    for label, keys, rule in ROWS:
        o, r, f = (_lookup(m, keys) for m in (ours, ref, floor))
        goal = GOALS.get(label)
        met = _yes(goal[1](o)) if goal else "–"
        lines.append(
            f"| {label} | {o:.4g} | {r:.4g} | {f:.4g} | {goal[0] if goal else '–'} | {met} | "
            f"{_yes(_better(o, r, rule))} |"
        )
    return "\n".join(lines)


def context_lines(results: dict[str, Any]) -> str:
    """Plain-text run context: data, budgets, steps, FLOP counts, matmul speed."""
    n_train = results["n_train_events"]
    out = [f"data: {results['data']} ({n_train} train events, {results['n_test']} test events)"]
    for key in ("ours", "reference"):
        t, f = results["train"][key], results["flops"][key]
        passes = t["batches"] * results["batch_size"] / n_train
        out.append(
            f"{key}: {t['batches']} batches of {results['batch_size']} ({passes:.2f} passes over the train split) in "
            f"{t['wall_s']:.0f} s, images/s timed after {t['warmup_batches']} warm-up batches; "
            f"{f['params'] / 1e6:.2f} M params; forward {f['forward_per_image'] / 1e6:.1f} MFLOP/image, "
            f"training ≈ 3× = {f['train_per_image'] / 1e6:.1f} MFLOP/image"
        )
    out.append(f"matmul {results['matmul_size']}²: {results['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s float32")
    return "\n".join(out)


# -------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", default=str(DEFAULT_DATA), help="jet-image HDF5 file, or SAMPLE for the shipped sample"
    )
    parser.add_argument("--events-limit", type=int, default=None, help="use only the first N events of the file")
    parser.add_argument("--budget-seconds", type=float, default=600.0, help="training wall clock per model (s)")
    parser.add_argument("--test-events", type=int, default=1000, help="held-out test-split events evaluated")
    parser.add_argument("--warmup-batches", type=int, default=20, help="batches excluded from images/s")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-reps", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    return parser.parse_args(argv)


def resolve_data(text: str) -> Path:
    """``SAMPLE`` → the shipped sample; otherwise the path, which must exist."""
    from hep_keras.data.sample import SAMPLE_PATH

    path = SAMPLE_PATH if text == "SAMPLE" else Path(text)
    if not path.exists():
        sys.exit(f"error: {path}: no such file; make it with\n    {SIMULATE_HINT}")
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train both models with the same budget, evaluate both; every number in one dict."""
    from hep_keras.data import inspect_jet_file
    from hep_keras.training.recipes import vae

    path = resolve_data(args.data)
    config = recipe_config(path, args.events_limit)
    batch = config["batch_size"]
    keras.utils.set_random_seed(config["seed"])
    data = vae.load_data(config)
    ours = vae.build_model(config, data)
    reference = build_reference(config)
    n_events = inspect_jet_file(path).n_events
    n_used = min(n_events, args.events_limit) if args.events_limit else n_events
    results: dict[str, Any] = {
        "data": str(path),
        "n_train_events": len(split_indices(n_used, "train", tuple(config["fractions"]), config["seed"])),
        "matmul_size": args.matmul_size,
        "batch_size": batch,
        "budget_s": args.budget_seconds,
        "train": {},
        "flops": {},
        "metrics": {},
    }
    results["matmul_flops_per_s"] = matmul_flops_per_s(args.matmul_size, args.matmul_reps)
    for key, model, fn, shape in (
        ("ours", ours, lambda x: ours.compute_losses(x, training=True)["loss"], (1, 125, 125, 3)),
        (
            "reference",
            reference,
            lambda x: reference.compute_losses(x, training=True)["loss"],
            (1, 128, 128, 3),
        ),
    ):
        fwd = forward_flops(fn, shape)
        results["flops"][key] = {
            "forward_per_image": fwd,
            "train_per_image": 3 * fwd,
            "params": model.count_params(),
        }
    print(f"training ours for {args.budget_seconds:.0f} s ...", file=sys.stderr)
    results["train"]["ours"] = train(ours, data.train, args.budget_seconds, batch, args.warmup_batches)
    print(f"training reference for {args.budget_seconds:.0f} s ...", file=sys.stderr)
    unit_train = data.train.map(lambda x: to_unit_range(x)[0], num_parallel_calls=tf.data.AUTOTUNE)
    results["train"]["reference"] = train(reference, unit_train, args.budget_seconds, batch, args.warmup_batches)
    images = test_images(config, path, n_events, args.test_events)
    results["n_test"] = len(images)
    results["metrics"]["ours"] = reconstruction_metrics(images, ours.predict(images, batch_size=64, verbose=0))
    results["metrics"]["reference"] = reconstruction_metrics(images, reference_reconstruct(reference, images))
    results["metrics"]["preprocessing_only"] = reconstruction_metrics(images, preprocessing_round_trip(images))
    for key in ("ours", "reference"):
        flops_per_s = results["train"][key]["images_per_s"] * results["flops"][key]["train_per_image"]
        results["train"][key]["flops_fraction"] = flops_per_s / results["matmul_flops_per_s"]
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    table = markdown_table(results)
    print(context_lines(results))
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
