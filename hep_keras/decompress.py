"""Entry point of ``python -m hep_keras.decompress``; the command is :mod:`hep_keras.commands.decompress`."""

from hep_keras.commands import run
from hep_keras.commands.decompress import main

if __name__ == "__main__":
    run(main)
