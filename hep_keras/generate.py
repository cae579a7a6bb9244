"""Entry point of ``python -m hep_keras.generate``; the command is :mod:`hep_keras.commands.generate`."""

from hep_keras.commands import run
from hep_keras.commands.generate import main

if __name__ == "__main__":
    run(main)
