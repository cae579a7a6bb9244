"""Generation quality of a diffusion export on held-out test events: one table, every number beside its floor.

Loads the SavedModel of ``python -m hep_keras.fit diffusion`` (``saved_models/diffusion``), reads the *test*
split of the file it was trained on (recorded in the export's metadata; never trained on, never used for early
stopping), splits it into halves A (reference) and B (real-vs-real floor), generates one event per event of B
with B's quark/gluon label and prints (:mod:`hep_keras.evaluation.generation_quality`):

* high-level classifier AUC real vs generated (HistGradientBoosting, 5-fold) and its real-vs-real floor,
* small-CNN AUC on the full images and its floor,
* W1 of jet mass, pT, per-channel energy and occupancy, in units of the floor: the W1 of two real samples
  of A's and B's sizes averaged over 50 re-splits of A ∪ B (one split's W1 alone moves by about a third),
* quark/gluon: a q/g classifier trained on A, AUC on generated vs on real B, and their difference with its
  error; the generated side scores ``--qg-samples`` generated events per event of B (B's labels repeated) so
  that its error is small beside the real side's (which only a bigger test split shrinks),

all with bootstrap errors; the same table with training-split events (B's labels) in place of the generated ones,
the reference a perfect generator of the training distribution would reach on this split (with 200 events the W1 of
such a sample moves by up to ~2.5× the floor); the high-level features that separate generated from real events most
(each alone, beside its real-vs-real value), the high-level classifier on each group of features alone and on all
the others (a group can separate jointly where each feature alone does not), the rank correlation of the hit counts
between channels, generated and real; then network evaluations per event and generated events/s at the
export's steps beside a 1000-step ancestral DDPM of the same network (timed on ``--ddpm-events`` events).
Sampling uses the export's guidance and η (the sampler its calibration was fitted for) unless ``--guidance`` /
``--eta`` say otherwise.
``--test-data FILE`` takes the held-out events from an independent file in the dataset schema instead of the export's
test split (every event of it is held out; e.g. ``python -m hep_keras.simulate --events 4000 --seed 7 --out F``, a
different seed from the shipped sample's 2024): the shipped sample's test split has only 400 events, which leaves the
q/g row an error of ±0.04 on the real AUC alone; 4000 independent events bring it to about ±0.01.
``--ceiling`` adds the table of B's real events encoded into the model's hit slots and decoded (no network): the
representation's own ceiling, as in the fit's report.
``--no-calibration`` samples the same weights without the quantile calibration of generated energies (the
calibration's baseline). One seed's classifier AUCs move by about ±0.03 with the A/B split and the sampled events:
``--repeats R`` also prints the HL and CNN AUCs (and their floors) for seeds ``seed … seed + R - 1``, each its own
split and sampling seed, with their mean and spread. ``--save-generated FILE`` writes the generated events of B
(the ones the table scores) with their labels in the dataset schema, for a closer look without sampling again.

Usage::

    python benchmarks/generation_quality.py saved_models/diffusion [--events 400] [--steps 25]
    python benchmarks/generation_quality.py saved_models/diffusion --no-calibration   # the raw network, baseline
    python benchmarks/generation_quality.py saved_models/diffusion --repeats 5        # classifier AUCs, 5 seeds
    python -m hep_keras.simulate --events 4000 --seed 7 --workers 2 --out heldout.h5   # independent events
    python benchmarks/generation_quality.py saved_models/diffusion --test-data heldout.h5 --events 4000
    python benchmarks/generation_quality.py --tiny      # smoke mode: tiny untrained model, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def test_events(path: str, n_events: int, config: dict[str, Any], events: int, crop) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``events`` events of the test split of ``path`` (GeV images, int labels)."""
    from hep_keras.data import read_events, split_indices

    idx = split_indices(n_events, "test", config["fractions"], config["seed"])
    idx = np.sort(np.random.default_rng(config["seed"]).permutation(idx)[:events])
    out = read_events(path, idx, fields=("X_jets", "y"), crop=crop)
    return out["X_jets"], out["y"].astype(np.int32)


