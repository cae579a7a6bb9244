"""``python -m hep_keras.data {inspect,prepare,tfds}``: check a jet-image file, rewrite it for fast streaming, or
build the ``quark_gluon`` TensorFlow Dataset from it.

Examples::

    python -m hep_keras.data inspect quark-gluon_data-set_n139306.hdf5 [--check-values]
    python -m hep_keras.data prepare IN.h5 OUT.h5 --chunk-events 64 --compression gzip --gzip-level 4
    python -m hep_keras.data tfds quark-gluon_data-set_n139306.hdf5 --data-dir ~/tensorflow_datasets

Problems are reported as one ``error:`` line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse

from hep_keras.commands import quiet_tensorflow
from hep_keras.data.prepare import COMPRESSIONS, prepare
from hep_keras.data.schema import inspect_jet_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hep_keras.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser("inspect", help="validate a jet-image file and print a summary")
    inspect.add_argument("file", help="HDF5 file with X_jets, m0, pt, y")
    inspect.add_argument("--check-values", action="store_true", help="also scan every image for NaN/Inf (slow)")

    prep = commands.add_parser("prepare", help="rewrite a file with small chunks for fast streaming")
    prep.add_argument("input", help="valid jet-image HDF5 file")
    prep.add_argument("output", help="output HDF5 file (written to a temporary file, then renamed)")
    prep.add_argument("--chunk-events", type=int, default=64, help="events per HDF5 chunk (default 64)")
    prep.add_argument("--compression", choices=COMPRESSIONS, default="gzip", help="filter (default gzip)")
    prep.add_argument("--gzip-level", type=int, default=4, help="gzip level 0-9 (default 4)")
    prep.add_argument("--shuffle", action="store_true", help="add the HDF5 byte-shuffle filter")
    prep.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    prep.add_argument("--quiet", action="store_true", help="no progress line")

    build = commands.add_parser("tfds", help="build the quark_gluon TensorFlow Dataset from a jet-image file")
    build.add_argument("file", help="HDF5 file in the schema (the CMS file or e.g. the shipped sample)")
    build.add_argument("--data-dir", help="TFDS data directory (default $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    build.add_argument("--overwrite", action="store_true", help="rebuild an existing dataset")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (errors are raised as HepKerasError, see hep_keras.commands.run)."""
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    if args.command == "inspect":
        print(inspect_jet_file(args.file, check_values=args.check_values).summary())
        return 0
    if args.command == "tfds":
        from hep_keras.data.tfds import parse_tfds_spec, prepare_quark_gluon

        data_dir = args.data_dir or str(parse_tfds_spec("tfds:quark_gluon")[1])
        built = prepare_quark_gluon(args.file, data_dir, overwrite=args.overwrite)
        print(f"quark_gluon ({built['config']}, {built['n_events']} events) in {built['data_dir']}")
        print(f"use it with: --data tfds:quark_gluon@{data_dir}")
        return 0
    info = prepare(
        args.input,
        args.output,
        chunk_events=args.chunk_events,
        compression=args.compression,
        gzip_level=args.gzip_level,
        shuffle=args.shuffle,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(info.summary())
    return 0
