"""Entry point of ``python -m hep_keras.reconstruct``; the command is :mod:`hep_keras.commands.reconstruct`."""

from hep_keras.commands import run
from hep_keras.commands.reconstruct import main

if __name__ == "__main__":
    run(main)
