"""``python -m hep_keras.compress [EXPORT] IN OUT --max-rel-error E``: jets → the smallest file within a bound.

Reads any jet table :func:`hep_keras.data.jets.read_jets` understands (``IN`` may be ``FILE.root:tree``) and
writes it with a codec of :mod:`hep_keras.codecs`: ``--codec auto`` (default) tries every codec (the
autoencoder ``ae`` only when the export directory ``EXPORT`` is given) and keeps the smallest file that meets the
bound on every jet; ``float32 float16 quantized zfp context ae`` choose one. Without a bound ``auto`` stores
float32 (exact for float32 input) and ``ae`` stores the 3 latent numbers (no guarantee). The file records its
codec, so ``decompress`` needs no option. Prints the compression ratio in bytes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hep_keras.commands import quiet_tensorflow


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hep_keras.compress", description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="[EXPORT] IN OUT",
        help="optional export of `fit compressor` (needed for --codec ae), the jet file "
        "(.h5 .npz .parquet .csv .root[:tree], .pkl with --allow-pickle) and the compressed file to write",
    )
    parser.add_argument(
        "--codec",
        default="auto",
        help="auto | float32 | float16 | quantized | zfp | context | ae (default: auto = the smallest that keeps "
        "the bound)",
    )
    parser.add_argument(
        "--max-rel-error",
        type=float,
        metavar="E",
        help="bound every restored pt, m within relative E (eta, phi within absolute E)",
    )
    parser.add_argument("--max-abs-error", type=float, metavar="D", help="absolute bound for eta, phi (default E)")
    parser.add_argument(
        "--latent-dtype",
        choices=("float16", "float32"),
        default="float16",
        help="storage of the latent numbers of --codec ae without a bound (default: float16)",
    )
    parser.add_argument("--columns", help="explicit columns, e.g. pt=Jet_pt,eta=Jet_eta,phi=Jet_phi,m=Jet_mass")
    parser.add_argument("--min-pt", type=float, help="keep only jets with pt >= MIN_PT GeV")
    parser.add_argument("--allow-pickle", action="store_true", help="allow .pkl input (executes code from it)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def split_paths(paths: list[str]) -> tuple[str | None, str, str]:
    """``[EXPORT] IN OUT`` → ``(export or None, in, out)``; ConfigError for another count."""
    from hep_keras.errors import ConfigError

    if len(paths) == 2:
        return None, paths[0], paths[1]
    if len(paths) == 3:
        return paths[0], paths[1], paths[2]
    raise ConfigError(f"expected [EXPORT] IN OUT, got {len(paths)} path(s): {' '.join(paths)}")


def load_jet_model(export_dir: str):
    """The export's SavedModel as a :class:`~hep_keras.codecs.JetModel` (with its fingerprint)."""
    quiet_tensorflow()
    from hep_keras.codecs import JetModel
    from hep_keras.data.jet_codec import directory_fingerprint
    from hep_keras.export import SAVED_MODEL_DIR, load_saved_model

    loaded, _ = load_saved_model(Path(export_dir), models=("compressor",))
    return JetModel.from_saved_model(loaded, directory_fingerprint(Path(export_dir) / SAVED_MODEL_DIR))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hep_keras.codecs import CODECS, Bound, choose_codec, compress_jets, make_codec
    from hep_keras.codecs.base import check_lossy_bound
    from hep_keras.codecs.container import write_atomic
    from hep_keras.data.jets import read_jets, split_tree
    from hep_keras.data.schema import fingerprint
    from hep_keras.errors import ConfigError
    from hep_keras.io import check_output_file

    export, source, output = split_paths(args.paths)
    out = Path(output)
    check_output_file(out, args.overwrite)
    if args.codec != "auto" and args.codec not in CODECS:
        raise ConfigError(f"--codec: unknown codec {args.codec!r} (known: auto, {', '.join(CODECS)})")
    bound = Bound.from_options(args.max_rel_error, args.max_abs_error)
    if args.codec not in ("auto", "float32", "float16") and not (args.codec == "ae" and bound is None):
        check_lossy_bound(args.codec, bound)
    if args.codec == "ae" and export is None:
        raise ConfigError("--codec ae needs the model: give the export directory first (EXPORT IN OUT)")
    table = read_jets(source, columns=args.columns, allow_pickle=args.allow_pickle, min_pt=args.min_pt)
    model = load_jet_model(export) if export is not None else None
    jets, event = table.four_vectors(float), table.event
    name = args.codec
    if name == "auto":
        name, sizes = choose_codec(jets, event, bound, model, str(source), args.latent_dtype)
        tried = ", ".join(f"{k} {'-' if v is None else v}" for k, v in sizes.items())
        print(f"--codec auto: {name}" + (f" (bytes on the first jets: {tried})" if tried else ""), file=sys.stderr)
    codec = make_codec(name, model, args.latent_dtype)
    header = {"source": str(source), "source_fingerprint": fingerprint(split_tree(source)[0])}
    result = compress_jets(jets, event, codec, bound, str(source), header)
    size = write_atomic(out, result.data, overwrite=args.overwrite)
    worst = ", ".join(f"{k} {v:.2g}" for k, v in result.max_errors.items())
    print(f"wrote {out} (codec {name}; largest error: {worst})", file=sys.stderr)
    print(ratio_report(len(jets), size, model_bytes(export) if codec.needs_model else None))
    return 0


def model_bytes(export: str | None) -> int | None:
    from hep_keras.data.jet_codec import directory_bytes
    from hep_keras.export import SAVED_MODEL_DIR

    return None if export is None else directory_bytes(Path(export) / SAVED_MODEL_DIR)


def ratio_report(n_jets: int, file_bytes: int, model: int | None) -> str:
    """Lines with the compression ratio against raw 4 x float32 (16 B/jet), with the model's size if one is used."""
    raw = 16 * n_jets
    lines = [
        f"jets: {n_jets}; raw 4 x float32: {raw} bytes (16 B/jet)",
        f"compressed file: {file_bytes} bytes ({file_bytes / max(n_jets, 1):.2f} B/jet), ratio {raw / file_bytes:.3f}",
    ]
    if model is not None:
        lines.append(f"with the model ({model} bytes): ratio {raw / (file_bytes + model):.3f}")
    return "\n".join(lines)
