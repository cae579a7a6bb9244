"""Figures a physicist would show: events side by side, observables, losses, latent space.

Every function takes numpy arrays (never models) and writes one PNG (or one per event), returning the path(s).
Energies are drawn on a logarithmic colour scale because the images are sparse and span four decades.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, SymLogNorm  # noqa: E402

from hep_keras.evaluation.style import image_extent, label_image_axes, styled  # noqa: E402
from hep_keras.physics import CHANNELS, OBSERVABLE_UNITS  # noqa: E402

ROW_TITLES = (*CHANNELS, "Sum")


@styled
def plot_event_comparison(
    original: np.ndarray,
    reconstructed: np.ndarray,
    path: str | Path,
    n_events: int = 4,
    titles: Sequence[str] = ("original", "reconstruction"),
) -> list[Path]:
    """One PNG per event: rows Tracks / ECAL / HCAL / sum, columns original | reconstruction | difference.

    Original and reconstruction of a row share one logarithmic colour scale (GeV); the difference
    (reconstruction − original) uses a symmetric-log scale. Files are ``<stem>_<i>.png`` beside ``path``.
    """
    path = Path(path)
    paths = []
    for i in range(min(n_events, len(original))):
        orig = np.concatenate([original[i], original[i].sum(-1, keepdims=True)], axis=-1)
        reco = np.concatenate([reconstructed[i], reconstructed[i].sum(-1, keepdims=True)], axis=-1)
        extent = image_extent(*orig.shape[:2])
        fig, axes = plt.subplots(4, 3, figsize=(11, 13), constrained_layout=True)
        for row in range(4):
            a, b = orig[..., row], reco[..., row]
            positive = np.concatenate([a[a > 0], b[b > 0]])
            vmax = float(positive.max()) if positive.size else 1.0
            vmin = max(float(np.percentile(positive, 1)) if positive.size else 1e-3, vmax * 1e-5)
            norm = LogNorm(vmin=vmin, vmax=vmax)
            for col, (img, name) in enumerate(((a, titles[0]), (b, titles[1]))):
                shown = np.ma.masked_less_equal(img, 0)
                im = axes[row, col].imshow(shown, norm=norm, cmap="viridis", extent=extent, origin="lower")
                axes[row, col].set_title(f"{ROW_TITLES[row]} {name}  (Σ={img.sum():.1f} GeV)", fontsize=9)
            fig.colorbar(im, ax=axes[row, :2], label="GeV / pixel", shrink=0.8)
            diff = b - a
            lim = float(np.abs(diff).max()) or 1.0
            im = axes[row, 2].imshow(
                diff,
                norm=SymLogNorm(linthresh=max(vmin, lim * 1e-4), vmin=-lim, vmax=lim),
                cmap="RdBu_r",
                extent=extent,
                origin="lower",
            )
            axes[row, 2].set_title(f"{ROW_TITLES[row]} difference", fontsize=9)
            fig.colorbar(im, ax=axes[row, 2], label="GeV / pixel", shrink=0.8)
        for ax in axes.flat:
            label_image_axes(ax)
        fig.suptitle(f"event {i}: {titles[0]} | {titles[1]} | difference")
        out = path.with_name(f"{path.stem}_{i}{path.suffix or '.png'}")
        fig.savefig(out, dpi=80)
        plt.close(fig)
        paths.append(out)
    return paths


@styled
def plot_mean_images(
    original: np.ndarray,
    reconstructed: np.ndarray,
    path: str | Path,
    titles: Sequence[str] = ("original", "reconstruction"),
) -> Path:
    """Average image over events per channel, original vs reconstruction (log colour scale, GeV)."""
    path = Path(path)
    mean_o, mean_r = original.mean(axis=0), reconstructed.mean(axis=0)
    extent = image_extent(*mean_o.shape[:2])
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), constrained_layout=True)
    for c in range(3):
        a, b = mean_o[..., c], mean_r[..., c]
        positive = np.concatenate([a[a > 0], b[b > 0]])
        vmax = float(positive.max()) if positive.size else 1.0
        norm = LogNorm(vmin=vmax * 1e-4, vmax=vmax)
        for row, (img, name) in enumerate(((a, titles[0]), (b, titles[1]))):
            im = axes[row, c].imshow(np.ma.masked_less_equal(img, 0), norm=norm, extent=extent, origin="lower")
            axes[row, c].set_title(f"mean {CHANNELS[c]} {name}")
            label_image_axes(axes[row, c])
        fig.colorbar(im, ax=axes[:, c], label="GeV / pixel", shrink=0.7)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


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
        both = np.concatenate([a, b])
        lo, hi = np.percentile(both, [0.5, 99.5]) if both.size else (0, 1)
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
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
