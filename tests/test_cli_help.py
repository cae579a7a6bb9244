"""Every option of every command says what it does, and what it defaults to when it has a default."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from hep_keras.commands import COMMANDS


def options(parser: argparse.ArgumentParser, where: str):
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from options(sub, f"{where} {name}")
            continue
        yield where, action


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_help_and_states_its_default(command):
    parser = importlib.import_module(f"hep_keras.commands.{command}").build_parser()
    for where, action in options(parser, command):
        name = action.option_strings[0] if action.option_strings else action.dest
        assert action.help, f"{where} {name}: no help"
        stated = "default" in action.help or "%(default)" in action.help
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            assert stated, f"{where} {name}: the default {action.default!r} is not stated"


def test_python_m_hep_keras_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "hep_keras"], capture_output=True, text=True, check=True).stdout
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
