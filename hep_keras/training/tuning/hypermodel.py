"""The Keras Tuner side of a search: a ``keras_tuner.HyperModel`` per recipe and tuners that log their trials.

:class:`RecipeHyperModel` builds the recipe's model with the trial's config (run config ← search-space
values) and, in :meth:`RecipeHyperModel.fit`, trains it with the callbacks a trial needs: the objective
first (so every later callback sees it as a metric), then Keras Tuner's, then early stopping on the
objective, the NaN guard and the recipe's own callbacks.

:func:`make_tuner` returns a Random / Bayesian / Hyperband tuner whose ``run_trial`` appends one JSON line per
attempt to ``trial_<id>/hep_keras_runs.jsonl`` (which process ran it, when, how many epochs, how long) and
whose ``on_trial_end`` rewrites the readable results (:mod:`hep_keras.training.tuning.results`). These logs
live in the shared project directory, so a chief and its workers on several machines write one record.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt

from hep_keras.training.tuning.objectives import COMPUTE, Objective, ObjectiveCallback
from hep_keras.training.tuning.space import SearchSpace

RUNS_FILE = "hep_keras_runs.jsonl"
TUNERS = ("random", "bayesian", "hyperband")


class RecipeHyperModel(kt.HyperModel):
    """A recipe's model as a ``HyperModel``: ``build(hp)`` and the trial's ``fit``.

    Args:
        recipe: a :class:`~hep_keras.training.recipes.base.Recipe`.
        config: the resolved run config (the search space overrides some keys per trial).
        data: the recipe's ``DataBundle`` (loaded once for the whole search).
        space: the :class:`SearchSpace` read from ``tuning/<model>.toml``.
        objective: what the trials are judged by; ``reference`` is what its callback needs.
        run_dir: passed to ``recipe.callbacks``.
    """

    def __init__(self, recipe, config, data, space: SearchSpace, objective: Objective, reference, run_dir: Path):
        super().__init__(name=recipe.NAME)
        self.recipe, self.config, self.data, self.space = recipe, config, data, space
        self.objective, self.reference, self.run_dir = objective, reference, run_dir

    def trial_config(self, hp) -> dict[str, Any]:
        """The run config with the trial's search-space values."""
        return {**self.config, **self.space.overrides(hp)}

    def build(self, hp):
        config = self.trial_config(hp)
        self.recipe.validate(config)  # a combination of values the recipe rejects fails this trial only
        return self.recipe.build_model(config, self.data)

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        config = self.trial_config(hp)
        first = [ObjectiveCallback(self.objective.name, self.reference)] if self.objective.name in COMPUTE else []
        mode = self.objective.direction
        own = [
            keras.callbacks.EarlyStopping(monitor=self.objective.name, mode=mode, patience=config["patience"]),
            keras.callbacks.TerminateOnNaN(),
            *self.recipe.callbacks(config, self.run_dir),
        ]
        return model.fit(*args, callbacks=[*first, *(callbacks or []), *own], **kwargs)


def tuner_id() -> str:
    """This process's Keras Tuner id (``KERASTUNER_TUNER_ID``; ``tuner0`` in a one-process search)."""
    return os.environ.get("KERASTUNER_TUNER_ID", "tuner0")


def is_chief() -> bool:
    """True in the chief of a distributed search and in a one-process search (the processes that summarise)."""
    return "KERASTUNER_ORACLE_IP" not in os.environ or "chief" in tuner_id()


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as handle:  # one short line per write: appends from several processes stay whole
        handle.write(json.dumps(record) + "\n")


def make_tuner(kind: str, on_trial_end=None, **kwargs):
    """A Keras Tuner of ``kind`` (random | bayesian | hyperband) that records its trials.

    Args:
        on_trial_end: ``callable(project_dir)`` run after each trial by the process that ran it (writes results).
        kwargs: the tuner's own arguments (``hypermodel``, ``objective``, ``max_trials``, ``directory``, ...).
    """
    base = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband}[kind]

    class RecordingTuner(base):
        def run_trial(self, trial, *args, **fit_kwargs):
            runs = Path(self.get_trial_dir(trial.trial_id)) / RUNS_FILE
            record = {"trial_id": trial.trial_id, "tuner_id": tuner_id(), "host": socket.gethostname()}
            record["pid"] = os.getpid()
            _append(runs, {**record, "event": "start", "time": time.time()})
            start = time.perf_counter()
            histories = super().run_trial(trial, *args, **fit_kwargs)
            last = histories[-1] if isinstance(histories, list) else histories
            epochs = len(getattr(last, "history", {}).get("loss", []))
            seconds = time.perf_counter() - start
            _append(runs, {**record, "event": "finish", "time": time.time(), "epochs": epochs, "seconds": seconds})
            return histories

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            if on_trial_end is not None:
                on_trial_end(Path(self.project_dir))

    return RecordingTuner(**kwargs)
