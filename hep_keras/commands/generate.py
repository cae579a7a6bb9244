"""``python -m hep_keras.generate EXPORT --events N --out FILE.h5``: new quark/gluon jet images from a diffusion export.

Loads only the SavedModel of an export made by ``python -m hep_keras.fit diffusion`` (no training config or
``.keras`` file needed) and calls its ``sample_labels`` endpoint in batches. The output file follows the
dataset schema (:mod:`hep_keras.data.schema`): ``X_jets`` (N, S, S, 3) GeV with S the model's image size
(125 for the default full-resolution model; ``--pad-to`` zero-pads a crop-trained model's events around the
centre), ``m0`` and ``pt`` computed from the generated image
(:func:`hep_keras.physics.image_observables`: image jet mass and pT from ECAL + HCAL), and ``y``
(0 quark, 1 gluon). It is written to a temporary file beside ``--out`` and renamed into place when complete.

Examples::

    python -m hep_keras.generate saved_models/diffusion --events 1000 --label gluon --steps 25 --out gluons.h5
    python -m hep_keras.generate saved_models/diffusion --events 500 --label mixed --steps 50 --eta 1 \\
        --guidance 2 --seed 7 --out mixed.h5 --overwrite
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from hep_keras.commands import quiet_tensorflow
from hep_keras.errors import ConfigError, DataError
from hep_keras.io import atomic_file, check_output_file

LABELS = {"quark": 0, "gluon": 1}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hep_keras.generate",
        description="Generate jet images with an exported diffusion model; writes an HDF5 file in the dataset schema.",
    )
    parser.add_argument("export", help="export directory of `python -m hep_keras.fit diffusion`")
    parser.add_argument("--events", type=int, required=True, help="number of events to generate")
    parser.add_argument(
        "--label", choices=("quark", "gluon", "mixed"), default="mixed", help="default: mixed (half/half)"
    )
    parser.add_argument(
        "--steps", type=int, default=25, help="sampling steps = network evaluations per event (default: %(default)s)"
    )
    parser.add_argument("--eta", type=float, default=0.0, help="0 = deterministic DDIM ... 1 = DDPM (default 0)")
    parser.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale, 1 = none; each step then costs 2 network evaluations "
        "(default: the export's, i.e. what its training run was evaluated with)",
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed and options -> identical events")
    parser.add_argument("--batch-size", type=int, default=256, help="events per sampling call (default: %(default)s)")
    parser.add_argument("--pad-to", type=int, help="zero-pad the images to this size (e.g. 125)")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Raise :class:`ConfigError` / :class:`OutputError` for invalid values (before loading anything)."""
    for name in ("events", "steps", "batch_size"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if not 0 <= args.eta <= 1:
        raise ConfigError(f"--eta must be in [0, 1], got {args.eta}")
    if args.guidance is not None and args.guidance < 0:
        raise ConfigError(f"--guidance must be >= 0, got {args.guidance}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    check_output_file(args.out, args.overwrite)


def make_labels(n: int, label: str, seed: int) -> np.ndarray:
    """``(n,)`` int32 labels: all 0 (quark), all 1 (gluon), or half/half in a seeded random order (mixed)."""
    if label in LABELS:
        return np.full(n, LABELS[label], np.int32)
    labels = np.repeat(np.array([0, 1], np.int32), [n // 2, n - n // 2])
    return np.random.default_rng(seed).permutation(labels)


def pad_images(images: np.ndarray, size: int | None) -> np.ndarray:
    """Zero-pad ``(N, S, S, C)`` images around the centre to ``size × size`` (same offsets as a central crop)."""
    if size is None or size == images.shape[1]:
        return images
    if size < images.shape[1]:
        raise ConfigError(f"--pad-to {size} is smaller than the model's images ({images.shape[1]} pixels)")
    before = (size - images.shape[1]) // 2
    after = size - images.shape[1] - before
    return np.pad(images, ((0, 0), (before, after), (before, after), (0, 0)))


def load_diffusion_export(path: Path):
    """The SavedModel and metadata of a diffusion export; :class:`DataError` for anything else."""
    from hep_keras.export import load_saved_model

    loaded, metadata = load_saved_model(path, models=("diffusion",))
    if not hasattr(loaded, "sample_labels"):
        raise DataError(f"{path}: not a diffusion export (no sample_labels endpoint)")
    return loaded, metadata


def write_jet_file(path: Path, images: np.ndarray, labels: np.ndarray, attrs: dict) -> None:
    """Write ``X_jets``, ``m0``, ``pt``, ``y`` to ``path`` atomically (temporary file + rename)."""
    import h5py

    from hep_keras.physics import image_observables

    obs = image_observables(images)
    with atomic_file(path) as tmp, h5py.File(tmp, "w") as handle:
        chunks = (min(len(images), 32), *images.shape[1:])
        handle.create_dataset("X_jets", data=images.astype(np.float32), chunks=chunks, compression="gzip")
        handle["X_jets"].attrs["units"] = "GeV"
        handle.create_dataset("m0", data=obs["mass"].astype(np.float32))
        handle.create_dataset("pt", data=obs["pt"].astype(np.float32))
        handle.create_dataset("y", data=labels.astype(np.float32))
        for key, value in attrs.items():
            handle.attrs[key] = value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    quiet_tensorflow()
    loaded, metadata = load_diffusion_export(Path(args.export))

    from hep_keras.models.diffusion import sample_in_batches

    if args.guidance is None:
        args.guidance = float(metadata.get("config", {}).get("guidance", 1.0))
    labels = make_labels(args.events, args.label, args.seed)
    start = time.perf_counter()
    images = sample_in_batches(
        loaded.sample_labels, labels, args.steps, args.seed, args.guidance, args.eta, args.batch_size
    )
    seconds = time.perf_counter() - start
    images = pad_images(images, args.pad_to)
    attrs = {
        "source": "hep_keras.generate",
        "export": str(Path(args.export).resolve()),
        "steps": args.steps,
        "eta": args.eta,
        "guidance": args.guidance,
        "seed": args.seed,
        "label": args.label,
        "model_image_size": int(metadata.get("image_size", images.shape[1])),
    }
    write_jet_file(Path(args.out), images, labels, attrs)
    print(
        f"wrote {args.events} events ({args.label}, {args.steps} steps) to {args.out} "
        f"in {seconds:.1f} s ({1000 * seconds / args.events:.1f} ms/event)",
        file=sys.stderr,
    )
    return 0
