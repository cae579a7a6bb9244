"""``python -m hep_keras.compress saved_models/compressor IN OUT.h5``: jets → 3 latent numbers per jet.

Reads any jet table :func:`hep_keras.data.jets.read_jets` understands (``IN`` may be ``FILE.root:tree``),
encodes it with the export's SavedModel (no hep_keras model code is loaded) and writes the latent numbers, the
event index and (with ``--max-rel-error``) the corrections that bound every restored value; prints the
compression ratio in bytes. File layout and the error bound: :mod:`hep_keras.data.jet_codec`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hep_keras.commands import quiet_tensorflow


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hep_keras.compress", description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", help="export of `fit compressor` (saved_models/compressor)")
    parser.add_argument("input", help="jet file (.h5 .npz .parquet .csv .root[:tree], .pkl with --allow-pickle)")
    parser.add_argument("output", help="compressed HDF5 file to write")
    parser.add_argument("--columns", help="explicit columns, e.g. pt=Jet_pt,eta=Jet_eta,phi=Jet_phi,m=Jet_mass")
    parser.add_argument("--min-pt", type=float, help="keep only jets with pt >= MIN_PT GeV")
    parser.add_argument("--allow-pickle", action="store_true", help="allow .pkl input (executes code from it)")
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
        help="storage of the latent numbers (default: the export's measured recommendation)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    from hep_keras.data.jet_codec import (
        check_output,
        compress,
        directory_bytes,
        directory_fingerprint,
        ratio_report,
        write_compressed,
    )
    from hep_keras.data.jets import read_jets
    from hep_keras.data.schema import fingerprint
    from hep_keras.errors import ConfigError
    from hep_keras.export import SAVED_MODEL_DIR, load_saved_model

    for name in ("max_rel_error", "max_abs_error"):
        value = getattr(args, name)
        if value is not None and not 0 < value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be in (0, 1), got {value}")
    out = Path(args.output)
    check_output(out, args.overwrite)
    table = read_jets(args.input, columns=args.columns, allow_pickle=args.allow_pickle, min_pt=args.min_pt)
    loaded, metadata = load_saved_model(Path(args.export_dir))
    latent_dtype = args.latent_dtype or metadata.get("latent_dtype", "float32")
    saved = Path(args.export_dir) / SAVED_MODEL_DIR
    data = compress(
        table,
        lambda x: loaded.encode(x).numpy(),
        lambda z: loaded.decode(z).numpy(),
        latent_dtype=latent_dtype,
        max_rel_error=args.max_rel_error,
        max_abs_error=args.max_abs_error,
    )
    file_path = str(args.input).rsplit(":", 1)[0] if not Path(args.input).exists() else args.input
    data.attrs.update(
        model_fingerprint=directory_fingerprint(saved),
        variables=list(metadata.get("variables", ["pt", "eta", "phi", "m"])),
        units=[metadata.get("units", {}).get(v, "") for v in ("pt", "eta", "phi", "m")],
        source=str(args.input),
        source_fingerprint=fingerprint(file_path),
    )
    size = write_compressed(out, data, overwrite=args.overwrite)
    print(f"wrote {out} (latent {latent_dtype}, {len(data.exact_index)} jets stored exactly)", file=sys.stderr)
    print(ratio_report(len(table), size, directory_bytes(saved)))
    return 0
