"""Figures of generated vs real jet images: mean image and ratio, quark/gluon event displays, occupancy maps.

Every panel is in detector coordinates: Δη (rows) and Δφ (columns) in radians from the image centre
(:data:`hep_keras.physics.PIXEL_SIZE` per pixel), GeV colour bars on a log scale, and the same colour range for
the real and the generated panel of a channel. Takes numpy arrays ``(N, H, W, 3)`` in GeV, never models.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from hep_keras.evaluation.style import image_extent, styled  # noqa: E402
from hep_keras.physics import CHANNELS  # noqa: E402


def _show(ax, image, norm, title, cmap="viridis"):
    shown = np.ma.masked_less_equal(image, 0) if isinstance(norm, LogNorm) else image
    im = ax.imshow(
        shown, norm=norm, origin="lower", extent=image_extent(*image.shape), cmap=cmap, interpolation="nearest"
    )
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("Δφ [rad]", fontsize=7)
    ax.set_ylabel("Δη [rad]", fontsize=7)
    ax.tick_params(labelsize=6)
    return im


def _log_norm(*images, floor_fraction: float = 1e-4) -> LogNorm:
    vmax = max(float(np.max(x)) for x in images)
    vmax = vmax if vmax > 0 else 1.0
    positive = [x[x > 0] for x in images]
    vmin = min((float(p.min()) for p in positive if p.size), default=vmax * floor_fraction)
    return LogNorm(max(vmin, vmax * floor_fraction), vmax)


@styled
def plot_mean_and_ratio(real: np.ndarray, generated: np.ndarray, path: str | Path) -> Path:
    """Per channel: mean real image, mean generated image (same log colour range, GeV) and generated / real."""
    path = Path(path)
    fig, axes = plt.subplots(3, 3, figsize=(11, 10), constrained_layout=True)
    mean_real, mean_gen = real.mean(axis=0), generated.mean(axis=0)
    for c, name in enumerate(CHANNELS):
        norm = _log_norm(mean_real[..., c], mean_gen[..., c])
        im = _show(axes[c, 0], mean_real[..., c], norm, f"{name}: mean real [GeV/pixel]")
        fig.colorbar(im, ax=axes[c, 0], label="GeV")
        im = _show(axes[c, 1], mean_gen[..., c], norm, f"{name}: mean generated [GeV/pixel]")
        fig.colorbar(im, ax=axes[c, 1], label="GeV")
        ratio = np.divide(mean_gen[..., c], mean_real[..., c], out=np.full(mean_real.shape[:2], np.nan),
                          where=mean_real[..., c] > 0)  # fmt: skip
        im = _show(axes[c, 2], ratio, LogNorm(0.1, 10), f"{name}: generated / real", cmap="coolwarm")
        fig.colorbar(im, ax=axes[c, 2], label="ratio")
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


@styled
def plot_qg_event_displays(
    real: np.ndarray,
    real_labels: np.ndarray,
    generated: np.ndarray,
    generated_labels: np.ndarray,
    path: str | Path,
    per_class: int = 2,
) -> Path:
    """Rows: real quark, generated quark, real gluon, generated gluon events (``per_class`` each); columns
    Tracks / ECAL / HCAL. One log colour scale per channel shared by every row (GeV)."""
    path = Path(path)
    rows = []
    for label, name in ((0, "quark"), (1, "gluon")):
        for images, labels, kind in ((real, real_labels, "real"), (generated, generated_labels, "generated")):
            idx = np.flatnonzero(np.asarray(labels) == label)[:per_class]
            rows += [(images[i], f"{kind} {name} #{i}") for i in idx]
    if not rows:
        raise ValueError("no events to display")
    norms = [_log_norm(*(img[..., c] for img, _ in rows), floor_fraction=1e-3) for c in range(3)]
    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 2.9 * len(rows)), constrained_layout=True, squeeze=False)
    for r, (image, title) in enumerate(rows):
        for c, name in enumerate(CHANNELS):
            im = _show(axes[r, c], image[..., c], norms[c], f"{title} {name} Σ={image[..., c].sum():.1f} GeV")
            fig.colorbar(im, ax=axes[r, c], label="GeV")
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path


@styled
def plot_occupancy_maps(real: np.ndarray, generated: np.ndarray, path: str | Path) -> Path:
    """Per channel: fraction of events with a hit in each pixel, real beside generated (same log scale)."""
    path = Path(path)
    fig, axes = plt.subplots(3, 2, figsize=(8, 10), constrained_layout=True)
    occ_real, occ_gen = (real > 0).mean(axis=0), (generated > 0).mean(axis=0)
    for c, name in enumerate(CHANNELS):
        floor = 0.5 / max(len(real), 1)
        norm = LogNorm(floor, max(float(occ_real[..., c].max()), float(occ_gen[..., c].max()), 2 * floor))
        for k, (occ, kind) in enumerate(((occ_real, "real"), (occ_gen, "generated"))):
            im = _show(axes[c, k], occ[..., c], norm, f"{name}: hit probability per pixel, {kind}", cmap="magma")
            fig.colorbar(im, ax=axes[c, k], label="fraction of events")
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path
