"""Entry point of ``python -m hep_keras.tune``; the command is :mod:`hep_keras.commands.tune`."""

from hep_keras.commands import run
from hep_keras.commands.tune import main

if __name__ == "__main__":
    run(main)
