"""``python -m hep_keras.tune vae|ae|compressor|diffusion``: Keras Tuner search over ``tuning/<model>.toml``.

Thin: the config is resolved as for ``hep_keras.fit`` (defaults < ``--config`` < ``--set`` < flags); the search
is :func:`hep_keras.training.tuning.search.run_search`. Trials are judged by a physics objective that does not
depend on the tuned loss weights (``--objective``; see :mod:`hep_keras.training.tuning.objectives`); results go
to ``<directory>/<project>/`` (``trials.csv``, ``top_trials.md``, ``figures/``, ``best_config.json``) and the
best configuration is re-trained with ``fit``'s code path and exported to ``saved_models/<model>-tuned``.

Distributed tuning is Keras Tuner's own chief/worker protocol: set ``KERASTUNER_TUNER_ID`` (``chief``,
``tuner0``, ...), ``KERASTUNER_ORACLE_IP`` and ``KERASTUNER_ORACLE_PORT`` and run the same command in every
process (``tuning/launch_local.sh`` starts a chief and workers on 127.0.0.1; see ``tuning/README.md``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hep_keras.commands import quiet_tensorflow
from hep_keras.commands.fit import add_config_options, config_from_args
from hep_keras.training.recipes import RECIPES, get_recipe

TUNERS = ("random", "bayesian", "hyperband")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hep_keras.tune", description="Keras Tuner search for a model.")
    parser.add_argument("model", choices=sorted(RECIPES), help="which model to tune")
    add_config_options(parser)  # as for fit; --strategy applies inside each trial
    parser.add_argument("--space", help="search-space TOML file (default: tuning/<model>.toml)")
    parser.add_argument(
        "--objective",
        metavar="NAME[:min|max]",
        help="val_emd_ratio (vae, ae; default), val_two_sample_auc (diffusion; default), val_mass_sigma "
        "(compressor; default), val_loss, or any Keras metric with its direction",
    )
    parser.add_argument(
        "--objective-events", type=int, default=64, help="validation events for the objective (default: 64)"
    )
    parser.add_argument("--tuner", choices=TUNERS, default="random", help="search algorithm (default: random)")
    parser.add_argument("--max-trials", type=int, default=10, help="trials to run (default: 10)")
    parser.add_argument(
        "--initial-points",
        type=int,
        help="bayesian: random trials before the Gaussian process (default 3 per dimension)",
    )
    parser.add_argument(
        "--directory", default="tuning/results", help="where Keras Tuner keeps its trials (default: tuning/results)"
    )
    parser.add_argument("--project-name", help="default: the model name")
    parser.add_argument("--export-dir", help="export of the re-trained best model (default saved_models/<model>-tuned)")
    parser.add_argument("--no-export", action="store_true", help="do not re-train and export the best configuration")
    parser.add_argument("--overwrite", action="store_true", help="start afresh: delete the search, replace the export")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras verbosity (default: 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_tensorflow()
    from hep_keras.training.tuning.search import SearchOptions, check_options, run_search
    from hep_keras.training.tuning.space import default_space_path

    recipe = get_recipe(args.model)
    config = config_from_args(args, recipe)
    options = SearchOptions(
        space=Path(args.space) if args.space else default_space_path(args.model),
        objective=args.objective,
        tuner=args.tuner,
        max_trials=args.max_trials,
        directory=Path(args.directory),
        project=args.project_name,
        export_dir=None if args.no_export else Path(args.export_dir or Path("saved_models") / f"{args.model}-tuned"),
        objective_events=args.objective_events,
        initial_points=args.initial_points,
        overwrite=args.overwrite,
        verbose=args.verbose,
    )
    check_options(args.model, options)
    run_search(args.model, config, options)
    return 0
