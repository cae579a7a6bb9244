"""Run directories and the standard Keras callbacks of ``hep_keras.fit``.

Strategies live in :mod:`hep_keras.training.distribute`.

A run directory (default ``runs/<model>``) holds::

    config.json        resolved configuration of the run
    history.csv        per-epoch losses (CSVLogger)
    tensorboard/       TensorBoard logs
    backup/            BackupAndRestore state while the run is unfinished (a killed run resumes from it)
    checkpoints/best.weights.h5   best weights so far (ModelCheckpoint on the monitored quantity)
    figures/           PNG figures
    metrics.json, report.md       evaluation on the test split
    DONE               written last; a finished run is never overwritten without --overwrite
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hep_keras.errors import ConfigError, OutputError
from hep_keras.io import ensure_writable_dir

DONE_MARKER = "DONE"


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Fail before any work when ``run_dir`` holds a finished run (without ``overwrite``) or foreign files."""
    if overwrite or not run_dir.exists() or not any(run_dir.iterdir()):
        return
    if (run_dir / DONE_MARKER).exists():
        raise OutputError(f"{run_dir}: holds a finished run; pass --overwrite or choose another --run-dir")
    if not (run_dir / "config.json").exists():
        raise OutputError(f"{run_dir}: exists and is not a hep_keras run directory; choose another --run-dir")


def prepare_run_dir(run_dir: Path, config: dict[str, Any], overwrite: bool) -> bool:
    """Make ``run_dir`` ready for this run; return True when an unfinished run with the same config resumes.

    A finished run (``DONE`` present) is refused unless ``overwrite``; an unfinished run with a different
    config is refused too (resuming it with other settings would mix two runs).
    """
    config_path = run_dir / "config.json"
    if run_dir.exists() and any(run_dir.iterdir()):
        if overwrite:
            shutil.rmtree(run_dir)
        elif (run_dir / DONE_MARKER).exists():
            raise OutputError(f"{run_dir}: holds a finished run; pass --overwrite or choose another --run-dir")
        elif config_path.exists():
            previous = json.loads(config_path.read_text())
            if previous != json.loads(json.dumps(config)):
                changed = sorted(k for k in config if previous.get(k) != config[k])
                raise ConfigError(
                    f"{run_dir}: holds an unfinished run with a different config (changed: {', '.join(changed)}); "
                    "run the same command to resume, or pass --overwrite / another --run-dir"
                )
            return (run_dir / "backup").exists()
        else:
            raise OutputError(f"{run_dir}: exists and is not a hep_keras run directory; choose another --run-dir")
    ensure_writable_dir(run_dir, "run directory")
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return False


def mark_done(run_dir: Path) -> None:
    """Write the ``DONE`` marker of a finished run."""
    (run_dir / DONE_MARKER).write_text("finished\n")


def standard_callbacks(run_dir: Path, monitor: str, patience: int) -> list:
    """The callbacks every run uses: resume, NaN guard, early stopping, best checkpoint, CSV, TensorBoard."""
    import keras

    (run_dir / "checkpoints").mkdir(exist_ok=True)
    return [
        # double_checkpoint: a process killed while writing the backup resumes from the previous one
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), double_checkpoint=True),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "checkpoints" / "best.weights.h5"),
            monitor=monitor,
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=float("inf"),  # an epoch with a NaN/Inf val_loss is never the best
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
    ]


def set_precision(mixed: bool) -> None:
    """Select the Keras dtype policy: ``mixed_float16`` (GPU) or ``float32``."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