def independent_events(path: str, events: int, info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``events`` events of an independent held-out file (GeV images, int labels), a seeded random choice.

    ``path`` must be in the dataset schema with the images of the file the export was trained on (``info``: the
    export's ``data`` metadata, ``image_shape`` and ``crop`` are applied alike) and must not be that file (whose
    held-out events are its test split).
    """
    from hep_keras.data import inspect_jet_file, read_events
    from hep_keras.errors import DataError

    if Path(path).resolve() == Path(info["path"]).resolve():
        raise DataError(f"{path}: is the file the export was trained on; leave out --test-data to use its test split")
    found = inspect_jet_file(path, require=("X_jets", "y"))
    if list(found.image_shape) != list(info["image_shape"]):
        raise DataError(
            f"{path}: images are {tuple(found.image_shape)}, the export was trained on {tuple(info['image_shape'])}"
        )
    idx = np.sort(np.random.default_rng(0).permutation(found.n_events)[:events])
    out = read_events(path, idx, fields=("X_jets", "y"), crop=info["crop"])
    return out["X_jets"], out["y"].astype(np.int32)


def training_reference(path: str, n_events: int, config: dict[str, Any], labels: np.ndarray, seed: int, crop):
    """One event of the *training* split per entry of ``labels`` (int, 0 quark / 1 gluon), with that label,
    drawn without replacement (seeded): ``(N, S, S, C)`` GeV in the order of ``labels``.

    What a perfect generator of the training distribution would hand in for B's labels: its row of the table
    is the reference a generated sample can be judged against (the real-vs-real floor compares two halves of
    the test split and so leaves out both the training-vs-test difference and the reference sample's own
    fluctuation).
    """
    from hep_keras.data import read_events, split_indices

    train = np.sort(split_indices(n_events, "train", config["fractions"], config["seed"]))
    train_labels = read_events(path, train, fields=("y",))["y"].astype(np.int64)
    rng = np.random.default_rng(seed)
    picked = np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        want = np.flatnonzero(labels == label)
        pool = train[train_labels == label]
        if len(pool) < len(want):
            raise ValueError(f"{path}: the training split has {len(pool)} events of label {label}, {len(want)} needed")
        picked[want] = rng.choice(pool, len(want), replace=False)
    order = np.argsort(picked)
    images = read_events(path, picked[order], fields=("X_jets",), crop=crop)["X_jets"]
    return images[np.argsort(order)]


def tiny_setup(events: int, test_data: str | None = None):
    """Smoke mode: a tiny untrained full-resolution model "trained on" the shipped sample (no export needed); the
    held-out events from its test split, or from ``test_data``."""
    from hep_keras.data import inspect_jet_file, read_events
    from hep_keras.data.sample import SAMPLE_PATH
    from hep_keras.models.diffusion import JetDiffusion, fit_intensity_transform, make_sample_labels_fn

    config = {"fractions": [0.8, 0.1, 0.1], "seed": 0}
    info = inspect_jet_file(SAMPLE_PATH)
    fit = read_events(SAMPLE_PATH, np.arange(32), fields=("X_jets",))["X_jets"]
    model = JetDiffusion(
        image_size=info.image_shape[0], widths=[8, 8], embed_dim=8, attention=False, patch=5, hcal_towers=True, slots=2,
        **fit_intensity_transform(fit),
    )  # fmt: skip
    if test_data:
        trained_on = {"path": str(SAMPLE_PATH), "image_shape": list(info.image_shape), "crop": None}
        real, labels = independent_events(test_data, events, trained_on)
    else:
        real, labels = test_events(str(SAMPLE_PATH), info.n_events, config, events, None)
    return make_sample_labels_fn(model), real, labels, (str(SAMPLE_PATH), info.n_events, config, None), model


def classifier_aucs(seed: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The HL and CNN AUCs and their floors of one quality table."""
    by_name = {row["measure"]: row for row in rows}
    out = {"seed": seed}
    for name in ("hl", "cnn"):
        out[f"{name}_auc"], out[f"{name}_floor"] = by_name[f"{name}_auc"]["value"], by_name[f"{name}_auc"]["floor"]
    return out


def sampling(stage: str, sample, labels: np.ndarray, steps: int, seed: int, guidance: float, eta: float) -> np.ndarray:
    """:func:`~hep_keras.models.diffusion.sample_in_batches` in batches of 32 with a Keras progress bar on stderr
    (stdout keeps only the tables)."""
    from hep_keras.models.diffusion import sample_in_batches
    from hep_keras.progress import stage_bar

    with contextlib.redirect_stdout(sys.stderr):
        bar = stage_bar(stage, len(labels))
        return sample_in_batches(sample, labels, steps, seed, guidance, eta, batch_size=32, progress=bar.update)


def scored(stage: str, **kwargs) -> list[dict[str, Any]]:
    """:func:`~hep_keras.evaluation.generation_quality.quality_table` with a Keras progress bar on stderr."""
    from hep_keras.evaluation.generation_quality import quality_table
    from hep_keras.progress import stage_bar, staged_update

    with contextlib.redirect_stdout(sys.stderr):
        return quality_table(progress=staged_update(stage_bar(stage, 1, unit="measure")), **kwargs)


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any], str]:
    """Compute the tables; returns ``(quality rows, speed numbers, diagnostics, description)``; diagnostics:
    ``separation`` (feature separation rows), ``groups`` (feature group rows), ``count_correlations``
    (generated and real B), ``patch``, for ``patch > 1`` ``centre_share`` (one line: the share of hits on
    their block's centre pixel, generated and real B), ``edges`` (one line: hits on each border of the image,
    generated / real B), ``reference`` (the quality rows of :func:`training_reference` events in place of the
    generated ones) and ``repeats``: one row per seed ``{"seed", "hl_auc", "hl_floor", "cnn_auc",
    "cnn_floor"}`` (the first is the main table's)."""
    from hep_keras.evaluation.generation import split_halves
    from hep_keras.evaluation.generation_quality import (
        block_centre_share,
        describe_block_centre_share,
        describe_edge_hits,
        edge_hits,
        feature_group_separation,
        feature_separation,
        hit_count_correlations,
    )
    from hep_keras.models.diffusion import representation_round_trip, sample_in_batches

    if args.tiny:
        sample, real, labels, source, model = tiny_setup(args.events, args.test_data)
        steps, what, guidance = args.steps or 2, "tiny untrained model (smoke mode)", args.guidance or 1.0
        eta = args.eta or 0.0
        patch = 5
    else:
        from hep_keras.commands.generate import load_diffusion_export

        loaded, metadata = load_diffusion_export(Path(args.export))
        config, info = metadata["config"], metadata["data"]
        if args.test_data:
            real, labels = independent_events(args.test_data, args.events, info)
        else:
            real, labels = test_events(info["path"], info["n_events"], config, args.events, info["crop"])
        source = (info["path"], info["n_events"], config, info["crop"])
        sample, steps, what = loaded.sample_labels, args.steps or config["sample_steps"], args.export
        model = None
        if args.no_calibration or args.ceiling:  # model.keras: the raw network, the representation
            from hep_keras.export import load_keras_model

            model = load_keras_model(Path(args.export))
        if args.no_calibration:  # the raw network: model.keras with its quantile calibration removed
            from hep_keras.models.diffusion import make_sample_labels_fn

            model.set_calibration(None)
            sample, what = make_sample_labels_fn(model), f"{args.export} without calibration"
        guidance = args.guidance if args.guidance is not None else config.get("guidance", 1.0)
        eta = args.eta if args.eta is not None else config.get("eta", 0.0)  # the sampler the calibration was fitted for
        patch = int(config.get("patch", 1))
    a_idx, b_idx = split_halves(len(real), args.seed)
    sample_in_batches(sample, labels[:2], steps, args.seed, guidance, eta)  # trace outside the timing
    start = time.perf_counter()
    generated = sampling(f"sampling B ({steps} DDIM steps)", sample, labels[b_idx], steps, args.seed, guidance, eta)
    per_second = len(b_idx) / (time.perf_counter() - start)
    if args.save_generated:
        from hep_keras.commands.generate import write_jet_file

        attrs = {"export": str(args.export), "steps": steps, "guidance": guidance, "eta": eta, "seed": args.seed}
        write_jet_file(Path(args.save_generated), generated, labels[b_idx], attrs)

    ddpm_labels = labels[b_idx][: args.ddpm_events]
    sample_in_batches(sample, ddpm_labels[:1], 2, args.seed, eta=1.0)  # trace the eta = 1 branch
    start = time.perf_counter()
    sample_in_batches(sample, ddpm_labels, args.ddpm_steps, args.seed, eta=1.0)
    ddpm_per_second = len(ddpm_labels) / (time.perf_counter() - start)

    qg = None
    if args.qg_samples > 1:  # more generated events for the quark/gluon row only (new seed: new events)
        more_labels = np.tile(labels[b_idx], args.qg_samples - 1)
        more = sampling("sampling the q/g row's extra events", sample, more_labels, steps, args.seed + 1, guidance, eta)
        qg = (np.concatenate([generated, more]), np.concatenate([labels[b_idx], more_labels]))
    split = {"real_a": real[a_idx], "real_b": real[b_idx], "labels_a": labels[a_idx], "labels_b": labels[b_idx]}
    split |= {"cnn_epochs": args.cnn_epochs, "seed": args.seed}
    rows = scored("classifiers and W1: generated vs real", generated=generated, qg_generated=qg, **split)
    speed = {
        "network_evaluations_per_event": steps * (1 if guidance == 1 else 2),
        "guidance": guidance,
        "eta": eta,
        "events_per_second": per_second,
        "ddpm_steps": args.ddpm_steps,
        "ddpm_events_per_second": ddpm_per_second,
        "speedup_vs_ddpm": per_second / ddpm_per_second,
    }
    diagnostics = {"separation": feature_separation(real[a_idx], real[b_idx], generated), "patch": patch}
    diagnostics["groups"] = feature_group_separation(real[a_idx], real[b_idx], generated, args.seed)
    diagnostics["count_correlations"] = (hit_count_correlations(generated), hit_count_correlations(real[b_idx]))
    if patch > 1:  # where hits sit inside their block: the dot grid of uncertain hits on block centres
        shares = (block_centre_share(generated, patch), block_centre_share(real[b_idx], patch))
        diagnostics["centre_share"] = describe_block_centre_share(*shares, patch)
    diagnostics["edges"] = describe_edge_hits(edge_hits(generated), edge_hits(real[b_idx]))
    path, n_events, config, crop = source
    reference = training_reference(path, n_events, config, labels[b_idx], args.seed, crop)
    diagnostics["reference"] = scored("classifiers and W1: training-split reference", generated=reference, **split)
    if args.ceiling and getattr(model, "slots", 0):  # B through the hit slots and back: the representation's own
        round_trip = representation_round_trip(model, real[b_idx])
        diagnostics["ceiling"] = scored("classifiers and W1: representation ceiling", generated=round_trip, **split)
    diagnostics["repeats"] = [classifier_aucs(args.seed, rows)]
    for seed in range(args.seed + 1, args.seed + args.repeats):  # other A/B splits and sampling seeds
        a, b = split_halves(len(real), seed)
        more = sampling(f"sampling B of seed {seed}", sample, labels[b], steps, seed, guidance, eta)
        seed_split = {"real_a": real[a], "real_b": real[b], "labels_a": labels[a], "labels_b": labels[b]}
        seed_split |= {"cnn_epochs": args.cnn_epochs, "seed": seed}
        seed_rows = scored(f"classifiers and W1: seed {seed}", generated=more, **seed_split)
        diagnostics["repeats"].append(classifier_aucs(seed, seed_rows))
    shape = "x".join(map(str, real.shape[1:]))
    held_out = f"events of the independent file {args.test_data}" if args.test_data else "test events"
    desc = f"{what}: {len(real)} held-out {held_out} ({shape}), A = {len(a_idx)}, B = generated = {len(b_idx)}"
    desc += f"; the q/g row scores {args.qg_samples * len(b_idx)} generated events ({args.qg_samples} per event of B)"
    return rows, speed, diagnostics, desc


