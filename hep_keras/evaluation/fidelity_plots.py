"""Figures of the fidelity report (CMS style via ``mplhep``): event displays, mean images with the ratio map,
EMD distributions of the model and the baselines, observable histograms.

Every function takes numpy arrays (GeV per pixel, channels Tracks/ECAL/HCAL) and writes one PNG (or one per
event), returning the path(s). Axes are Δη (rows) and Δφ (columns) in rad; colours in GeV on a log scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, SymLogNorm  # noqa: E402

from hep_keras.evaluation.style import image_extent, label_image_axes, styled  # noqa: E402
from hep_keras.physics import CHANNELS, image_observables  # noqa: E402

CHANNEL_TITLES = CHANNELS

#: observables of the histograms: (key of image_observables, label as in the dataset, unit)
OBSERVABLES = (
    ("pt", "pt (image, ECAL+HCAL)", "GeV"),
    ("mass", "m0 (image, ECAL+HCAL)", "GeV"),
    ("energy_tracks", "Tracks energy", "GeV"),
    ("energy_ecal", "ECAL energy", "GeV"),
    ("energy_hcal", "HCAL energy", "GeV"),
)


@styled
def plot_event_displays(
    original: np.ndarray,
    reconstructed: np.ndarray,
    path: str | Path,
    n_events: int = 4,
    label: str = "reconstruction",
) -> list[Path]:
    """Per event one PNG ``<stem>_<i>.png``: rows Tracks/ECAL/HCAL, columns original | reconstruction | difference.

    Original and reconstruction share one log colour scale per channel (GeV, one colour bar); the difference
    (reconstruction − original) has a symmetric-log scale of its own.
    """
    path = Path(path)
    paths = []
    extent = image_extent(*original.shape[1:3])
    for i in range(min(n_events, len(original))):
        fig, axes = plt.subplots(3, 3, figsize=(17, 15), constrained_layout=True)
        for c in range(3):
            a, b = original[i, ..., c], reconstructed[i, ..., c]
            positive = np.concatenate([a[a > 0], b[b > 0]])
            vmax = float(positive.max()) if positive.size else 1.0
            vmin = max(float(positive.min()) if positive.size else 1e-2, vmax * 1e-4)
            norm = LogNorm(vmin=vmin, vmax=vmax)
            for col, (img, name) in enumerate(((a, "original"), (b, label))):
                im = axes[c, col].imshow(
                    np.ma.masked_less_equal(img, 0), norm=norm, cmap="viridis", extent=extent, origin="lower"
                )
                axes[c, col].set_title(f"{CHANNEL_TITLES[c]} {name}  (Σ = {img.sum():.1f} GeV)", fontsize=13)
            fig.colorbar(im, ax=axes[c, :2], label="GeV / pixel", shrink=0.85)
            diff = b - a
            lim = float(np.abs(diff).max()) or 1.0
            im = axes[c, 2].imshow(
                diff,
                norm=SymLogNorm(linthresh=max(vmin, lim * 1e-3), vmin=-lim, vmax=lim),
                cmap="RdBu_r",
                extent=extent,
                origin="lower",
            )
            axes[c, 2].set_title(f"{CHANNEL_TITLES[c]} {label} − original", fontsize=13)
            fig.colorbar(im, ax=axes[c, 2], label="GeV / pixel", shrink=0.85)
        for ax in axes.flat:
            label_image_axes(ax)
        fig.suptitle(f"event {i}: original | {label} | difference", fontsize=16)
        out = path.with_name(f"{path.stem}_{i}{path.suffix or '.png'}")
        fig.savefig(out, dpi=60)
        plt.close(fig)
        paths.append(out)
    return paths


@styled
def plot_mean_images_ratio(
    original: np.ndarray, reconstructed: np.ndarray, path: str | Path, label: str = "reconstruction"
) -> Path:
    """Mean image per channel: original, reconstruction (shared log scale, GeV) and the ratio map
    mean reconstruction ÷ mean original (log scale 0.1–10; grey where the original mean is 0)."""
    path = Path(path)
    mean_o, mean_r = original.mean(axis=0), reconstructed.mean(axis=0)
    extent = image_extent(*mean_o.shape[:2])
    fig, axes = plt.subplots(3, 3, figsize=(17, 15), constrained_layout=True)
    for c in range(3):
        a, b = mean_o[..., c], mean_r[..., c]
        positive = np.concatenate([a[a > 0], b[b > 0]])
        vmax = float(positive.max()) if positive.size else 1.0
        norm = LogNorm(vmin=vmax * 1e-5, vmax=vmax)
        for col, (img, name) in enumerate(((a, "original"), (b, label))):
            im = axes[c, col].imshow(np.ma.masked_less_equal(img, 0), norm=norm, extent=extent, origin="lower")
            axes[c, col].set_title(f"mean {CHANNEL_TITLES[c]} {name}", fontsize=13)
        fig.colorbar(im, ax=axes[c, :2], label="GeV / pixel", shrink=0.85)
        ratio = np.ma.masked_where(a <= 0, np.divide(b, a, out=np.zeros_like(b), where=a > 0))
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="lightgrey", under="navy")
        im = axes[c, 2].imshow(
            np.ma.masked_where(np.ma.getmaskarray(ratio), np.clip(ratio.filled(0), 1e-3, None)),
            norm=LogNorm(0.1, 10),
            cmap=cmap,
            extent=extent,
            origin="lower",
        )
        axes[c, 2].set_title(f"{CHANNEL_TITLES[c]}: mean {label} ÷ mean original", fontsize=13)
        fig.colorbar(im, ax=axes[c, 2], label="ratio", shrink=0.85, extend="both")
    for ax in axes.flat:
        label_image_axes(ax)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


@styled
def plot_emd_distributions(emd: dict[str, dict[str, np.ndarray]], path: str | Path) -> Path:
    """Histograms of the per-event EMD (rad) of each reconstruction (model and baselines), calorimeter | Tracks."""
    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(16, 6.5), constrained_layout=True)
    for ax, key, title in zip(axes, ("calo", "tracks"), ("calorimeter (ECAL + HCAL)", "Tracks"), strict=True):
        values = np.concatenate([v[key] for v in emd.values()])
        bins = np.linspace(0, np.percentile(values, 99.5) if values.size else 1, 40)
        for name, v in emd.items():
            ax.hist(v[key], bins=bins, histtype="step", lw=2, label=f"{name} (mean {v[key].mean():.3f})")
        ax.set_xlabel(f"per-event EMD, {title} [rad]")
        ax.set_ylabel("events")
        ax.legend(fontsize=13)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


@styled
def plot_observables(
    original: np.ndarray, reconstructions: dict[str, np.ndarray], path: str | Path, labels: Sequence[str] = ()
) -> Path:
    """Step histograms of image observables (``pt``, ``m0`` of the ECAL+HCAL image, channel energies; GeV),
    original vs each reconstruction."""
    path = Path(path)
    obs = {"original": image_observables(original)}
    obs.update({name: image_observables(r) for name, r in reconstructions.items()})
    fig, axes = plt.subplots(1, len(OBSERVABLES), figsize=(6 * len(OBSERVABLES), 5.5), constrained_layout=True)
    for ax, (key, label, unit) in zip(axes, OBSERVABLES, strict=True):
        values = np.concatenate([o[key] for o in obs.values()])
        lo, hi = np.percentile(values, [0.5, 99.5])
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 30)
        for name, o in obs.items():
            ax.hist(o[key], bins=bins, histtype="step", lw=2, label=name, ls="-" if name == "original" else "--")
        ax.set_xlabel(f"{label} [{unit}]", fontsize=14)
        ax.set_ylabel("events", fontsize=14)
        ax.legend(fontsize=11)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path
