"""Residuals, metrics and figures of jet 4-vector compression (arrays in, numbers/PNGs out; no models).

Residual conventions (the way trigger-jet compression is judged):

* pT and m: *relative* residual ``(restored - original) / original``; for m only jets with
  ``original m >= min_mass`` (default 1 GeV) count, because the relative residual of a (near-)massless jet
  is meaningless; the excluded fraction is reported.
* eta and phi: *absolute* residual ``restored - original`` (phi wrapped into [-pi, pi)).

Arrays are ``(N, 4)`` of (pT [GeV], eta, phi [rad], m [GeV]).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import wasserstein_distance  # noqa: E402

from hep_keras.evaluation.style import styled  # noqa: E402

VARIABLES = ("pt", "eta", "phi", "m")
RELATIVE = ("pt", "m")
LABELS = {"pt": r"$p_T$", "eta": r"$\eta$", "phi": r"$\phi$", "m": r"$m$"}
UNITS = {"pt": "GeV", "eta": "", "phi": "rad", "m": "GeV"}
#: the compressor's goal: sigma of the relative residual (pT, m), RMS of the absolute residual (eta, phi)
GOALS = {"pt": 0.01, "eta": 0.005, "phi": 0.005, "m": 0.05}


def residuals(original: np.ndarray, restored: np.ndarray, min_mass: float = 1.0) -> dict[str, np.ndarray]:
    """Per-variable residuals (relative for pT/m, absolute for eta/phi); see the module docstring."""
    original = np.asarray(original, dtype=np.float64)
    restored = np.asarray(restored, dtype=np.float64)
    out = {}
    for i, name in enumerate(VARIABLES):
        o, r = original[:, i], restored[:, i]
        if name == "pt":
            out[name] = (r - o) / o
        elif name == "m":
            keep = o >= min_mass
            out[name] = (r[keep] - o[keep]) / o[keep]
        elif name == "phi":
            out[name] = np.mod(r - o + np.pi, 2 * np.pi) - np.pi
        else:
            out[name] = r - o
    return out


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"n": 0}
    q16, q50, q84 = np.percentile(values, [16, 50, 84])
    return {
        "n": int(values.size),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "rms": float(np.sqrt(np.mean(values**2))),
        "median": float(q50),
        "half_width_68": float((q84 - q16) / 2),
        "max_abs": float(np.abs(values).max()),
    }


def residual_metrics(original: np.ndarray, restored: np.ndarray, min_mass: float = 1.0) -> dict[str, dict]:
    """Per-variable residual statistics, W1 distances and the goal check.

    Returns ``{var: {n, mean, std, rms, median, half_width_68, max_abs, w1, goal, goal_met, kind}}`` where
    ``goal`` applies to ``std`` (pT, m: relative) or ``rms`` (eta, phi: absolute); ``w1`` is the 1-Wasserstein
    distance between the original and restored distributions of the variable (its own units).
    """
    res = residuals(original, restored, min_mass)
    out: dict[str, dict] = {}
    for i, name in enumerate(VARIABLES):
        stats = _stats(res[name])
        stats["kind"] = "relative" if name in RELATIVE else "absolute"
        stats["w1"] = float(wasserstein_distance(original[:, i], restored[:, i]))
        measure = stats.get("std" if name in RELATIVE else "rms", float("nan"))
        stats["goal"] = GOALS[name]
        stats["goal_met"] = bool(measure <= GOALS[name])
        out[name] = stats
    out["m"]["excluded_fraction"] = float(np.mean(np.asarray(original)[:, 3] < min_mass))
    out["m"]["min_mass"] = float(min_mass)
    return out


def _hist(ax, values: np.ndarray, span: float, label: str, color=None) -> None:
    mean = values.mean() if values.size else float("nan")
    rms = np.sqrt(np.mean(values**2)) if values.size else float("nan")
    clipped = np.clip(values, -span, span)
    ax.hist(
        clipped,
        bins=80,
        range=(-span, span),
        histtype="step",
        color=color,
        label=f"{label}\nmean {mean:.2e}, RMS {rms:.2e}",
    )
    ax.legend(fontsize=8)


@styled
def plot_residuals(
    original: np.ndarray, restored: np.ndarray, path: str | Path, span: float = 0.02, min_mass: float = 1.0
) -> Path:
    """2x2 histograms of the residuals: relative (pT, m) within ±``span``, absolute (eta, phi) within ±span/4.

    Values outside the range are piled into the edge bins.
    """
    res = residuals(original, restored, min_mass)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, name in zip(axes.flat, VARIABLES, strict=True):
        width = span if name in RELATIVE else span / 4
        _hist(ax, res[name], width, LABELS[name])
        kind = "(restored − original) / original" if name in RELATIVE else f"restored − original [{UNITS[name] or '1'}]"
        ax.set_xlabel(f"{LABELS[name]}: {kind}")
        ax.set_ylabel("jets")
    fig.suptitle(f"compression residuals (range ±{span:g} relative, ±{span / 4:g} absolute)")
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@styled
def plot_distributions(original: np.ndarray, restored: np.ndarray, path: str | Path) -> Path:
    """Original vs restored distributions of each variable, overlaid (pT and m on a log x axis)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for i, (ax, name) in enumerate(zip(axes.flat, VARIABLES, strict=True)):
        o, r = original[:, i], restored[:, i]
        r = r[np.isfinite(r)]
        hi = max(o.max(), np.percentile(r, 99.9) if r.size else o.max())
        if name in RELATIVE:
            lo = max(np.percentile(o, 0.1), 1e-2)
            bins = np.geomspace(lo, max(hi, 1.01 * lo), 60)
            ax.set_xscale("log")
        else:
            lo = min(o.min(), np.percentile(r, 0.1) if r.size else o.min())
            bins = np.linspace(lo, max(hi, lo + 1e-6), 60)
        w1 = wasserstein_distance(o, r)
        ax.hist(o, bins=bins, histtype="step", label="original")
        ax.hist(r, bins=bins, histtype="step", linestyle="--", label=f"restored (W1 {w1:.2e})")
        ax.set_xlabel(f"{LABELS[name]} [{UNITS[name]}]" if UNITS[name] else LABELS[name])
        ax.set_ylabel("jets")
        ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@styled
