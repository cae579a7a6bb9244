"""The command-line front ends, one module each, thin: parse the arguments, call the library, print.

``python -m hep_keras.<command>`` runs :mod:`hep_keras.commands.<command>` (the modules ``hep_keras/<command>.py``
are two-line entry points). This module holds what they share: :data:`COMMANDS`, :func:`run` (one ``error:``
line and exit status 2 for every user error) and :func:`quiet_tensorflow`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from hep_keras.errors import HepKerasError

#: command name -> what it does (``python -m hep_keras`` prints this list)
COMMANDS: dict[str, str] = {
    "fit": "train a model (vae | ae | diffusion | compressor): run directory, figures, metrics, export",
    "reconstruct": "reconstruct events of an HDF5 file with an exported VAE/AE/diffusion SavedModel",
    "generate": "generate quark/gluon jet images with an exported diffusion SavedModel",
    "recalibrate": "refit the calibration of a diffusion export (same weights) into a new export",
    "compress": "compress a jet 4-vector table with an exported compressor",
    "decompress": "restore a jet table written by compress",
    "tune": "Keras Tuner search over a model's hyperparameters (local or chief + workers)",
    "simulate": "Pythia8 + FastJet quark/gluon jet images in the CMS schema",
    "data": "inspect a jet-image file, or rewrite it for fast streaming (prepare)",
}


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter before it is imported (keeps real warnings)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run ``main(argv)`` and exit; a :class:`HepKerasError` becomes one ``error:`` line and exit status 2."""
    try:
        code = main(argv)
    except HepKerasError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
