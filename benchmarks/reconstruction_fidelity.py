"""Reconstruction fidelity of the image autoencoders against trivial baselines, on held-out test events.

    python benchmarks/reconstruction_fidelity.py                       # train vae, ae, seed-000 VAE; shipped sample
    python benchmarks/reconstruction_fidelity.py --vae saved_models/vae --ae saved_models/ae   # evaluate exports
    python benchmarks/reconstruction_fidelity.py --tiny --out /tmp/fid  # smoke run (seconds to a minute)

One table (stdout, ``<out>/reconstruction_fidelity.md`` and ``.json``) with a row per reconstruction of the
same test-split events (never used for training or for fitting any normalisation):

* ``vae``, ``ae``: the ``fit vae`` / ``fit ae`` recipes' models with their default config (``--epochs``,
  ``--max-events`` override), trained here on the train split — or loaded from an export (``--vae DIR``);
* ``mean image``: every event reconstructed as the training-split mean image scaled to its channel energies;
* ``PCA``: ``sklearn`` IncrementalPCA on the training split with as many components as the VAE's code has
  numbers;
* ``seed-000 VAE (MSE)``: the reference notebook architecture of ``benchmarks/vae_vs_baseline.py`` (resize to
  128, per-image min-max, 1024-d latent) trained with a pixel MSE loss for the same epochs.

All reconstructions are zero-suppressed at the detector thresholds fitted on the training split (the models do
it themselves). Measures: :mod:`hep_keras.evaluation.fidelity_report` (per-event EMD, two-sample AUCs,
far-from-axis energy, occupancy, quark/gluon information; energy/mass responses labelled "exact by
construction" where the model carries them in its code).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SEED000 = "seed-000 VAE (MSE)"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
TINY = {"max_events": 160, "epochs": 1, "eval_events": 32, "baseline_events": 64, "cnn_epochs": 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="jet-image HDF5 file (default: the shipped sample)")
    parser.add_argument("--epochs", type=int, help="training epochs of every trained model (default: the recipe's)")
    parser.add_argument("--seed000-epochs", type=int, help="epochs of the seed-000 VAE (default: --epochs)")
    parser.add_argument("--max-events", type=int, help="use only the first N events of the file")
    parser.add_argument("--eval-events", type=int, default=1000, help="test-split events evaluated")
    parser.add_argument("--baseline-events", type=int, default=3200, help="training events for the baselines / q/g")
    parser.add_argument("--cnn-epochs", type=int, default=10, help="epochs of the CNN two-sample classifier")
    parser.add_argument("--vae", help="evaluate this export (saved_models/vae) instead of training the VAE")
    parser.add_argument("--ae", help="evaluate this export (saved_models/ae) instead of training the AE")
    parser.add_argument("--models", default="vae,ae,seed000", help="which models (comma list of vae, ae, seed000)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="directory for the .md and .json tables")
    parser.add_argument(
        "--tiny", action="store_true", help="smoke run: " + ", ".join(f"{k}={v}" for k, v in TINY.items())
    )
    args = parser.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            if getattr(args, key) is None or key in ("eval_events", "baseline_events", "cnn_epochs"):
                setattr(args, key, value)
    unknown = set(args.models.split(",")) - {"vae", "ae", "seed000"}
    if unknown:
        parser.error(f"--models: unknown {', '.join(sorted(unknown))} (choose from vae, ae, seed000)")
    return args


def recipe_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ``fit vae`` recipe's default config with this run's data / epochs / max_events."""
    from hep_keras.training.config import check_common, resolve_config
    from hep_keras.training.recipes import recipe_defaults, vae

    overrides = {"data": args.data, "epochs": args.epochs, "max_events": args.max_events}
    config = resolve_config(recipe_defaults(vae), ("benchmark", overrides))
    check_common(config)
    vae.validate(config)
    return config


def split_events(config: dict[str, Any], path: Path, split: str, count: int) -> dict[str, np.ndarray]:
    """The first ``count`` events of a split of ``path`` (images GeV, labels)."""
    from hep_keras.data import inspect_jet_file, read_events, split_indices

    n = inspect_jet_file(path).n_events
    n = min(n, config["max_events"]) if config["max_events"] else n
    index = split_indices(n, split, tuple(config["fractions"]), config["seed"])[:count]
    return read_events(path, index, fields=("X_jets", "y"))


def train_recipe_model(name: str, config: dict[str, Any], data) -> tuple[Any, float]:
    """Build and fit the ``vae`` / ``ae`` recipe model on the train split; returns (model, seconds)."""
    import keras

    from hep_keras.training.recipes import get_recipe

    keras.utils.set_random_seed(config["seed"])
    model = get_recipe(name).build_model(config, data)
    start = time.perf_counter()
    model.fit(data.train, validation_data=data.val, epochs=config["epochs"], verbose=2)
    return model, time.perf_counter() - start


