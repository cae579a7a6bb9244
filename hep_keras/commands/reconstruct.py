"""``python -m hep_keras.reconstruct saved_models/vae --data FILE --out DIR``: reconstruct events with an export.

Loads only the SavedModel (TensorFlow; no hep_keras model code, no training config), streams the input file
in order, and writes into ``DIR`` (created atomically):

* ``reconstructed.h5`` — the dataset schema: ``X_jets`` (N,H,W,3) float32 GeV reconstructions, ``m0``, ``pt``,
  ``y`` copied from the source events, plus ``index`` (int64, the source row of each event);
* ``figures/`` and ``metrics.json`` / ``report.md`` on the first ``--eval-events`` events. For VAE / AE exports
  the report opens with verdicts against the mean-image and PCA baselines (fitted on the training split of the
  file the export was trained on, when that file is here).

Without ``--data`` the input is the **test split** of the shipped sample (the split the export's training run
held out, from its config), never the events it was trained on; the output and the report say so.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from hep_keras.commands import quiet_tensorflow
from hep_keras.errors import DataError
from hep_keras.io import atomic_directory, check_output_dir
from hep_keras.progress import stage_bar


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hep_keras.reconstruct", description="Reconstruct jet images with an exported model."
    )
    parser.add_argument("export", help="export directory, e.g. saved_models/vae")
    parser.add_argument(
        "--data",
        help="HDF5 file in the jet-image schema or tfds:quark_gluon[@DATA_DIR] (default: the test split of the "
        "shipped sample)",
    )
    parser.add_argument("--out", required=True, help="output directory (must not exist unless --overwrite)")
    parser.add_argument("--events", type=int, help="reconstruct only the first N events of the file")
    parser.add_argument("--batch-size", type=int, default=64, help="events per call of the export (default: 64)")
    parser.add_argument(
        "--eval-events", type=int, default=1000, help="events used for metrics and figures (default: 1000)"
    )
    parser.add_argument("--figure-events", type=int, default=4, help="event displays drawn (default: 4)")
    parser.add_argument("--steps", type=int, default=50, help="sampler steps, diffusion exports only (default: 50)")
    parser.add_argument(
        "--baseline-events",
        type=int,
        default=2000,
        help="training events for the mean-image/PCA baselines (default: 2000)",
    )
    parser.add_argument(
        "--cnn-epochs", type=int, default=10, help="epochs of the CNN two-sample test, 0 = skip (default: 10)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    return parser


def _split_settings(metadata: dict) -> dict:
    """seed / fractions / max_events of the export's training run (the defaults when not recorded)."""
    from hep_keras.training.config import COMMON_DEFAULTS

    config = metadata.get("config") or {}
    return {key: config.get(key, COMMON_DEFAULTS[key]) for key in ("seed", "fractions", "max_events")}


def _training_events(metadata: dict, count: int) -> dict | None:
    """Up to ``count`` training-split events of the file the export was trained on, or None when unavailable."""
    from hep_keras.data import inspect_jet_file, read_events, split_indices

    path = Path((metadata.get("data") or {}).get("path", ""))
    if not path.is_file():
        return None
    info = inspect_jet_file(path)
    if info.fingerprint != metadata["data"].get("fingerprint"):
        return None
    split = _split_settings(metadata)
    n = min(info.n_events, split["max_events"]) if split["max_events"] else info.n_events
    index = split_indices(n, "train", tuple(split["fractions"]), split["seed"])[:count]
    return read_events(path, index, fields=("X_jets", "y")) if index.size else None


