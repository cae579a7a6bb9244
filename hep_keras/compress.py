"""Entry point of ``python -m hep_keras.compress``; the command is :mod:`hep_keras.commands.compress`."""

from hep_keras.commands import run
from hep_keras.commands.compress import main

if __name__ == "__main__":
    run(main)
