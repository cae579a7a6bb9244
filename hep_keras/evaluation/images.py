"""Evaluation of image reconstructions: the metrics and the standard set of figures, from arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.evaluation.fidelity_plots import plot_event_displays, plot_mean_images_ratio
from hep_keras.evaluation.metrics import reconstruction_metrics
from hep_keras.evaluation.plots import plot_latent, plot_observable_histograms
from hep_keras.physics import image_observables


def evaluate_reconstruction(
    original: np.ndarray,
    reconstructed: np.ndarray,
    figure_dir: Path,
    labels: np.ndarray | None = None,
    latent: np.ndarray | None = None,
    figure_events: int = 4,
) -> dict[str, Any]:
    """Metrics of ``(N, H, W, 3)`` GeV reconstructions and the figures a physicist shows.

    Writes into ``figure_dir``: ``event_<i>.png`` (original | reconstruction | difference per channel and sum),
    ``mean_images.png``, ``observables.png`` (per-channel energy, image mass and pT, occupancy histograms)
    and, given ``latent`` and ``labels``, ``latent_space.png`` coloured quark/gluon.
    """
    figure_dir = Path(figure_dir)
    figure_dir.mkdir(parents=True, exist_ok=True)
    metrics = reconstruction_metrics(original, reconstructed)
    plot_event_displays(original, reconstructed, figure_dir / "event.png", n_events=figure_events)
    plot_mean_images_ratio(original, reconstructed, figure_dir / "mean_images.png")
    plot_observable_histograms(
        image_observables(original),
        image_observables(reconstructed),
        figure_dir / "observables.png",
        distances=metrics["wasserstein1"],
    )
    if latent is not None and labels is not None:
        plot_latent(latent, labels, figure_dir / "latent_space.png")
    return metrics
