"""The fit loop shared by every model: run directory, data, model, Keras ``fit``, evaluation, export.

:func:`fit_model` drives one :class:`~hep_keras.training.recipes.base.Recipe` through a run: run directory,
data, model (inside the ``tf.distribute`` strategy), Keras ``fit`` with the standard callbacks (resume, NaN
guard, early stopping, best checkpoint, CSV, TensorBoard), evaluation on the test split (figures,
``metrics.json``, ``report.md``) and the atomic export. Running it again after the process was killed resumes
the unfinished run.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from hep_keras.errors import TrainingError
from hep_keras.training.recipes import get_recipe


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
    from hep_keras.export import check_export_target
    from hep_keras.training.distribute import is_chief, make_strategy
    from hep_keras.training.runs import check_run_dir

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
    from hep_keras.data import data_errors

    try:
        with data_errors():  # a bad value found while streaming (NaN/Inf, truncated block) is one error line
            return _fit(recipe, strategy, name, config, run_dir, export_dir, overwrite and chief, verbose, chief)
    finally:
        if not chief:
            shutil.rmtree(run_dir, ignore_errors=True)


def _fit(recipe, strategy, name, config, run_dir: Path, export_dir, overwrite, verbose, chief) -> dict[str, Any]:
    import keras

    from hep_keras.evaluation.plots import plot_history
    from hep_keras.evaluation.report import write_metrics
    from hep_keras.export import write_atomically
    from hep_keras.training.distribute import fit_steps
    from hep_keras.training.runs import mark_done, prepare_run_dir, set_precision, standard_callbacks

    set_precision(config["mixed_precision"])
    keras.utils.set_random_seed(config["seed"])
    with strategy.scope():
        data = recipe.load_data(config)
        model = recipe.build_model(config, data)
    # the inputs are valid: only now create (or resume) the run directory
    if prepare_run_dir(run_dir, config, overwrite) and chief:
        print(f"resuming the unfinished run in {run_dir}", file=sys.stderr)
    callbacks = standard_callbacks(run_dir, recipe.MONITOR, config["patience"])
    callbacks += recipe.callbacks(config, run_dir)
    steps = fit_steps(strategy, config, data.split_events)
    if steps["validation_steps"] and chief:  # several workers: fixed steps, the shards repeat
        print(
            f"note: {strategy.num_replicas_in_sync} replicas on several workers: every epoch is "
            f"{steps['steps_per_epoch']} training and {steps['validation_steps']} validation steps of "
            f"{config['batch_size']} events (each worker's shard repeats)",
            file=sys.stderr,
        )
    model.fit(
        data.train,  # repeated by the recipe when steps_per_epoch is set, always under multi_worker
        validation_data=data.val,
        epochs=config["epochs"],
        **steps,
        callbacks=callbacks,
        shuffle=False,  # the pipeline shuffles (blocks per epoch + event buffer)
        verbose=verbose,
    )
    best = run_dir / "checkpoints" / "best.weights.h5"
    losses = model.history.history.get("loss", []) if model.history else []
    diverged = [epoch for epoch, value in enumerate(losses, 1) if not math.isfinite(value)]
    if diverged and not best.exists():
        raise TrainingError(
            f"{run_dir}: the training loss became NaN/Inf in epoch {diverged[0]} before any epoch ended with a "
            "finite validation loss; nothing was evaluated or exported (rerun with --overwrite and a lower "
            "--learning-rate)"
        )
    if diverged and chief:
        print(f"note: the training loss became NaN/Inf in epoch {diverged[0]}; using the best epoch's weights")
    if best.exists():
        model.load_weights(str(best))
    after_training = getattr(recipe, "after_training", None)  # e.g. the diffusion model's calibration
    if after_training is not None:
        after_training(model, config, data)

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
