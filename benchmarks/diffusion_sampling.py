"""Diffusion sampling: time per generated event and distribution quality vs the number of DDIM steps.

Loads the SavedModel of a diffusion export (``python -m hep_keras.fit diffusion``), generates as many events
as there are held-out real events (validation + test split of the training file recorded in the export's
metadata, same quark/gluon labels) for each number of steps, and prints a table of

* ms per generated event (after tracing) and network evaluations per event,
* the mean over observables of W1(generated, real half A) / W1(real half B, real half A) (1 = statistical floor),
* W1 of image mass, pT and total calorimeter energy (GeV),
* the real-vs-generated classifier AUC on high-level features (held-out half, Hanley-McNeil error),
* the ratio of the mean W1/floor to that at the largest number of steps (goal: <= 1 at <= 50 evaluations).

Usage::

    python benchmarks/diffusion_sampling.py saved_models/diffusion [--steps 10 25 50 100 250] [--events 400]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def heldout_real(metadata: dict, events: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out real images (GeV, cropped like the model's) and labels, as in the recipe's evaluation."""
    from hep_keras.data import read_events, split_indices

    config, info = metadata["config"], metadata["data"]
    n = info["n_events"]
    idx = np.concatenate([split_indices(n, s, config["fractions"], config["seed"]) for s in ("val", "test")])
    idx = np.sort(np.random.default_rng(config["seed"]).permutation(idx)[:events])
    out = read_events(info["path"], idx, fields=("X_jets", "y"), crop=info["crop"])
    return out["X_jets"], out["y"].astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", nargs="?", default="saved_models/diffusion")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100, 250])
    parser.add_argument("--events", type=int, default=400, help="held-out real events (and generated per row)")
    parser.add_argument("--eta", type=float, default=0.0)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from hep_keras.commands.generate import load_diffusion_export
    from hep_keras.evaluation.generation import compare_generated
    from hep_keras.evaluation.two_sample import classifier_two_sample_test, high_level_features
    from hep_keras.models.diffusion import sample_in_batches

    loaded, metadata = load_diffusion_export(Path(args.export))
    real, labels = heldout_real(metadata, args.events)
    sample = loaded.sample_labels
    sample_in_batches(sample, labels[:2], 2, args.seed, args.guidance, args.eta)  # trace
    per_eval = 1 if args.guidance == 1 else 2
    rows = []
    for steps in args.steps:
        start = time.perf_counter()
        generated = sample_in_batches(sample, labels, steps, args.seed, args.guidance, args.eta)
        ms = 1000 * (time.perf_counter() - start) / len(labels)
        cmp = compare_generated(real, generated, seed=0)
        test = classifier_two_sample_test(high_level_features(real), high_level_features(generated))
        auc = (test["auc"], test["auc_err_hanley_mcneil"])
        rows.append((steps, steps * per_eval, ms, cmp["mean_w1_over_floor"], cmp["w1"], auc))
        print(f"# {steps} steps done", flush=True)
    reference = rows[-1][3]
    print(
        f"# {args.export}: {len(real)} held-out real events, image {real.shape[1]}x{real.shape[2]}, "
        f"eta={args.eta}, guidance={args.guidance}"
    )
    print(
        "| steps | net evals/event | ms/event | mean W1/floor | vs last | W1 mass [GeV] | W1 pT [GeV] "
        "| W1 E_calo [GeV] | two-sample AUC |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for steps, evals, ms, ratio, w1, (auc, auc_err) in rows:
        print(
            f"| {steps} | {evals} | {ms:.2f} | {ratio:.2f} | {ratio / reference:.2f} | {w1['mass']:.2f} | "
            f"{w1['pt']:.2f} | {w1['energy_total']:.2f} | {auc:.3f} ± {auc_err:.3f} |"
        )


if __name__ == "__main__":
    main()
