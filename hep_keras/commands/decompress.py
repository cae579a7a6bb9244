"""``python -m hep_keras.decompress saved_models/compressor IN.h5 RESTORED.h5``: latent numbers → jets.

Decodes a file written by :mod:`hep_keras.compress` with the same export's SavedModel (checked by its
fingerprint), applies the stored corrections and writes a ``jets/`` group with float32 ``pt eta phi m E`` and
int64 ``event`` (readable by :func:`hep_keras.data.jets.read_jets`). Prints the compression ratio in bytes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hep_keras.commands import quiet_tensorflow


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hep_keras.decompress", description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", help="the export used to compress (saved_models/compressor)")
    parser.add_argument("input", help="compressed file from `python -m hep_keras.compress`")
    parser.add_argument("output", help="restored HDF5 jet table to write")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    from hep_keras.data.jet_codec import (
        check_output,
        directory_bytes,
        directory_fingerprint,
        ratio_report,
        read_compressed,
        restored_table,
    )
    from hep_keras.data.jets import write_jets_hdf5
    from hep_keras.errors import DataError
    from hep_keras.export import SAVED_MODEL_DIR, load_saved_model

    out = Path(args.output)
    check_output(out, args.overwrite)
    data = read_compressed(args.input)
    loaded, _ = load_saved_model(Path(args.export_dir))
    saved = Path(args.export_dir) / SAVED_MODEL_DIR
    if data.attrs.get("model_fingerprint") != directory_fingerprint(saved):
        raise DataError(f"{args.input}: was compressed with a different model than {args.export_dir}")
    table = restored_table(data, lambda z: loaded.decode(z).numpy(), source=str(args.input))
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        write_jets_hdf5(tmp, table, {"restored_from": str(args.input)})
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    print(f"wrote {out} ({len(table)} jets)", file=sys.stderr)
    print(ratio_report(len(table), Path(args.input).stat().st_size, directory_bytes(saved)))
    return 0