def plot_residual_vs_pt(
    original: np.ndarray, restored: np.ndarray, path: str | Path, min_mass: float = 1.0, n_bins: int = 12
) -> Path:
    """Profile of each residual vs original pT: median and 16-84 % band per log-pT bin."""
    res = residuals(original, restored, min_mass)
    pt = original[:, 0]
    edges = np.geomspace(pt.min(), pt.max() * (1 + 1e-9), n_bins + 1)
    centres = np.sqrt(edges[1:] * edges[:-1])
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), constrained_layout=True)
    for ax, name in zip(axes.flat, VARIABLES, strict=True):
        x = pt[original[:, 3] >= min_mass] if name == "m" else pt
        which = np.digitize(x, edges) - 1
        med, lo, hi = (np.full(n_bins, np.nan) for _ in range(3))
        for b in range(n_bins):
            vals = res[name][which == b]
            if vals.size >= 5:
                lo[b], med[b], hi[b] = np.percentile(vals, [16, 50, 84])
        ax.fill_between(centres, lo, hi, alpha=0.3, label="16–84 %")
        ax.plot(centres, med, "o-", label="median")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xscale("log")
        ax.set_xlabel(r"original $p_T$ [GeV]")
        ax.set_ylabel(f"{LABELS[name]} residual ({'relative' if name in RELATIVE else 'absolute'})")
        ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_figures(
    original: np.ndarray, restored: np.ndarray, figures_dir: str | Path, min_mass: float = 1.0
) -> list[Path]:
    """All compression figures into ``figures_dir``: narrow/wide residuals, distributions, profile vs pT."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    return [
        plot_residuals(original, restored, figures_dir / "residuals_narrow.png", 0.02, min_mass),
        plot_residuals(original, restored, figures_dir / "residuals_wide.png", 0.5, min_mass),
        plot_distributions(original, restored, figures_dir / "distributions.png"),
        plot_residual_vs_pt(original, restored, figures_dir / "residual_vs_pt.png", min_mass),
    ]
