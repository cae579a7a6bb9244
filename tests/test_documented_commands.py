"""Every command line shown in README.md and docs/ is accepted by the command it names.

The fenced ``bash`` blocks of the documentation are read; each ``python -m hep_keras.<command> ...`` line
(continuations joined, trailing ``# comments`` dropped) is parsed by that command's own argument parser, and
``fit`` / ``tune`` lines are also resolved into a validated config (so ``--set key=value`` lines with unknown
keys or wrong types fail here). Synopsis lines with ``[optional]`` or ``a|b`` placeholders (outside quotes: a
quoted ``--set 'key=[1,2]'`` is a value) are not commands and are skipped. The commands themselves are run end
to end by the other tests.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "tuning" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND = re.compile(r"python -m hep_keras\.(\w+)((?:\s+\S+)*)")


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """``(where, command, argv)`` for every runnable command line in a fenced shell block."""
    found = []
    for path in DOCUMENTS:
        for block in re.findall(r"```(?:bash|sh|shell)\n(.*?)```", path.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                match = COMMAND.search(line)
                unquoted = re.sub(r"'[^']*'|\"[^\"]*\"", "", match.group(2)) if match else ""
                if not match or re.search(r"[\[\]|]|\.\.\.", unquoted):
                    continue
                found.append((f"{path.name}: {line}", match.group(1), shlex.split(match.group(2))))
    return found


COMMANDS = documented_commands()


def test_the_documentation_shows_commands():
    assert {"fit", "reconstruct", "generate", "simulate"} <= {name for _, name, _ in COMMANDS}


@pytest.mark.parametrize(("where", "name", "argv"), COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_documented_command_is_accepted(where, name, argv, tmp_path):
    if "--config" in argv:  # the config file a reader would write: stand in an empty one
        config = argv.index("--config") + 1
        argv = [*argv[:config], str(tmp_path / Path(argv[config]).name), *argv[config + 1 :]]
        Path(argv[config]).write_text("{}" if argv[config].endswith(".json") else "")
    module = importlib.import_module(f"hep_keras.commands.{name}")
    args = module.build_parser().parse_args(argv)
    if name in ("fit", "tune"):
        from hep_keras.commands.fit import config_from_args
        from hep_keras.training.recipes import get_recipe

        config_from_args(args, get_recipe(args.model))
