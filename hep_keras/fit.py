"""``python -m hep_keras.fit vae|ae|diffusion|compressor``: train a model and leave a run a physicist can show.

Parses the command line, resolves the config, then :func:`fit_model` does the work: run directory, data,
model (inside the ``tf.distribute`` strategy), Keras ``fit`` with the standard callbacks (resume, NaN guard,
early stopping, best checkpoint, CSV, TensorBoard), evaluation on the test split (figures, ``metrics.json``,
``report.md``) and the atomic export to ``saved_models/<model>/``. Running the same command again after the
process was killed resumes the unfinished run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hep_keras.cli import quiet_tensorflow, run
from hep_keras.config import (
    COMMON_DEFAULTS,
    check_common,
    load_config_file,
    parse_jit_compile,
    parse_value,
    resolve_config,
)
from hep_keras.errors import ConfigError
from hep_keras.recipes import RECIPES, get_recipe

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hep_keras.fit",
        description="Train a hep_keras model; writes runs/<model>/ and exports to saved_models/<model>/.",
    )
    parser.add_argument("model", choices=sorted(RECIPES), help="which model to train")
    parser.add_argument("--data", help="input file (default: the shipped sample)")
    parser.add_argument("--config", help="TOML or JSON file of config keys (see --show-config)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--max-events", type=int, help="use only the first N events of the file")
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--strategy", help="default | mirrored | multi_worker (TF_CONFIG) | tpu")
    parser.add_argument(
        "--cpu-replicas", type=int, help="without GPUs: split the CPU into N logical devices (--strategy mirrored)"
    )
    parser.add_argument("--jit-compile", choices=("auto", "true", "false"), help="XLA compilation of the train step")
    parser.add_argument("--mixed-precision", action="store_true", help="mixed_float16 compute (for GPUs)")
    parser.add_argument("--run-dir", help="run directory (default runs/<model>)")
    parser.add_argument("--export-dir", help="export directory (default saved_models/<model>)")
    parser.add_argument("--no-export", action="store_true", help="skip the export")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run and an existing export")
    parser.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=None, help="Keras fit verbosity")
    return parser


def recipe_defaults(recipe) -> dict[str, Any]:
    """Common defaults overlaid with the recipe's own keys."""
    return {**COMMON_DEFAULTS, **recipe.DEFAULTS}


def config_from_args(args: argparse.Namespace, recipe) -> dict[str, Any]:
    """Defaults ← ``--config`` file ← ``--set`` ← explicit flags, validated."""
    defaults = recipe_defaults(recipe)
    layers: list[tuple[str, dict[str, Any]]] = []
    if args.config:
        layers.append((args.config, load_config_file(args.config)))
    sets = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        sets[key.strip()] = parse_value(value.strip())
    layers.append(("--set", sets))
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


def fit_model(
    name: str,
    config: dict[str, Any],
    run_dir: Path,
    export_dir: Path | None = None,
    overwrite: bool = False,
    verbose: int | str = "auto",
) -> dict[str, Any]:
    """Train ``name`` with ``config``; write the run directory and the export. Returns the test metrics.

    Under ``--strategy multi_worker`` every worker runs this; only the chief writes ``run_dir`` and
    ``export_dir``, the other workers write into a temporary directory removed at the end.
    """
    from hep_keras.distribute import is_chief, make_strategy
    from hep_keras.export import check_export_target
    from hep_keras.runs import check_run_dir

    recipe = get_recipe(name)
    # the strategy first: MultiWorkerMirroredStrategy must exist before TensorFlow runs any op
    strategy = make_strategy(config["strategy"], config["cpu_replicas"])
    chief = is_chief(strategy)
    run_dir = Path(run_dir)
    if chief:
        check_run_dir(run_dir, overwrite)
        if export_dir is not None:
            check_export_target(Path(export_dir), overwrite)
    else:  # a non-chief worker runs every step but keeps its files in a temporary directory
        run_dir = Path(tempfile.mkdtemp(prefix="hep_keras-worker-"))
        export_dir = None if export_dir is None else run_dir / "export"
    try:
        return _fit(recipe, strategy, name, config, run_dir, export_dir, overwrite and chief, verbose, chief)
    finally:
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)


def _fit(recipe, strategy, name, config, run_dir: Path, export_dir, overwrite, verbose, chief) -> dict[str, Any]:
    import keras

    from hep_keras.data import data_errors
    from hep_keras.evaluation.plots import plot_history
    from hep_keras.evaluation.report import write_metrics
    from hep_keras.export import write_atomically
    from hep_keras.runs import mark_done, prepare_run_dir, set_precision, standard_callbacks

    set_precision(config["mixed_precision"])
    keras.utils.set_random_seed(config["seed"])
    with strategy.scope():
        data = recipe.load_data(config)
        model = recipe.build_model(config, data)
    # the inputs are valid: only now create (or resume) the run directory
    if prepare_run_dir(run_dir, config, overwrite) and chief:
        print(f"resuming the unfinished run in {run_dir}", file=sys.stderr)
    train = data.train  # repeated by the recipe when steps_per_epoch is set
    callbacks = standard_callbacks(run_dir, recipe.MONITOR, config["patience"])
    callbacks += getattr(recipe, "extra_callbacks", lambda config, run_dir: [])(config, run_dir)
    with data_errors():
        model.fit(
            train,
            validation_data=data.val,
            epochs=config["epochs"],
            steps_per_epoch=config["steps_per_epoch"],
            callbacks=callbacks,
            shuffle=False,  # the pipeline shuffles (blocks per epoch + event buffer)
            verbose=verbose,
        )
    best = run_dir / "checkpoints" / "best.weights.h5"
    if best.exists():
        model.load_weights(str(best))

    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    metrics = recipe.evaluate(model, config, data, run_dir)
    plot_history(run_dir / "history.csv", figures / "losses.png")
    write_metrics(run_dir, f"hep_keras {name}", metrics, config, data.info)

    if export_dir is not None:
        write_atomically(
            Path(export_dir),
            lambda staging: recipe.export(model, config, data, staging),
            {"model": name, "config": config, "data": data.info},
            overwrite=overwrite,
        )
        if chief:
            print(f"exported to {export_dir}", file=sys.stderr)
    mark_done(run_dir)
    if chief:
        print(f"run directory: {run_dir}", file=sys.stderr)
    return metrics


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


if __name__ == "__main__":
    run(main)
