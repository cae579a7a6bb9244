"""How close are generated jet images to real ones? Observables, W1 with its statistical floor, figures.

A Wasserstein-1 distance alone has no scale: W1(generated, real) is compared with W1 between two disjoint
halves of the *real* events of the same size (the "floor" set by finite statistics). A ratio near 1 means the
generator is as close to the data as a second real sample would be. Takes numpy arrays, never models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hep_keras.evaluation.metrics import distribution_distances, w1_floor
from hep_keras.physics import (
    image_observables,
    pixel_coordinates,
    radial_profile,
)

RADIAL_BINS = 16
RADIAL_MAX = 0.4


def girth(images: np.ndarray) -> np.ndarray:
    """Calorimeter-energy-weighted mean ΔR from the image centre, ``(N,)`` (0 for empty events)."""
    calo = np.asarray(images[..., 1] + images[..., 2], dtype=np.float64)
    eta, phi = pixel_coordinates(calo.shape[1], calo.shape[2])
    total = calo.sum(axis=(1, 2))
    weighted = np.einsum("nhw,hw->n", calo, np.hypot(eta, phi))
    return np.divide(weighted, total, out=np.zeros_like(total), where=total > 0)


def generation_observables(images: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`~hep_keras.physics.image_observables` plus ``girth`` (radial spread), each ``(N,)``."""
    obs = image_observables(images)
    obs["girth"] = girth(images)
    return obs


def split_halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of ``range(n)`` (sizes ``n // 2`` and ``n - n // 2``)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def w1_with_floor(
    real_a: dict[str, np.ndarray], real_b: dict[str, np.ndarray], generated: dict[str, np.ndarray], seed: int = 0
) -> dict[str, dict[str, float]]:
    """W1(generated, real_a) beside the floor, and their ratio, per observable; the floor is the mean W1 of two
    real samples of the sizes of ``real_a`` and ``real_b`` over re-splits of their pooled events (:func:`w1_floor`,
    seeded with ``seed``).

    ``generated`` should have as many events as ``real_b`` for the floor to be comparable.
    """
    w1 = distribution_distances(real_a, generated)
    both = [k for k in real_a if k in real_b and len(real_a[k]) and len(real_b[k])]
    floor = {k: w1_floor(real_a[k], real_b[k], seed=seed)[0] for k in both}
    ratio = {k: (w1[k] / floor[k] if floor.get(k) else float("nan")) for k in w1}
    return {"w1": w1, "w1_floor": floor, "w1_over_floor": ratio}


def radial_profile_distance(real: np.ndarray, other: np.ndarray) -> float:
    """Σ over ΔR rings of |mean energy fraction (real) − mean energy fraction (other)| (0 = identical)."""
    _, p_real = radial_profile(real, RADIAL_BINS, RADIAL_MAX)
    _, p_other = radial_profile(other, RADIAL_BINS, RADIAL_MAX)
    return float(np.abs(p_real.mean(axis=0) - p_other.mean(axis=0)).sum())


def compare_generated(real: np.ndarray, generated: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """All distribution metrics of generated vs real ``(N, H, W, 3)`` GeV images (same H, W).

    The real events are split into halves A and B; the generated events are subsampled to the size of B.
    Returns ``{"w1", "w1_floor", "w1_over_floor", "mean_w1_over_floor", "radial_profile_l1",
    "radial_profile_l1_floor", "n_real_a", "n_real_b", "n_generated"}``.
    """
    a_idx, b_idx = split_halves(len(real), seed)
    gen = generated[: len(b_idx)]
    real_a, real_b = real[a_idx], real[b_idx]
    out: dict[str, Any] = w1_with_floor(
        generation_observables(real_a), generation_observables(real_b), generation_observables(gen), seed
    )
    finite = [v for v in out["w1_over_floor"].values() if np.isfinite(v)]
    out["mean_w1_over_floor"] = float(np.mean(finite)) if finite else float("nan")
    out["radial_profile_l1"] = radial_profile_distance(real_a, gen)
    out["radial_profile_l1_floor"] = radial_profile_distance(real_a, real_b)
    out.update(n_real_a=len(a_idx), n_real_b=len(b_idx), n_generated=len(gen))
    return out
