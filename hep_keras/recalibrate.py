"""Entry point of ``python -m hep_keras.recalibrate``; the command is :mod:`hep_keras.commands.recalibrate`."""

from hep_keras.commands import run
from hep_keras.commands.recalibrate import main

if __name__ == "__main__":
    run(main)
