"""Physics-aware quality numbers for reconstructed (or generated) jet images.

The primary numbers are responses (reconstructed / original, event by event) of per-channel energy, image jet
mass and pT, the occupancy ratio, and Wasserstein-1 distances of those observables' distributions. Pixel
MSE/MAE are in GeV. SSIM and PSNR (``tf.image``) are secondary: on sparse images with ~1e-3 GeV pixels they
read near-perfect for blank outputs, so they are reported with the data range used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from hep_keras.physics import CHANNEL_KEYS, image_observables

RESPONSE_OBSERVABLES = ("energy_tracks", "energy_ecal", "energy_hcal", "energy_total", "mass", "pt")


def response(original: np.ndarray, reconstructed: np.ndarray, min_original: float = 1e-3) -> dict[str, float]:
    """Statistics of the event-by-event ratio reconstructed / original over events with original > min_original.

    Returns mean, std, median and the robust width IQR/1.349 (``iqr_sigma``) plus the number of events used.
    """
    keep = np.asarray(original) > min_original
    if not keep.any():
        return {
            "mean": float("nan"),
            "std": float("nan"),
            "median": float("nan"),
            "iqr_sigma": float("nan"),
            "n": 0,
        }
    ratio = np.asarray(reconstructed)[keep] / np.asarray(original)[keep]
    q25, q50, q75 = np.percentile(ratio, [25, 50, 75])
    return {
        "mean": float(ratio.mean()),
        "std": float(ratio.std()),
        "median": float(q50),
        "iqr_sigma": float((q75 - q25) / 1.349),
        "n": int(keep.sum()),
    }


def distribution_distances(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, float]:
    """Wasserstein-1 distance (in the observable's units) between the two samples of each common observable."""
    return {
        key: float(wasserstein_distance(reference[key], other[key]))
        for key in reference
        if key in other and len(reference[key]) and len(other[key])
    }


def w1_floor(a: np.ndarray, b: np.ndarray, splits: int = 50, seed: int = 0) -> tuple[float, float]:
    """The real-vs-real floor of a W1 between samples of ``len(a)`` and ``len(b)`` events: ``(mean, standard
    deviation)`` of W1 over ``splits`` seeded random splits of the pooled values of ``a`` and ``b`` into parts
    of those sizes. It depends on the pooled values only, not on which of them were in ``a``."""
    pooled = np.sort(np.concatenate([np.ravel(a), np.ravel(b)]))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(splits):
        order = rng.permutation(len(pooled))
        values.append(wasserstein_distance(pooled[order[: len(a)]], pooled[order[len(a) :]]))
    return float(np.mean(values)), float(np.std(values))


def ssim_psnr(original: np.ndarray, reconstructed: np.ndarray) -> dict[str, float]:
    """Mean SSIM and PSNR via ``tf.image`` with the data range = the largest original pixel value (GeV).

    The SSIM window is 11 pixels (``tf.image.ssim``'s default) or the image size if smaller.
    """
    import tensorflow as tf

    max_val = float(np.max(original)) or 1.0
    a = tf.convert_to_tensor(original, tf.float32)
    b = tf.convert_to_tensor(reconstructed, tf.float32)
    filter_size = min(11, original.shape[1], original.shape[2])  # tf.image default is 11; small crops need less
    return {
        "ssim": float(tf.reduce_mean(tf.image.ssim(a, b, max_val=max_val, filter_size=filter_size))),
        "psnr_db": float(tf.reduce_mean(tf.image.psnr(a, b, max_val=max_val))),
        "data_range_gev": max_val,
    }


def reconstruction_metrics(original: np.ndarray, reconstructed: np.ndarray, threshold: float = 0.0) -> dict[str, Any]:
    """All reconstruction metrics of ``(N, H, W, 3)`` GeV images; a nested JSON-able dict.

    ``threshold`` (GeV) is the pixel value above which a pixel counts as occupied.
    """
    original = np.asarray(original, dtype=np.float32)
    reconstructed = np.asarray(reconstructed, dtype=np.float32)
    if original.shape != reconstructed.shape:
        raise ValueError(f"shape mismatch: original {original.shape} vs reconstructed {reconstructed.shape}")
    obs_o = image_observables(original, threshold)
    obs_r = image_observables(reconstructed, threshold)
    diff = reconstructed - original
    occupancy = {}
    for name in CHANNEL_KEYS:
        o, r = obs_o[f"occupancy_{name}"], obs_r[f"occupancy_{name}"]
        occupancy[name] = float(r.sum() / max(o.sum(), 1.0))
    return {
        "n_events": int(len(original)),
        "response": {key: response(obs_o[key], obs_r[key]) for key in RESPONSE_OBSERVABLES},
        "occupancy_ratio": occupancy,
        "pixel": {
            "mse_gev2": float(np.mean(diff**2)),
            "mae_gev": float(np.mean(np.abs(diff))),
            "mse_gev2_per_channel": {n: float(np.mean(diff[..., c] ** 2)) for c, n in enumerate(CHANNEL_KEYS)},
        },
        "wasserstein1": distribution_distances(obs_o, obs_r),
        "secondary": ssim_psnr(original, reconstructed),
    }
