"""Figures of any run: observable histograms, losses, latent space (event displays and mean images:
:mod:`hep_keras.evaluation.fidelity_plots`).

Every function takes numpy arrays (never models) and writes one PNG, returning its path.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hep_keras.evaluation.style import styled  # noqa: E402
from hep_keras.physics import OBSERVABLE_UNITS  # noqa: E402


def histogram_bins(values: np.ndarray, n_bins: int = 40) -> np.ndarray:
    """Bin edges over the central 99 % of ``values``: ``n_bins`` equal bins, or for whole-number values (hit
    counts; HCAL pixel counts are whole towers, multiples of 25) bins centred on a whole number of the values'
    common step, so that no bin is empty because no value can fall in it (a comb)."""
    lo, hi = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
    if values.size and np.all(np.mod(values, 1) == 0):
        step = max(1, int(np.gcd.reduce(np.abs(values).astype(np.int64))))
        width = step * max(1, int(np.ceil((hi - lo + step) / (step * n_bins))))
        start = np.floor(lo / step) * step
        return np.arange(start, hi + width + 1, width) - step / 2
    return np.linspace(lo, hi if hi > lo else lo + 1, n_bins)


@styled
def plot_observable_histograms(
    reference: dict[str, np.ndarray],
    other: dict[str, np.ndarray],
    path: str | Path,
    labels: Sequence[str] = ("original", "reconstructed"),
    distances: dict[str, float] | None = None,
) -> Path:
    """Grid of step histograms, one panel per observable, ``reference`` vs ``other`` (W1 in the titles)."""
    path = Path(path)
    keys = [k for k in reference if k in other]
    ncols = 3
    nrows = (len(keys) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.3 * nrows), constrained_layout=True)
    for ax, key in zip(np.ravel(axes), keys, strict=False):
        a, b = np.asarray(reference[key]), np.asarray(other[key])
        bins = histogram_bins(np.concatenate([a, b]))
        with np.errstate(invalid="ignore", divide="ignore"):  # an all-empty sample has no density
            ax.hist(a, bins=bins, histtype="step", lw=1.5, label=labels[0], density=True)
            ax.hist(b, bins=bins, histtype="step", lw=1.5, label=labels[1], density=True)
        unit = OBSERVABLE_UNITS.get(key, "")
        ax.set_xlabel(f"{key} [{unit}]" if unit else key)
        ax.set_ylabel(f"density [1/{unit}]" if unit else "density")
        title = key if not distances or key not in distances else f"{key}  W1={distances[key]:.3g}"
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    for ax in np.ravel(axes)[len(keys) :]:
        ax.axis("off")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def read_history(csv_path: str | Path) -> dict[str, list[float]]:
    """Columns of a Keras CSVLogger file; a resumed run's repeated epochs keep their last row."""
    rows: dict[int, dict[str, str]] = {}
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            if row.get("epoch", "").isdigit():
                rows[int(row["epoch"])] = row
    columns: dict[str, list[float]] = {}
    for epoch in sorted(rows):
        for key, value in rows[epoch].items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
    return columns


@styled
def plot_history(csv_path: str | Path, path: str | Path) -> Path | None:
    """Training and validation curves of every logged loss (one panel each), from ``history.csv``."""
    csv_path, path = Path(csv_path), Path(path)
    if not csv_path.exists():
        return None
    history = read_history(csv_path)
    names = [k for k in history if k not in ("epoch", "learning_rate") and not k.startswith("val_")]
    if not names:
        return None
    epochs = np.asarray(history["epoch"]) + 1
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), constrained_layout=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        ax.plot(epochs, history[name], "o-", label="train")
        if f"val_{name}" in history:
            ax.plot(epochs, history[f"val_{name}"], "s--", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.legend()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


@styled
def plot_latent(latent: np.ndarray, labels: np.ndarray, path: str | Path) -> Path:
    """Latent means coloured quark (y=0) / gluon (y=1): 2-D PCA scatter and the first dimensions' histograms."""
    path = Path(path)
    z = np.asarray(latent, dtype=np.float64)
    centred = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    proj = centred @ vt[:2].T if z.shape[1] >= 2 else np.column_stack([centred[:, 0], np.zeros(len(z))])
    n_hist = min(3, z.shape[1])
    fig, axes = plt.subplots(1, 1 + n_hist, figsize=(4.2 * (1 + n_hist), 3.8), constrained_layout=True)
    for label, name, colour in ((0, "quark", "tab:blue"), (1, "gluon", "tab:red")):
        sel = np.asarray(labels) == label
        axes[0].scatter(proj[sel, 0], proj[sel, 1], s=4, alpha=0.5, c=colour, label=name)
        for k in range(n_hist):
            axes[1 + k].hist(z[sel, k], bins=40, histtype="step", color=colour, label=name, density=True)
    axes[0].set_xlabel("PC 1")
    axes[0].set_ylabel("PC 2")
    axes[0].set_title("latent space (PCA of z mean)")
    axes[0].legend()
    for k in range(n_hist):
        axes[1 + k].set_title(f"z[{k}]")
        axes[1 + k].set_xlabel(f"z[{k}] (latent mean)")
        axes[1 + k].set_ylabel("density")
        axes[1 + k].legend(fontsize=8)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
