"""Entry point of ``python -m hep_keras.data``; the command is :mod:`hep_keras.commands.data`."""

from hep_keras.commands import run
from hep_keras.commands.data import main

if __name__ == "__main__":
    run(main)