def train_seed000(config: dict[str, Any], data, epochs: int) -> tuple[Any, float]:
    """The reference notebook VAE with a pixel-MSE loss (sum over 128·128·3 pixels + KL), ``epochs`` epochs."""
    import keras
    import tensorflow as tf
    from vae_vs_baseline import REFERENCE_SIZE, ReferenceVAE, build_reference, to_unit_range

    class ReferenceMSEVAE(ReferenceVAE):
        def compute_losses(self, images, training=False):
            z_mean, z_log_var = self.encoder(images, training=training)
            eps = keras.random.normal(tf.shape(z_mean), seed=self.seed_generator)
            reconstruction = self.decoder(z_mean + tf.exp(0.5 * z_log_var) * eps, training=training)
            mse = tf.reduce_mean(tf.square(images - reconstruction)) * REFERENCE_SIZE * REFERENCE_SIZE * 3
            kl = tf.reduce_mean(-0.5 * tf.reduce_sum(1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var), axis=-1))
            return {"loss": mse + kl, "reconstruction_loss": mse, "kl_loss": kl}

    keras.utils.set_random_seed(config["seed"])
    reference = build_reference(config)
    model = ReferenceMSEVAE(seed=config["seed"])
    model.build((None, REFERENCE_SIZE, REFERENCE_SIZE, 3))
    model.compile(optimizer=reference.optimizer, jit_compile=config["jit_compile"])
    unit_train = data.train.map(lambda x: to_unit_range(x)[0], num_parallel_calls=tf.data.AUTOTUNE)
    start = time.perf_counter()
    model.fit(unit_train, epochs=epochs, verbose=2)
    return model, time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train / load the models, reconstruct the test events, measure everything; one JSON-able dict."""
    from hep_keras.evaluation import fidelity as F
    from hep_keras.evaluation.fidelity_report import baseline_reconstructions, evaluate_fidelity
    from hep_keras.export import load_keras_model
    from hep_keras.training.recipes import vae as vae_recipe

    config = recipe_config(args)
    data = vae_recipe.load_data(config)
    path = Path(data.path)
    thresholds = data.normalization["zero_thresholds"]
    test = split_events(config, path, "test", args.eval_events)
    train = split_events(config, path, "train", args.baseline_events)
    reconstructions: dict[str, np.ndarray] = {}
    code_sizes: dict[str, int] = {}
    exact: dict[str, list[str]] = {}
    timing: dict[str, float] = {}
    wanted = args.models.split(",")
    for name in ("vae", "ae"):
        if name not in wanted:
            continue
        export = getattr(args, name)
        if export:
            model = load_keras_model(Path(export))
        else:
            model, timing[name] = train_recipe_model(name, config, data)
        reconstructions[name] = model.predict(test["X_jets"], batch_size=64, verbose=0)
        code_sizes[name] = model.code_dim
        exact[name] = ["channel energies"]
    code_size = code_sizes.get("vae", config["latent_dim"] + 4)
    baselines = baseline_reconstructions(train["X_jets"], test["X_jets"], code_size, thresholds)
    reconstructions.update(baselines)
    code_sizes.update({"mean image": 3, "PCA": min(code_size, len(train["X_jets"]))})
    exact["mean image"] = ["channel energies"]
    if "seed000" in wanted:
        from vae_vs_baseline import reference_reconstruct

        epochs = args.seed000_epochs or config["epochs"]
        model, timing[SEED000] = train_seed000(config, data, epochs)
        reconstructions[SEED000] = F.zero_suppress(reference_reconstruct(model, test["X_jets"]), thresholds, False)
        code_sizes[SEED000] = 1024
    results, _ = evaluate_fidelity(
        test["X_jets"],
        reconstructions,
        test_labels=test["y"],
        train_images=train["X_jets"],
        train_labels=train["y"],
        code_sizes=code_sizes,
        exact=exact,
        cnn_epochs=args.cnn_epochs,
        seed=config["seed"],
    )
    results.update(
        {
            "data": str(path),
            "epochs": config["epochs"],
            "seed000_epochs": args.seed000_epochs or config["epochs"],
            "train_seconds": timing,
            "exports": {"vae": args.vae, "ae": args.ae},
            "n_baseline_train_events": int(len(train["X_jets"])),
            "zero_thresholds_gev": thresholds,
        }
    )
    return results


def main(argv: list[str] | None = None) -> int:
    from hep_keras.evaluation.fidelity_report import markdown_table, text_table, verdicts

    args = parse_args(argv)
    results = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    context = (
        f"data: {results['data']}; {results['n_events']} test events; baselines/q-g classifier fitted on "
        f"{results['n_baseline_train_events']} training events; epochs {results['epochs']} "
        f"(seed-000: {results['seed000_epochs']}); training seconds "
        + ", ".join(f"{k} {v:.0f}" for k, v in results["train_seconds"].items())
    )
    print(context)
    print(text_table(results))
    lines = ["# Reconstruction fidelity", "", context, "", markdown_table(results), ""]
    for name in ("vae", "ae"):
        if name in results["models"]:
            print(f"\n{name}:")
            print("\n".join(f"  {s}" for s in verdicts(results, name)))
            lines += [f"## {name}", ""] + [f"- {s}" for s in verdicts(results, name)] + [""]
    (out / "reconstruction_fidelity.md").write_text("\n".join(lines))
    (out / "reconstruction_fidelity.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"wrote {out / 'reconstruction_fidelity.md'} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
