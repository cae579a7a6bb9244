"""``python -m hep_keras.fit vae|ae|diffusion|compressor``: train a model and leave a run a physicist can show.

Thin: parses the command line and resolves the config (defaults < ``--config`` < ``--set`` < flags); the run
itself is :func:`hep_keras.training.loop.fit_model`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hep_keras.commands import quiet_tensorflow
from hep_keras.training.config import (
    check_common,
    load_config_file,
    parse_jit_compile,
    parse_set_options,
    resolve_config,
)
from hep_keras.training.loop import fit_model
from hep_keras.training.recipes import RECIPES, get_recipe, recipe_defaults

#: command-line flags that are shortcuts for config keys
FLAG_KEYS = (
    "data",
    "epochs",
    "batch_size",
    "learning_rate",
    "max_events",
    "steps_per_epoch",
    "seed",
    "strategy",
    "cpu_replicas",
    "jit_compile",
)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """The options that set config keys (shared by ``fit`` and ``tune``); ``None`` = the config's value."""
    the_config = "(default: the model's, see --show-config)"
    parser.add_argument(
        "--data", help="input: HDF5 file, FILE.root:tree, a table, or tfds:quark_gluon[@DIR] (default: shipped sample)"
    )
    parser.add_argument("--config", help="TOML or JSON file of config keys (see --show-config)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key (repeatable)"
    )
    parser.add_argument("--epochs", type=int, help=f"training epochs {the_config}")
    parser.add_argument("--batch-size", type=int, help=f"global batch size in events (jets) {the_config}")
    parser.add_argument("--learning-rate", type=float, help=f"Adam learning rate {the_config}")
    parser.add_argument("--max-events", type=int, help="use only the first N events of the file (default: all)")
    parser.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one pass over the split)")
    parser.add_argument("--seed", type=int, help=f"seed of splits, initialisation and noise {the_config}")
    parser.add_argument("--strategy", help="default | mirrored | multi_worker (TF_CONFIG) | tpu (default: default)")
    parser.add_argument(
        "--cpu-replicas", type=int, help="without GPUs: split the CPU into N logical devices (--strategy mirrored)"
    )
    parser.add_argument(
        "--jit-compile", choices=("auto", "true", "false"), help="XLA compilation of the train step (default: auto)"
    )
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 compute (for GPUs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hep_keras.fit",
        description="Train a hep_keras model; writes runs/<model>/ and exports to saved_models/<model>/.",
    )
    parser.add_argument("model", choices=sorted(RECIPES), help="which model to train")
    add_config_options(parser)
    parser.add_argument("--run-dir", help="run directory (default runs/<model>)")
    parser.add_argument("--export-dir", help="export directory (default saved_models/<model>)")
    parser.add_argument("--no-export", action="store_true", help="skip the export")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run and an existing export")
    parser.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=None, help="Keras fit verbosity (default: auto)"
    )
    return parser


def config_from_args(args: argparse.Namespace, recipe) -> dict[str, Any]:
    """Defaults ← ``--config`` file ← ``--set`` ← explicit flags, validated."""
    defaults = recipe_defaults(recipe)
    layers: list[tuple[str, dict[str, Any]]] = []
    if args.config:
        layers.append((args.config, load_config_file(args.config)))
    layers.append(("--set", parse_set_options(args.set)))
    flags = {key: getattr(args, key, None) for key in FLAG_KEYS}  # other commands' parsers may lack some
    if flags["jit_compile"] is not None:
        flags["jit_compile"] = parse_jit_compile(flags["jit_compile"], "--jit-compile")
    if args.mixed_precision:
        flags["mixed_precision"] = True
    layers.append(("command line", flags))
    config = resolve_config(defaults, *layers)
    check_common(config)
    recipe.validate(config)
    return config


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    recipe = get_recipe(args.model)
    config = config_from_args(args, recipe)
    if args.show_config:
        print(json.dumps(config, indent=2, sort_keys=True))
        return 0
    run_dir = Path(args.run_dir or Path("runs") / args.model)
    export_dir = None if args.no_export else Path(args.export_dir or Path("saved_models") / args.model)
    verbose = "auto" if args.verbose is None else args.verbose
    fit_model(args.model, config, run_dir, export_dir, overwrite=args.overwrite, verbose=verbose)
    return 0
