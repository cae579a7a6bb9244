"""``python -m hep_keras.tune vae|ae|compressor|diffusion``: Keras Tuner search over a recipe's search space.

The data are loaded once (same config keys and defaults as ``hep_keras.fit``); each trial builds the recipe's
model with the config overridden by ``recipe.search_space(hp, config)`` and trains it for ``--epochs`` with
``EarlyStopping`` and ``TerminateOnNaN``, minimising ``val_loss``. At the end the best trial's overrides are
written as ``<directory>/<project>/best_config.json``, a file ``python -m hep_keras.fit <model> --config`` takes.

Distributed tuning is Keras Tuner's own chief/worker protocol: set ``KERASTUNER_TUNER_ID`` (``chief``,
``tuner0``, ...), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` and run the same command in every
process (``tuning/launch_local.sh`` starts a chief and workers on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from hep_keras.commands import quiet_tensorflow
from hep_keras.commands.fit import config_from_args
from hep_keras.errors import ConfigError, OutputError
from hep_keras.training.recipes import RECIPES, get_recipe

TUNERS = ("random", "bayesian", "hyperband")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hep_keras.tune", description="Keras Tuner search for a model.")
    parser.add_argument("model", choices=sorted(RECIPES))
    parser.add_argument("--data")
    parser.add_argument("--config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    for flag in ("epochs", "batch_size", "max_events", "steps_per_epoch", "seed"):
        parser.add_argument(f"--{flag.replace('_', '-')}", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--strategy")
    parser.add_argument("--cpu-replicas", type=int, help="without GPUs: N logical CPU devices (--strategy mirrored)")
    parser.add_argument("--jit-compile", choices=("auto", "true", "false"), help="XLA compilation of the train step")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--tuner", choices=TUNERS, default="random")
    parser.add_argument("--max-trials", type=int, default=10)
    parser.add_argument("--directory", default="tuning/results", help="where Keras Tuner keeps its trials")
    parser.add_argument("--project-name", help="default: the model name")
    parser.add_argument("--overwrite", action="store_true", help="start the search afresh")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    return parser


def make_hypermodel(recipe, config: dict[str, Any], data):
    """A ``keras_tuner.HyperModel`` building ``recipe``'s model with the trial's config overrides."""
    import keras_tuner as kt

    space = recipe.search_space

    class RecipeHyperModel(kt.HyperModel):
        def build(self, hp):
            trial_config = {**config, **space(hp, config)}
            recipe.validate(trial_config)
            return recipe.build_model(trial_config, data)

    return RecipeHyperModel(name=recipe.NAME)


def tune(name: str, config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run the search; return (and write) the best trial's config overrides."""
    import keras
    import keras_tuner as kt

    from hep_keras.data import data_errors
    from hep_keras.training.distribute import make_strategy
    from hep_keras.training.runs import ensure_writable_dir, set_precision

    if args.max_trials <= 0:
        raise ConfigError(f"--max-trials must be > 0, got {args.max_trials}")
    recipe = get_recipe(name)
    directory = ensure_writable_dir(Path(args.directory), "tuning directory")
    project = args.project_name or name
    set_precision(config["mixed_precision"])
    keras.utils.set_random_seed(config["seed"])
    data = recipe.load_data(config)
    common = dict(
        hypermodel=make_hypermodel(recipe, config, data),
        objective=kt.Objective(recipe.MONITOR, direction="min"),
        directory=str(directory),
        project_name=project,
        overwrite=args.overwrite,
        seed=config["seed"],
        distribution_strategy=None
        if config["strategy"] == "default"
        else make_strategy(config["strategy"], config["cpu_replicas"]),
    )
    if args.tuner == "hyperband":
        tuner = kt.Hyperband(max_epochs=config["epochs"], **common)
    elif args.tuner == "bayesian":
        tuner = kt.BayesianOptimization(max_trials=args.max_trials, **common)
    else:
        tuner = kt.RandomSearch(max_trials=args.max_trials, **common)
    train = data.train  # repeated by the recipe when steps_per_epoch is set
    callbacks = [
        keras.callbacks.EarlyStopping(monitor=recipe.MONITOR, patience=config["patience"]),
        keras.callbacks.TerminateOnNaN(),
    ]
    with data_errors():
        tuner.search(
            train,
            validation_data=data.val,
            epochs=config["epochs"],
            callbacks=callbacks,
            steps_per_epoch=config["steps_per_epoch"],
            shuffle=False,
            verbose=args.verbose,
        )
    if os.environ.get("KERASTUNER_TUNER_ID", "chief") != "chief":
        return {}  # workers report to the chief; only the chief summarises
    best = tuner.get_best_hyperparameters(1)
    if not best:
        raise OutputError(f"{directory / project}: no trial finished; see the log above")
    overrides = recipe.search_space(best[0], config)
    out = directory / project / "best_config.json"
    out.write_text(json.dumps(overrides, indent=2, sort_keys=True) + "\n")
    tuner.results_summary(num_trials=min(5, args.max_trials))
    print(
        f"best config: {json.dumps(overrides)}\nwritten to {out} "
        f"(train it: python -m hep_keras.fit {name} --config {out})",
        file=sys.stderr,
    )
    return overrides


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    recipe = get_recipe(args.model)
    config = config_from_args(args, recipe)
    tune(args.model, config, args)
    return 0
