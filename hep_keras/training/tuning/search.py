"""One Keras Tuner search, start to finish: checks, data, search, results, best model re-trained and exported.

:func:`run_search` is what ``python -m hep_keras.tune`` runs in every process of a search. In a one-process
search, and in the chief of a distributed one, it ends by re-training the best configuration through
:func:`hep_keras.training.loop.fit_model` (the code path of ``python -m hep_keras.fit``: same callbacks,
evaluation, report and export) into ``<project>/best_run/`` and exporting it to ``saved_models/<model>-tuned``;
workers only run trials. Running the same command again resumes a killed search: Keras Tuner reloads its
oracle, re-runs the trial that was interrupted and never repeats a finished one.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from hep_keras.errors import ConfigError, OutputError


@dataclasses.dataclass
class SearchOptions:
    """What a search needs beyond the run config (the ``tune`` command line)."""

    space: Path
    objective: str | None = None  # NAME[:min|max]; None = the model's default
    tuner: str = "random"
    max_trials: int = 10
    directory: Path = Path("tuning/results")
    project: str | None = None  # default: the model name
    export_dir: Path | None = None  # None = no re-training / export
    objective_events: int = 64
    initial_points: int | None = None  # Bayesian: random trials before the Gaussian process (None: 3 per dimension)
    overwrite: bool = False
    verbose: int = 1


def check_options(name: str, options: SearchOptions):
    """Validate the options that do not need the data; return the resolved objective."""
    from hep_keras.training.tuning.hypermodel import TUNERS
    from hep_keras.training.tuning.objectives import resolve_objective

    if options.max_trials <= 0:
        raise ConfigError(f"--max-trials must be > 0, got {options.max_trials}")
    if options.objective_events < 4:
        raise ConfigError(f"--objective-events must be >= 4, got {options.objective_events}")
    if options.initial_points is not None and (options.tuner != "bayesian" or options.initial_points < 1):
        raise ConfigError(f"--initial-points needs --tuner bayesian and a value >= 1, got {options.initial_points}")
    if options.tuner not in TUNERS:
        raise ConfigError(f"--tuner must be one of {', '.join(TUNERS)}, got {options.tuner!r}")
    return resolve_objective(options.objective, name)


def check_same_search(project_dir: Path, description: dict[str, Any]) -> None:
    """Refuse to resume a search made with another config, space, objective or tuner (it would mix two searches).

    ``<project>/search.json`` records what the search is (written by the chief / single process once its tuner
    exists); ``--max-trials`` may change, to extend a search.
    """
    path = project_dir / "search.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != json.loads(json.dumps(description)):
            changed = sorted(k for k in {**previous, **description} if previous.get(k) != description.get(k))
            if changed == ["config"]:
                changed = sorted(
                    k for k in description["config"] if previous["config"].get(k) != description["config"][k]
                )
            raise ConfigError(
                f"{project_dir}: holds a search with different settings (changed: {', '.join(changed)}); "
                "run the same command to resume it, or pass --overwrite / another --project-name"
            )


def run_search(name: str, config: dict[str, Any], options: SearchOptions) -> dict[str, Any]:
    """Run (or resume) the search; in the summarising process write results, re-train and export the best.

    Returns ``{"best_config", "results", "export_dir", "metrics"}`` (empty in a worker).
    """
    import keras
    import keras_tuner as kt

    from hep_keras.data import data_errors
    from hep_keras.export import check_export_target
    from hep_keras.io import ensure_writable_dir
    from hep_keras.training.distribute import make_strategy
    from hep_keras.training.recipes import get_recipe
    from hep_keras.training.runs import set_precision
    from hep_keras.training.tuning.hypermodel import RecipeHyperModel, is_chief, make_tuner
    from hep_keras.training.tuning.objectives import objective_reference
    from hep_keras.training.tuning.results import write_results
    from hep_keras.training.tuning.space import load_search_space

    recipe = get_recipe(name)
    objective = check_options(name, options)
    space = load_search_space(options.space, recipe, config)
    project = options.project or name
    chief = is_chief()
    export_dir = options.export_dir if chief else None
    if export_dir is not None:
        check_export_target(Path(export_dir), options.overwrite)
    directory = ensure_writable_dir(Path(options.directory), "tuning directory")
    project_dir = directory / project
    run_dir = project_dir / "best_run"
    if chief and (run_dir / "DONE").exists() and not options.overwrite:
        raise OutputError(f"{run_dir}: the best configuration was already re-trained; pass --overwrite")

    description = {
        "model": name,
        "config": config,
        "space": {p.key: {"type": p.kind, **p.fields} for p in space.parameters},
        "objective": [objective.name, objective.direction],
        "tuner": options.tuner,
    }
    if not options.overwrite:  # with --overwrite the chief deletes the old search
        check_same_search(project_dir, description)

    set_precision(config["mixed_precision"])
    keras.utils.set_random_seed(config["seed"])
    with data_errors():
        data = recipe.load_data(config)
        reference = objective_reference(objective.name, config, data, options.objective_events)
    hypermodel = RecipeHyperModel(recipe, config, data, space, objective, reference, project_dir)

    def summarise(path: Path) -> dict:
        return write_results(path, space.keys, objective.name, objective.direction)

    common = dict(
        hypermodel=hypermodel,
        objective=kt.Objective(objective.name, direction=objective.direction),
        directory=str(directory),
        project_name=project,
        overwrite=options.overwrite and chief,  # a worker must never delete the shared project
        seed=config["seed"],
        distribution_strategy=None
        if config["strategy"] == "default"
        else make_strategy(config["strategy"], config["cpu_replicas"]),
        on_trial_end=summarise,
        max_consecutive_failed_trials=3,
    )
    if options.tuner == "hyperband":
        tuner = make_tuner("hyperband", max_epochs=config["epochs"], max_retries_per_trial=1, **common)
    elif options.tuner == "bayesian":
        tuner = make_tuner(
            "bayesian",
            max_trials=options.max_trials,
            num_initial_points=options.initial_points,
            max_retries_per_trial=1,
            **common,
        )
    else:
        tuner = make_tuner(options.tuner, max_trials=options.max_trials, max_retries_per_trial=1, **common)
    if chief:
        (project_dir / "search.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    train = data.train  # repeated by the recipe when steps_per_epoch is set
    try:
        with data_errors():
            tuner.search(
                train,
                validation_data=data.val,
                epochs=config["epochs"],
                steps_per_epoch=config["steps_per_epoch"],
                shuffle=False,
                verbose=options.verbose,
            )
    except RuntimeError as err:  # Keras Tuner gives up after max_consecutive_failed_trials failed trials
        if "consecutive failures" not in str(err):
            raise
        last = [line for line in str(err).splitlines() if line.strip()][-1]
        raise ConfigError(f"{project_dir}: 3 trials in a row failed; the last one with: {last}") from None
    if not chief:
        return {}  # workers report to the chief; only the chief summarises
    results = summarise(project_dir)
    best = tuner.oracle.get_best_trials(1)
    if not best or best[0].status != "COMPLETED":
        raise OutputError(f"{project_dir}: no trial finished; see the log above and {project_dir}/trial_*/")
    overrides = space.values_of(best[0].hyperparameters.values)
    best_config = project_dir / "best_config.json"
    best_config.write_text(json.dumps(overrides, indent=2, sort_keys=True) + "\n")
    print(
        f"best trial {best[0].trial_id}: {objective.name} = {best[0].score:.4g}\n"
        f"  config: {json.dumps(overrides)} -> {best_config}\n"
        f"  results: {project_dir / 'trials.csv'}, {project_dir / 'top_trials.md'}, {project_dir / 'figures'}/",
        file=sys.stderr,
    )
    metrics = None
    if export_dir is not None:
        from hep_keras.training.loop import fit_model

        print(f"re-training the best configuration into {run_dir}", file=sys.stderr)
        metrics = fit_model(
            name,
            {**config, **overrides},
            run_dir,
            Path(export_dir),
            overwrite=options.overwrite,
            verbose=options.verbose,
        )
    return {"best_config": overrides, "results": results, "export_dir": export_dir, "metrics": metrics}
