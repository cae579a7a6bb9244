"""Every figure the toolkit writes labels each axis that shows numbers, and each colour bar: called on small
synthetic inputs, every plotting function's figure is inspected when it is saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hep_keras.evaluation import fidelity_plots, generation_plots, jet_residuals, plots, tuning_plots


def unlabelled_axes(fig) -> list[str]:
    """Axes of a drawn figure that show tick labels without an axis label (colour bars included), or tick labels
    that overlap each other."""
    problems = []
    renderer = fig.canvas.get_renderer()
    for i, ax in enumerate(fig.axes):
        if not (ax.get_visible() and ax.axison):
            continue
        colorbar = getattr(ax, "_colorbar", None)
        if colorbar is not None:
            axis = ax.yaxis if colorbar.orientation == "vertical" else ax.xaxis
            if not axis.get_label_text().strip():
                problems.append(f"colour bar of panel {i} has no label")
            continue
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            shown = [t for t in axis.get_ticklabels() if t.get_visible() and t.get_text().strip()]
            where = f"panel {i} ({ax.get_title() or 'untitled'}): {name} axis"
            if shown and not axis.get_label_text().strip():
                problems.append(f"{where} has tick labels, no label")
            boxes = [t.get_window_extent(renderer).expanded(1.0, 1.0) for t in shown]
            if any(boxes[j].overlaps(boxes[k]) for j in range(len(boxes)) for k in range(j)):
                problems.append(f"{where} has overlapping tick labels: {[t.get_text() for t in shown]}")
    return problems


@pytest.fixture
def saved(monkeypatch):
    """Records ``{file name: [problems]}`` for every figure saved while the test runs."""
    from matplotlib.figure import Figure

    save = Figure.savefig
    found: dict[str, list[str]] = {}

    def checked_savefig(fig, fname, *args, **kwargs):
        result = save(fig, fname, *args, **kwargs)  # draws the figure, so the tick labels exist
        found[Path(str(fname)).name] = unlabelled_axes(fig)
        return result

    monkeypatch.setattr(Figure, "savefig", checked_savefig)
    return found


def _images(n: int = 8, size: int = 25, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.exponential(1.0, (n, size, size, 3)).astype(np.float32)
    return images * (rng.random(images.shape) < 0.1)


def _jets(n: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.uniform(70, 300, n), rng.uniform(-2, 2, n), rng.uniform(-np.pi, np.pi, n), rng.uniform(2, 40, n)], axis=1
    ).astype(np.float32)


def _history(tmp: Path) -> Path:
    path = tmp / "history.csv"
    path.write_text("epoch,loss,val_loss,kl,val_kl\n0,3.0,3.2,0.5,0.6\n1,2.0,2.4,0.4,0.5\n")
    return path


a, b = _images(seed=1), _images(seed=2)
labels = np.arange(8) % 2
jets = _jets()
restored = jets * np.float32(1.001)
emd = {"vae": {"calo": np.linspace(0.1, 1, 8), "tracks": np.linspace(0.2, 2, 8)}}

FIGURES = {
    "history": lambda tmp: plots.plot_history(_history(tmp), tmp / "f.png"),
    "latent": lambda tmp: plots.plot_latent(np.random.default_rng(0).normal(size=(8, 4)), labels, tmp / "f.png"),
    "observable_histograms": lambda tmp: plots.plot_observable_histograms(
        {"mass": a.sum(axis=(1, 2, 3))}, {"mass": b.sum(axis=(1, 2, 3))}, tmp / "f.png"
    ),
    "event_displays": lambda tmp: fidelity_plots.plot_event_displays(a, b, tmp / "f.png", n_events=2),
    "mean_images_ratio": lambda tmp: fidelity_plots.plot_mean_images_ratio(a, b, tmp / "f.png"),
    "emd_distributions": lambda tmp: fidelity_plots.plot_emd_distributions(emd, tmp / "f.png"),
    "observables": lambda tmp: fidelity_plots.plot_observables(a, {"vae": b}, tmp / "f.png"),
    "generation_mean_and_ratio": lambda tmp: generation_plots.plot_mean_and_ratio(a, b, tmp / "f.png"),
    "qg_event_displays": lambda tmp: generation_plots.plot_qg_event_displays(a, labels, b, labels, tmp / "f.png"),
    "occupancy_maps": lambda tmp: generation_plots.plot_occupancy_maps(a, b, tmp / "f.png"),
    "objective_vs_trial": lambda tmp: tuning_plots.plot_objective_vs_trial(
        ["00", "01", "02"], np.array([0.9, 0.7, np.nan]), "val_emd_ratio", "min", tmp / "f.png"
    ),
    "objective_vs_parameter": lambda tmp: tuning_plots.plot_objective_vs_parameter(
        [1e-4, 1e-3, 1e-2], np.array([0.9, 0.7, 0.8]), "learning_rate", "val_emd_ratio", "importance 0.5", tmp / "f.png"
    ),
    "compressor_residuals": lambda tmp: jet_residuals.write_figures(jets, restored, tmp),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_axis_with_numbers_has_a_label(name, tmp_path, saved):
    FIGURES[name](tmp_path)
    assert saved, f"{name} saved no figure"
    problems = [f"{file}: {p}" for file, found in saved.items() for p in found]
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_missing_label_overlapping_ticks_and_a_bare_colour_bar(tmp_path, saved):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2)
    left.plot([0, 1], [2, 3])
    left.set_xlabel("mass [GeV]")
    image = right.imshow(np.eye(3))
    right.set_xlabel(r"$\Delta\eta$")
    right.set_ylabel(r"$\Delta\phi$")
    fig.colorbar(image, ax=right)
    fig.savefig(tmp_path / "bad.png")
    plt.close(fig)
    assert saved["bad.png"] == [
        "panel 0 (untitled): y axis has tick labels, no label",
        "colour bar of panel 2 has no label",
    ]


def test_histogram_bins_follow_whole_number_values():
    """Hit counts get bins centred on whole multiples of their common step (no bin that no value can reach);
    continuous values get equal bins over their central 99 %."""
    counts = np.arange(4, 33)
    edges = plots.histogram_bins(counts.astype(float))
    np.testing.assert_array_equal(edges, np.arange(3.5, 33.0))  # one bin per count, 4 to 32
    towers = np.arange(4, 33) * 25.0  # HCAL pixels: whole 5x5 towers
    edges = plots.histogram_bins(towers)
    assert np.all(np.histogram(towers, edges)[0] > 0) and edges[0] == 100 - 12.5 and np.all(np.diff(edges) == 25)
    wide = np.arange(0, 1000)
    assert np.all(np.histogram(wide, plots.histogram_bins(wide.astype(float)))[0][:-1] == 25)
    smooth = np.random.default_rng(0).normal(size=1000)
    assert len(plots.histogram_bins(smooth)) == 40