def print_repeats(repeats: list[dict[str, Any]]) -> None:
    """The HL and CNN AUCs per seed, then their mean and standard deviation over the seeds."""
    keys = ("hl_auc", "hl_floor", "cnn_auc", "cnn_floor")
    print()
    print("| seed (A/B split + sampling) | HL AUC | HL floor | CNN AUC | CNN floor |\n|---|---:|---:|---:|---:|")
    for row in repeats:
        print(f"| {row['seed']} | " + " | ".join(f"{row[k]:.3f}" for k in keys) + " |")
    values = np.array([[row[k] for k in keys] for row in repeats])
    cells = (f"{m:.3f} ± {s:.3f}" for m, s in zip(values.mean(0), values.std(0, ddof=1), strict=True))
    print(f"| mean ± sd over {len(repeats)} seeds | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", nargs="?", default="saved_models/diffusion")
    parser.add_argument("--events", type=int, default=400, help="held-out test events (A + B)")
    parser.add_argument(
        "--test-data", help="independent held-out file in the dataset schema (default: the export's test split)"
    )
    parser.add_argument("--steps", type=int, help="DDIM steps (default: the export's sample_steps)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance (default: the export's)")
    parser.add_argument("--eta", type=float, help="DDIM eta, 0 deterministic .. 1 DDPM (default: the export's)")
    parser.add_argument("--ddpm-steps", type=int, default=1000)
    parser.add_argument("--ddpm-events", type=int, default=8, help="events timed with the DDPM sampler")
    parser.add_argument("--cnn-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--features", type=int, default=6, help="most separating high-level features to print")
    parser.add_argument("--qg-samples", type=int, default=4, help="generated events per event of B for the q/g row")
    parser.add_argument("--repeats", type=int, default=1, help="seeds to repeat the HL and CNN AUCs over")
    parser.add_argument("--no-calibration", action="store_true", help="sample without the quantile calibration")
    parser.add_argument(
        "--ceiling", action="store_true", help="also the table of B's real events through the hit slots and back"
    )
    parser.add_argument(
        "--save-generated",
        metavar="FILE",
        help="write the generated events of B (the table's) with their labels to FILE in the dataset schema",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --save-generated file")
    parser.add_argument("--tiny", action="store_true", help="smoke mode: tiny untrained model on the sample")
    args = parser.parse_args(argv)
    if args.tiny:
        args.events, args.ddpm_steps, args.ddpm_events, args.cnn_epochs = min(args.events, 40), 20, 2, 1
    if args.qg_samples < 1:
        parser.error(f"--qg-samples must be >= 1, got {args.qg_samples}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    from hep_keras.errors import HepKerasError
    from hep_keras.evaluation.generation_quality import format_table
    from hep_keras.io import check_output_file

    try:
        if args.save_generated:
            check_output_file(args.save_generated, args.overwrite)  # before any work
        rows, speed, diagnostics, desc = run(args)
    except HepKerasError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"# {desc}")
    print(format_table(rows))
    print()
    print("| high-level feature (alone) | AUC generated vs real A | real B vs A |\n|---|---:|---:|")
    for row in diagnostics["separation"][: args.features]:
        print(f"| {row['feature']} | {row['auc']:.3f} | {row['floor']:.3f} |")
    print("(AUC > 0.5: larger in generated events; the features of the hl_auc classifier)")
    print()
    print("| feature group | hl_auc on the group alone | real B vs A | hl_auc on all other features |")
    print("|---|---:|---:|---:|")
    for row in diagnostics["groups"]:
        print(f"| {row['group']} | {row['alone']:.3f} | {row['floor']:.3f} | {row['without']:.3f} |")
    generated_r, real_r = (" / ".join(f"{r:.2f}" for r in v) for v in diagnostics["count_correlations"])
    print(
        f"Hits per event, rank correlation between channels (Tracks-ECAL / Tracks-HCAL / ECAL-HCAL): "
        f"generated {generated_r}, real B {real_r}."
    )
    if "centre_share" in diagnostics:
        print(diagnostics["centre_share"])
    print(diagnostics["edges"])
    print()
    print(
        "Reference (not a model output): training-split events with B's labels in the 'generated' column, what a "
        "perfect generator of the training distribution scores on this split:"
    )
    print(format_table(diagnostics["reference"]))
    if "ceiling" in diagnostics:
        print()
        print(
            "Representation ceiling (not a model output): the real events of B encoded into the model's hit slots and "
            "decoded (with slot_overflow: the hits beyond the slots restored at random with the training statistics), "
            "in the 'generated' column (what any generator in this representation can reach):"
        )
        print(format_table(diagnostics["ceiling"]))
    elif args.ceiling:
        print("\n(--ceiling: the model has no hit slots; its representation keeps every pixel, so no ceiling table)")
    if len(diagnostics["repeats"]) > 1:
        print_repeats(diagnostics["repeats"])
    print()
    print("| speed | value |\n|---|---:|")
    evaluations = speed["network_evaluations_per_event"]
    sampler = f"guidance {speed['guidance']:g}, eta {speed['eta']:g}"
    print(f"| network evaluations per event ({sampler}) | {evaluations} (target <= 50) |")
    print(f"| generated events/s | {speed['events_per_second']:.2f} |")
    print(f"| {speed['ddpm_steps']}-step DDPM events/s (same network) | {speed['ddpm_events_per_second']:.3f} |")
    print(f"| speed-up vs DDPM | {speed['speedup_vs_ddpm']:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
