"""``python -m hep_keras.decompress [EXPORT] IN.jets RESTORED.h5``: a compressed jet file → a jet table.

The codec is read from the file (:mod:`hep_keras.codecs`); ``EXPORT`` (the SavedModel export) is needed only for
files written with ``--codec ae`` and must be the same model (checked by its fingerprint). Writes a ``jets/``
group with float32 ``pt eta phi m E`` and int64 ``event`` (readable by :func:`hep_keras.data.jets.read_jets`).
Files of the older HDF5 format (``hep_keras.compressed_jets/1``) are still read, with their export.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hep_keras.decompress", description=__doc__.splitlines()[0])
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="[EXPORT] IN OUT",
        help="the export used to compress (only for --codec ae files), the compressed file, the jet table to write",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def _legacy(export: str | None, source: str):
    """A format-1 (HDF5) file: latent + corrections decoded with the export it was made with."""
    from hep_keras.commands.compress import load_jet_model
    from hep_keras.data.jet_codec import read_compressed, restored_table
    from hep_keras.errors import ConfigError, DataError

    if export is None:
        raise ConfigError(f"{source}: an HDF5 compressed file of format 1; give the export directory it was made with")
    data = read_compressed(source)
    model = load_jet_model(export)
    if data.attrs.get("model_fingerprint") != model.fingerprint:
        raise DataError(f"{source}: was compressed with a different model than {export}")
    return restored_table(data, model.decode, source=source)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hep_keras.codecs import CODECS, decompress_bytes
    from hep_keras.codecs.container import read_file
    from hep_keras.commands.compress import load_jet_model, model_bytes, ratio_report, split_paths
    from hep_keras.data.jets import table_from_arrays, write_jets_hdf5
    from hep_keras.io import check_output_file

    export, source, output = split_paths(args.paths)
    out = Path(output)
    check_output_file(out, args.overwrite)
    data = read_file(source)
    if data.startswith(b"\x89HDF"):
        table, codec = _legacy(export, source), "ae (format 1)"
    else:
        from hep_keras.codecs.container import from_bytes

        name = from_bytes(data, source)[0].get("codec")
        needs_model = name in CODECS and CODECS[name].needs_model
        model = load_jet_model(export) if needs_model and export is not None else None
        jets, event, header = decompress_bytes(data, source, model)
        table = table_from_arrays(dict(zip(("pt", "eta", "phi", "m"), jets.T, strict=True)), source, event)
        codec = header["codec"]
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        write_jets_hdf5(tmp, table, {"restored_from": str(source), "codec": codec})
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    print(f"wrote {out} ({len(table)} jets, codec {codec})", file=sys.stderr)
    print(ratio_report(len(table), len(data), model_bytes(export) if codec.startswith("ae") else None))
    return 0
