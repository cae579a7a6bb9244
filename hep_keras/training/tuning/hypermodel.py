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
        def _record(self, trial, event: str, **extra) -> None:
            record = {"trial_id": trial.trial_id, "tuner_id": tuner_id(), "host": socket.gethostname()}
            record |= {"pid": os.getpid(), "event": event, "time": time.time(), **extra}
            _append(Path(self.get_trial_dir(trial.trial_id)) / RUNS_FILE, record)

        def run_trial(self, trial, *args, **fit_kwargs):
            self._record(trial, "start")
            self._trial_start, self._trial_epochs = time.perf_counter(), None
            histories = super().run_trial(trial, *args, **fit_kwargs)
            last = histories[-1] if isinstance(histories, list) else histories
            self._trial_epochs = len(getattr(last, "history", {}).get("loss", []))
            return histories

        def on_trial_end(self, trial):
            super().on_trial_end(trial)  # the oracle has the result now: only then is the trial "finished"
            seconds = time.perf_counter() - getattr(self, "_trial_start", time.perf_counter())
            event = "finish" if trial.status == "COMPLETED" else "fail"
            self._record(trial, event, status=trial.status, epochs=self._trial_epochs, seconds=seconds)
            if on_trial_end is not None:
                on_trial_end(Path(self.project_dir))

    tuner = RecordingTuner(**kwargs)
    if is_chief():
        forget_finished_retries(tuner.oracle)
    return tuner


def forget_finished_retries(oracle) -> list[str]:
    """Take trials that finished out of a reloaded oracle's retry queue; return their ids.

    Keras Tuner 1.4.8 ``Oracle.end_trial`` saves ``oracle.json`` *before* it removes the trial from the ongoing
    ones, and ``Oracle.reload`` re-queues every ongoing trial. A search killed in between would run a
    finished trial again; its ``trial.json`` (saved first) says ``COMPLETED``, so such trials are dropped here.
    """
    finished = [t for t in oracle._retry_queue if oracle.trials[t].status == "COMPLETED"]
    oracle._retry_queue = [t for t in oracle._retry_queue if t not in finished]
    return finished
