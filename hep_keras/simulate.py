"""Entry point of ``python -m hep_keras.simulate``; the command is :mod:`hep_keras.commands.simulate`."""

from hep_keras.commands import run
from hep_keras.commands.simulate import main

if __name__ == "__main__":
    run(main)
