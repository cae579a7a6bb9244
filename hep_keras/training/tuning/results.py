"""Readable results of a search, rebuilt from the project directory after every trial and at the end.

Everything is read from disk (Keras Tuner's ``trial_<id>/trial.json`` and our ``hep_keras_runs.jsonl``), so
any process of a distributed search (chief or worker) can write them, and a resumed search starts from what
is there. Written into the project directory (``tuning/results/<project>/``), each file atomically::

    trials.csv                     one row per trial: id, status, objective, best epoch, epochs, seconds,
                                   which tuner ran it, how many times it finished, its hyperparameters
    top_trials.md                  the best trials as a markdown table (+ the most important hyperparameter)
    figures/objective_vs_trial.png
    figures/objective_vs_<hp>.png  against the hyperparameter that matters most (see :func:`importance`)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.io import atomic_file
from hep_keras.training.tuning.hypermodel import RUNS_FILE

BASE_COLUMNS = ("trial_id", "status", "objective", "best_epoch", "epochs", "seconds", "tuner_id", "finished_runs")


def _runs(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / RUNS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by kill -9
            continue
    return records


def collect_trials(project_dir: Path, keys: list[str]) -> list[dict[str, Any]]:
    """One dict per trial of the project (trial order): :data:`BASE_COLUMNS` + the values of ``keys``."""
    rows = []
    for path in sorted(Path(project_dir).glob("trial_*/trial.json")):
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # being written right now
        runs = _runs(path.parent)
        finished = [r for r in runs if r.get("event") == "finish"]
        last = finished[-1] if finished else (runs[-1] if runs else {})
        score = state.get("score")
        values = state.get("hyperparameters", {}).get("values", {})
        row = {
            "trial_id": state["trial_id"],
            "status": state.get("status"),
            "objective": float(score) if score is not None else float("nan"),
            "best_epoch": (state["best_step"] + 1) if state.get("best_step") is not None else None,
            "epochs": last.get("epochs"),
            "seconds": round(last["seconds"], 1) if "seconds" in last else None,
            "tuner_id": last.get("tuner_id"),
            "finished_runs": len(finished),
        }
        for key in keys:
            value = values.get(key)
            row[key] = json.loads(value) if isinstance(value, str) and value.startswith("[") else value
        rows.append(row)
    return rows


def importance(rows: list[dict[str, Any]], keys: list[str]) -> tuple[str | None, str]:
    """The hyperparameter the objective depends on most, and how that was measured.

    Numbers: |Spearman rank correlation| with the objective; categories (strings, booleans, lists): the
    share of the objective's variance explained by the category means (η²). Needs 3 finished trials.
    """
    from scipy.stats import spearmanr

    done = [r for r in rows if np.isfinite(r["objective"])]
    if len(done) < 3 or not keys:
        return (keys[0] if keys else None), "too few finished trials to rank the hyperparameters"
    y = np.array([r["objective"] for r in done])
    scores = {}
    for key in keys:
        x = [r[key] for r in done]
        if len({json.dumps(v) for v in x}) < 2:
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in x):
            rho = spearmanr(np.asarray(x, np.float64), y).statistic
            scores[key] = (abs(float(rho)) if np.isfinite(rho) else 0.0, f"|Spearman rho| = {abs(rho):.2f}")
        else:
            groups = {}
            for v, value in zip(x, y, strict=True):
                groups.setdefault(json.dumps(v), []).append(value)
            total = np.sum((y - y.mean()) ** 2)
            between = sum(len(g) * (np.mean(g) - y.mean()) ** 2 for g in groups.values())
            eta2 = float(between / total) if total > 0 else 0.0
            scores[key] = (eta2, f"eta^2 = {eta2:.2f}")
    if not scores:
        return keys[0], "every finished trial has the same values"
    best = max(scores, key=lambda k: scores[k][0])
    return best, f"most important of {len(scores)}: {scores[best][1]} over {len(done)} trials"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if not np.isfinite(value) else f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return "" if value is None else str(value)


def markdown_table(rows: list[dict[str, Any]], keys: list[str], objective: str, direction: str, top: int) -> str:
    """The ``top`` finished trials, best first, as a markdown table."""
    done = sorted(
        (r for r in rows if np.isfinite(r["objective"])),
        key=lambda r: r["objective"],
        reverse=direction == "max",
    )[:top]
    columns = ["rank", "trial_id", objective, *keys, "best_epoch", "epochs", "seconds", "tuner_id"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for rank, row in enumerate(done, 1):
        cells = [rank, row["trial_id"], row["objective"], *(row[k] for k in keys)]
        cells += [row["best_epoch"], row["epochs"], row["seconds"], row["tuner_id"]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(project_dir: Path, keys: list[str], objective: str, direction: str, top: int = 10) -> dict:
    """Write ``trials.csv``, ``top_trials.md`` and the figures; return ``{"rows", "important", "files"}``."""
    from hep_keras.evaluation.tuning_plots import plot_objective_vs_parameter, plot_objective_vs_trial

    project_dir = Path(project_dir)
    rows = collect_trials(project_dir, keys)
    columns = [*BASE_COLUMNS, *keys]
    with atomic_file(project_dir / "trials.csv") as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            writer.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows)
    important, note = importance(rows, keys)
    n_done = sum(np.isfinite(r["objective"]) for r in rows)
    text = (
        f"# Search {project_dir.name}: top trials by {objective} ({direction})\n\n"
        f"{n_done} of {len(rows)} trials finished. Most important hyperparameter: {important} ({note}).\n\n"
        + markdown_table(rows, keys, objective, direction, top)
    )
    with atomic_file(project_dir / "top_trials.md") as tmp:
        tmp.write_text(text)
    figures = project_dir / "figures"
    figures.mkdir(exist_ok=True)
    files = [project_dir / "trials.csv", project_dir / "top_trials.md"]
    values = np.array([r["objective"] for r in rows], np.float64)
    with atomic_file(figures / "objective_vs_trial.png") as tmp:
        plot_objective_vs_trial([r["trial_id"] for r in rows], values, objective, direction, tmp)
    files.append(figures / "objective_vs_trial.png")
    if important is not None and n_done:
        done = [r for r in rows if np.isfinite(r["objective"])]
        target = figures / f"objective_vs_{important}.png"
        for old in figures.glob("objective_vs_*.png"):
            if old.name not in ("objective_vs_trial.png", target.name):
                old.unlink(missing_ok=True)
        with atomic_file(target) as tmp:
            x, y = [r[important] for r in done], [r["objective"] for r in done]
            plot_objective_vs_parameter(x, y, important, objective, note, tmp)
        files.append(target)
    return {"rows": rows, "important": important, "files": files}
