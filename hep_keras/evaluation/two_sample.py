"""Classifier two-sample test: can a small network tell generated jet images from real ones?

A dense classifier is trained on high-level features (:func:`high_level_features`) of half of the real and
half of the generated events and scored on the other halves. Its ROC AUC on the held-out half is the metric:
0.5 = indistinguishable; published calorimeter diffusion models reach 0.54-0.65; 1.0 = trivially separable.
The uncertainty is given two ways: Hanley & McNeil (1982) and the standard deviation of a bootstrap over the
held-out events. Takes numpy arrays, never models.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hep_keras.physics import image_observables, radial_profile

#: rings (ΔR edges) whose energy fractions enter the features
RING_EDGES = (0.0, 0.05, 0.1, 0.2, 0.4)


def high_level_features(images: np.ndarray, return_names: bool = False):
    """Features of ``(N, H, W, 3)`` GeV images for the two-sample test: ``(N, F)`` float32 (and their names).

    log(1 + x) of the per-channel and total energies, image mass and pT, log(1 + occupancy) per channel, and
    the calorimeter energy fractions in the ΔR rings of :data:`RING_EDGES`.
    """
    obs = image_observables(images)
    names = sorted(obs)
    columns = [np.log1p(np.maximum(obs[k], 0.0)) for k in names]
    max_radius = RING_EDGES[-1]
    n_fine = 40
    edges, profile = radial_profile(images, n_bins=n_fine, max_radius=max_radius)
    centres = 0.5 * (edges[1:] + edges[:-1])
    for lo, hi in zip(RING_EDGES[:-1], RING_EDGES[1:], strict=True):
        in_ring = (centres >= lo) & (centres < hi)
        columns.append(profile[:, in_ring].sum(axis=1))
        names.append(f"ring_{lo:g}_{hi:g}")
    features = np.stack(columns, axis=1).astype(np.float32)
    return (features, names) if return_names else features


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney U statistic (ties count one half)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    n1, n0 = labels.sum(), (~labels).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def hanley_mcneil_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Standard error of an AUC (Hanley & McNeil 1982)."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)
    return float(math.sqrt(max(var, 0.0) / (n_positive * n_negative)))


def bootstrap_auc_error(labels: np.ndarray, scores: np.ndarray, n_boot: int = 200, seed: int = 0) -> float:
    """Standard deviation of the AUC over bootstrap resamples of the scored events."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    aucs = [rank_auc(labels[idx], scores[idx]) for idx in (rng.integers(0, n, n) for _ in range(n_boot))]
    return float(np.nanstd(aucs))


def _split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    return perm[: n // 2], perm[n // 2 :]


def _classifier(n_features: int, width: int, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((n_features,)),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="two_sample_classifier",
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    return model


def small_cnn(shape: tuple[int, int, int], seed: int, towers: bool = False):
    """The small CNN of the image two-sample tests on ``(H, W, C)`` log1p(GeV) images: one sigmoid output,
    compiled (Adam 2e-3, binary cross-entropy), weights fixed by ``seed``.

    ``towers``: the first layer reads aligned 5×5 blocks (125 → 25: one cell per HCAL tower) and the last
    features are averaged over the image (generation quality); otherwise it strides by 2 and flattens
    (reconstruction fidelity).
    """
    import keras

    keras.utils.set_random_seed(seed)
    first = (
        keras.layers.Conv2D(16, 5, strides=5, activation="relu")
        if towers
        else keras.layers.Conv2D(16, 5, strides=2, padding="same", activation="relu")
    )
    model = keras.Sequential(
        [
            keras.Input(shape),
            first,
            keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D() if towers else keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="two_sample_cnn",
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="binary_crossentropy")
    return model


def classifier_two_sample_test(
    real: np.ndarray,
    generated: np.ndarray,
    epochs: int = 40,
    width: int = 32,
    seed: int = 0,
    n_boot: int = 200,
) -> dict[str, Any]:
    """Train a real-vs-generated classifier on half the events, return its held-out AUC with uncertainties.

    Args:
        real, generated: feature matrices ``(N_real, F)`` and ``(N_gen, F)`` (e.g. :func:`high_level_features`);
            the larger one is subsampled so both classes have the same size.
    Returns:
        ``{"auc", "auc_err_hanley_mcneil", "auc_err_bootstrap", "n_train", "n_test"}`` (``auc`` from
        ``keras.metrics.AUC`` on the held-out half; counts are events of both classes together).
    """
    import keras

    rng = np.random.default_rng(seed)
    n = min(len(real), len(generated))
    if n < 4:
        raise ValueError(f"the two-sample test needs at least 4 events per class, got {n}")
    real = real[rng.permutation(len(real))[:n]]
    generated = generated[rng.permutation(len(generated))[:n]]
    tr_r, te_r = _split(n, rng)
    tr_g, te_g = _split(n, rng)
    x_train = np.concatenate([real[tr_r], generated[tr_g]])
    y_train = np.concatenate([np.zeros(len(tr_r)), np.ones(len(tr_g))]).astype("float32")
    x_test = np.concatenate([real[te_r], generated[te_g]])
    y_test = np.concatenate([np.zeros(len(te_r)), np.ones(len(te_g))]).astype("float32")
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    model = _classifier(x_train.shape[1], width, seed)
    model.fit(x_train, y_train, epochs=epochs, batch_size=min(128, len(x_train)), verbose=0, shuffle=True)
    scores = np.asarray(model.predict(x_test, verbose=0)).ravel()
    metric = keras.metrics.AUC(num_thresholds=1000)
    metric.update_state(y_test, scores)
    auc = float(metric.result())
    return {
        "auc": auc,
        "auc_err_hanley_mcneil": hanley_mcneil_error(auc, len(te_g), len(te_r)),
        "auc_err_bootstrap": bootstrap_auc_error(y_test, scores, n_boot, seed),
        "n_train": int(len(x_train)),
        "n_test": int(len(x_test)),
    }