def reconstruct_file(export_dir: Path, data: Path, out: Path, args: argparse.Namespace, split: str = "all") -> dict:
    """Run the export's ``reconstruct`` endpoint over ``split`` of ``data``; write ``out``; return the metrics."""
    import h5py
    import tensorflow as tf

    from hep_keras.data import data_errors, inspect_jet_file, jet_images
    from hep_keras.data.tfds import is_tfds, tfds_images, tfds_info
    from hep_keras.evaluation.images import evaluate_reconstruction
    from hep_keras.evaluation.report import write_metrics
    from hep_keras.export import load_saved_model

    if is_tfds(str(data)):  # tfds:quark_gluon[@DATA_DIR]: every split, train + validation + test
        described = tfds_info(str(data))
        image_shape, n_events, fingerprint = described["image_shape"], described["n_events"], described["fingerprint"]
    else:
        info = inspect_jet_file(data)
        image_shape, n_events, fingerprint = list(info.image_shape), info.n_events, info.fingerprint
    loaded, metadata = load_saved_model(export_dir, models=("vae", "ae", "diffusion"))
    expected = metadata.get("image_shape")
    if expected and list(image_shape) != list(expected):
        raise DataError(f"{data}: images are {list(image_shape)} but {export_dir} expects {expected}")
    from hep_keras.data import split_indices

    uses_steps = "steps" in metadata.get("reconstruct_args", ["images"])
    fields = ("X_jets", "y", "m0", "pt")
    if is_tfds(str(data)):  # every event of the TFDS splits, in order
        rows = np.arange(n_events if not args.events else min(args.events, n_events))
        n = len(rows)
        ds = tfds_images(str(data), "all", args.batch_size, fields=fields, shuffle=False, max_events=n)
    else:
        settings = _split_settings(metadata) if split != "all" else {"seed": 0, "fractions": [0.8, 0.1, 0.1]}
        limit = settings.get("max_events") if split != "all" else None
        n_file = min(n_events, limit) if limit else n_events
        rows = split_indices(n_file, split, tuple(settings["fractions"]), settings["seed"])
        rows = rows[: args.events] if args.events else rows
        n = len(rows)
        ds = jet_images(
            data,
            split,
            args.batch_size,
            fields=fields,
            shuffle=False,
            max_events=n_file,
            seed=settings["seed"],
            fractions=tuple(settings["fractions"]),
        ).take(-(-n // args.batch_size))
    check_output_dir(out, args.overwrite)
    with atomic_directory(out) as staging:
        keep_o, keep_r, keep_y = [], [], []
        kept = 0
        h, w, c = image_shape
        with h5py.File(staging / "reconstructed.h5", "w") as f, data_errors():
            x_out = f.create_dataset(
                "X_jets",
                (n, h, w, c),
                "float32",
                chunks=(min(32, n), h, w, c),
                compression="gzip",
                shuffle=True,
            )
            scalars = {k: f.create_dataset(k, (n,), "float32") for k in ("y", "m0", "pt")}
            f.create_dataset("index", data=rows.astype(np.int64))
            f.attrs["source"] = str(data)
            f.attrs["source_split"] = split
            f.attrs["source_fingerprint"] = fingerprint
            f.attrs["export"] = str(export_dir)
            f.attrs["model"] = metadata.get("model", "?")
            done = 0
            bar = stage_bar(f"reconstructing {n} events", n)
            for images, y, m0, pt in ds:
                if uses_steps:
                    reco = loaded.reconstruct(images, tf.constant(args.steps, tf.int32))
                else:
                    reco = loaded.reconstruct(images)
                reco = np.asarray(reco, dtype=np.float32)[: n - done]
                images, y, m0, pt = images[: len(reco)], y[: len(reco)], m0[: len(reco)], pt[: len(reco)]
                size = len(reco)
                x_out[done : done + size] = reco
                for key, values in (("y", y), ("m0", m0), ("pt", pt)):
                    scalars[key][done : done + size] = values.numpy()
                if kept < args.eval_events:
                    take = min(size, args.eval_events - kept)
                    keep_o.append(images.numpy()[:take])
                    keep_r.append(reco[:take])
                    keep_y.append(y.numpy()[:take])
                    kept += take
                done += size
                bar.update(done)
        where = (
            f"the {split} split of {data} ({n} events the export's training run held out)"
            if split != "all"
            else f"{data} ({n} events)"
        )
        if metadata.get("model") in ("vae", "ae"):
            from hep_keras.evaluation.autoencoder_report import evaluate_autoencoder

            train = _training_events(metadata, args.baseline_events)
            metrics = evaluate_autoencoder(
                metadata["model"],
                np.concatenate(keep_o),
                np.concatenate(keep_r),
                staging / "figures",
                code_size=len(metadata.get("code_layout", [])) or 20,
                thresholds=(metadata.get("normalization") or {}).get("zero_thresholds"),
                test_labels=np.concatenate(keep_y),
                train_images=None if train is None else train["X_jets"],
                train_labels=None if train is None else train["y"],
                cnn_epochs=args.cnn_epochs,
                figure_events=args.figure_events,
                notes=[f"Input: {where}; metrics on the first {len(np.concatenate(keep_o))} of them."],
            )
        else:
            metrics = evaluate_reconstruction(
                np.concatenate(keep_o),
                np.concatenate(keep_r),
                staging / "figures",
                figure_events=args.figure_events,
            )
            metrics["notes"] = [f"Input: {where}."]
        write_metrics(
            staging,
            f"hep_keras reconstruct ({metadata.get('model', '?')})",
            metrics,
            {"export": str(export_dir), "events": n, "steps": args.steps if uses_steps else None},
            {"path": str(data), "n_events": n},
        )
    return metrics


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    from hep_keras.data.sample import SAMPLE_PATH

    for name in ("batch_size", "eval_events", "steps", "baseline_events"):
        if getattr(args, name) <= 0:
            raise DataError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.events is not None and args.events <= 0:
        raise DataError(f"--events must be > 0, got {args.events}")
    if args.cnn_epochs < 0:
        raise DataError(f"--cnn-epochs must be >= 0, got {args.cnn_epochs}")
    data = (args.data if args.data.startswith("tfds:") else Path(args.data)) if args.data else SAMPLE_PATH
    split = "all" if args.data else "test"
    if split == "test":
        print(f"no --data: reconstructing the test split of the shipped sample {SAMPLE_PATH}", file=sys.stderr)
    metrics = reconstruct_file(Path(args.export), data, Path(args.out), args, split=split)
    if "fidelity" in metrics:
        from hep_keras.evaluation.fidelity_report import verdicts

        name = next(iter(metrics["fidelity"]["models"]))
        print(f"wrote {args.out}:", *verdicts(metrics["fidelity"], name), sep="\n  ", file=sys.stderr)
    else:
        response = metrics["response"]
        print(
            f"wrote {args.out}: total-energy response {response['energy_total']['mean']:.3f} ± "
            f"{response['energy_total']['std']:.3f}, mass response {response['mass']['mean']:.3f} ± "
            f"{response['mass']['std']:.3f}",
            file=sys.stderr,
        )
    return 0
