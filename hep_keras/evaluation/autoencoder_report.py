"""Evaluation of an image autoencoder's reconstructions of held-out events: the fidelity table against the
baselines, the verdicts, the figures and the secondary physics metrics — used by ``fit vae|ae`` and by
``reconstruct``. Takes arrays only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.evaluation.fidelity_plots import (
    plot_emd_distributions,
    plot_event_displays,
    plot_mean_images_ratio,
    plot_observables,
)
from hep_keras.evaluation.fidelity_report import baseline_reconstructions, evaluate_fidelity, report_section
from hep_keras.evaluation.metrics import reconstruction_metrics

#: what the VAE / AE reconstructions carry exactly by construction (never evidence of quality); the image mass is
#: in the code too, but only as an input of the decoder: the decoded image's mass is learned, not exact
EXACT_IN_CODE = ["channel energies"]


def evaluate_autoencoder(
    name: str,
    original: np.ndarray,
    reconstructed: np.ndarray,
    figure_dir: Path,
    code_size: int,
    thresholds: list[float] | None,
    test_labels: np.ndarray | None = None,
    train_images: np.ndarray | None = None,
    train_labels: np.ndarray | None = None,
    cnn_epochs: int = 10,
    figure_events: int = 4,
    seed: int = 0,
    notes: list[str] | None = None,
    verbose: int = 1,
) -> dict[str, Any]:
    """Fidelity of ``reconstructed`` (GeV) of the held-out ``original`` events against the mean-image and PCA
    baselines (fitted on ``train_images``; skipped when ``None``), figures into ``figure_dir``; ``verbose=1``
    shows a progress bar over the measures.

    Returns a JSON-able dict: ``fidelity`` (the table's numbers), ``physics`` (responses, occupancy, W1,
    SSIM/PSNR as secondary numbers) and ``report_markdown`` (verdicts in words, then the table).
    """
    figure_dir = Path(figure_dir)
    figure_dir.mkdir(parents=True, exist_ok=True)
    reconstructions = {name: reconstructed}
    exact = {name: EXACT_IN_CODE, "mean image": ["channel energies"]}
    code_sizes = {name: code_size, "mean image": 3}
    if train_images is not None:
        baselines = baseline_reconstructions(train_images, original, code_size, thresholds)
        reconstructions.update(baselines)
        code_sizes["PCA"] = min(code_size, len(train_images))
    results, emd = evaluate_fidelity(
        original,
        reconstructions,
        test_labels=test_labels,
        train_images=train_images,
        train_labels=train_labels,
        code_sizes=code_sizes,
        exact=exact,
        cnn_epochs=cnn_epochs,
        seed=seed,
        verbose=verbose,
    )
    plot_event_displays(original, reconstructed, figure_dir / "event.png", n_events=figure_events, label=name)
    plot_mean_images_ratio(original, reconstructed, figure_dir / "mean_images.png", label=name)
    plot_emd_distributions(emd, figure_dir / "emd.png")
    plot_observables(original, reconstructions, figure_dir / "observables.png")
    notes = list(notes or [])
    if train_images is None:
        notes.append("No training events were available: the baselines and the q/g check are missing.")
    return {
        "fidelity": results,
        "physics": reconstruction_metrics(original, reconstructed),
        "report_markdown": report_section(results, name, notes),
    }
