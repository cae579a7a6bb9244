"""Entry point of ``python -m hep_keras.fit``; the command is :mod:`hep_keras.commands.fit`."""

from hep_keras.commands import run
from hep_keras.commands.fit import main

if __name__ == "__main__":
    run(main)
