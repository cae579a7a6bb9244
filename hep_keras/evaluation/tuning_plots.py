"""Figures of a hyperparameter search (arrays in, PNG out): objective per trial, objective vs one hyperparameter."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hep_keras.evaluation.style import styled  # noqa: E402


@styled
def plot_objective_vs_trial(
    trial_ids: list[str], values: np.ndarray, objective: str, direction: str, path: str | Path
) -> Path:
    """Objective of each finished trial in trial order, with the best-so-far line. NaN values are skipped."""
    values = np.asarray(values, np.float64)
    order = np.arange(len(values))
    finite = np.isfinite(values)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(order[finite], values[finite], "o", label="trial")
    if finite.any():
        best = np.fmin.accumulate(values) if direction == "min" else np.fmax.accumulate(values)
        ax.step(order, best, where="post", color="C1", label="best so far")
    ax.set_xticks(order, trial_ids, rotation=90 if len(order) > 12 else 0)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{objective} ({direction})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


@styled
def plot_objective_vs_parameter(
    parameter_values: list, values: np.ndarray, parameter: str, objective: str, note: str, path: str | Path
) -> Path:
    """Objective against one hyperparameter: a scatter for numbers (log axis when they span > 20x), categories
    on the x axis otherwise. ``note`` (e.g. the importance measure) goes into the title."""
    values = np.asarray(values, np.float64)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in parameter_values)
    if numeric:
        x = np.asarray(parameter_values, np.float64)
        ax.plot(x, values, "o")
        if np.all(x > 0) and x.max() / x.min() > 20:
            ax.set_xscale("log")
    else:
        labels = sorted({str(v) for v in parameter_values})
        x = np.array([labels.index(str(v)) for v in parameter_values])
        ax.plot(x, values, "o")
        ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(parameter)
    ax.set_ylabel(objective)
    ax.set_title(note, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
