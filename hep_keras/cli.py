"""Helpers shared by the thin command-line front ends (``python -m hep_keras.<command>``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from hep_keras.errors import HepKerasError


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
