"""Reconstruction fidelity of jet images: measures a degenerate reconstruction cannot satisfy, and the baselines.

Every function takes numpy arrays ``(N, H, W, 3)`` of GeV per pixel (channels Tracks, ECAL, HCAL, pixels of
:data:`~hep_keras.physics.PIXEL_SIZE` rad), never models or files.

* :func:`emd_per_event`: energy mover's distance (Wasserstein-1, ground distance = Euclidean ΔR in rad) between
  an event and its reconstruction, for the calorimeter (ECAL + HCAL summed) and for Tracks, each shape
  normalised to unit energy. Exact (POT ``ot.emd2``, network simplex) on the occupied pixels of both images:

  .. math:: \\mathrm{EMD}(p, q) = \\min_{\\gamma \\ge 0,\\ \\gamma 1 = p,\\ \\gamma^T 1 = q} \\sum_{ij} \\gamma_{ij}
            \\lVert x_i - x_j \\rVert

  Komiske, Metodiev, Thaler, "Metric space of collider events", PRL 123 (2019) 041801, arXiv:1902.02346. A
  channel that is empty in one image but not in the other is compared with a unit deposit at the image centre.
* Baselines a model must beat: :func:`mean_image_reconstruction` (the training-split mean image scaled to each
  event's channel energies) and :class:`PCABaseline` (``sklearn`` IncrementalPCA with as many components as
  the model's code has numbers). Both go through :func:`zero_suppress` with the same per-channel thresholds
  as the model's decoder, so all three are compared as detector images (and the EMD stays fast).
* :func:`two_sample_auc_hl` / :func:`two_sample_auc_cnn`: can a classifier tell reconstructions from originals?
  (gradient boosting on :func:`image_summaries`, k-fold; a small CNN on the images, 2-fold). 0.5 = no.
* :func:`outer_ring_share`, :func:`occupancy_ratio`: far-from-axis energy and occupancy, which expose blobs,
  halos and smearing.
* :func:`qg_information`: a quark/gluon classifier trained on original training images, applied to test
  originals and to their reconstructions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hep_keras.evaluation.two_sample import small_cnn
from hep_keras.physics import PIXEL_SIZE, pixel_coordinates

#: pixel thresholds (GeV) of the occupancy summaries
OCCUPANCY_THRESHOLDS = (0.1, 1.0, 5.0)
#: ΔR edges (rad) of the radial-profile summaries (last ring: everything beyond 0.8)
PROFILE_EDGES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8, np.inf)
#: ΔR (rad) beyond which calorimeter energy counts as "outer ring"
OUTER_RADIUS = 0.8


# ------------------------------------------------------------------------------------------------------ EMD
def _coordinates(height: int, width: int) -> np.ndarray:
    eta, phi = pixel_coordinates(height, width)
    return np.stack([eta.ravel(), phi.ravel()], axis=1)


#: maps with more occupied pixels than this are merged into 5×5-pixel blocks before the EMD (see event_emd)
MAX_EMD_PIXELS = 2500
BLOCK = 5


def _points(image: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Occupied pixels of ``image`` (H, W) as (positions (n, 2) rad, weights (n,)); dense maps block-merged."""
    flat = image.ravel()
    index = np.flatnonzero(flat > 0)
    if index.size <= MAX_EMD_PIXELS:
        return coords[index], flat[index]
    h, w = image.shape
    block = (np.arange(h)[:, None] // BLOCK) * (-(-w // BLOCK)) + np.arange(w)[None, :] // BLOCK
    block = block.ravel()[index]
    weights = np.bincount(block, flat[index])
    centroid = np.stack([np.bincount(block, flat[index] * coords[index, k]) for k in range(2)], axis=1)
    keep = weights > 0
    return centroid[keep] / weights[keep, None], weights[keep]


def event_emd(a: np.ndarray, b: np.ndarray, coords: np.ndarray | None = None) -> float:
    """EMD (rad) between two non-negative ``(H, W)`` energy maps, each normalised to unit sum.

    Exact ``ot.emd2`` on the occupied pixels of each map. 0 when both are empty; a map that is empty while the
    other is not is replaced by a unit deposit at the image centre. A map with more than
    :data:`MAX_EMD_PIXELS` occupied pixels (a dense reconstruction: never a jet image or a zero-suppressed
    model output here) is first merged into 5×5-pixel blocks at their energy-weighted centroids, which changes
    its EMD by at most the energy-weighted mean distance of pixels to their block centroid (< 0.05 rad), to
    keep the transport problem small.
    """
    import ot

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if coords is None:
        coords = _coordinates(*a.shape)
    xa, wa = _points(a, coords)
    xb, wb = _points(b, coords)
    if wa.size == 0 and wb.size == 0:
        return 0.0
    centre = np.array([[0.0, 0.0]])
    xa, wa = (xa, wa) if wa.size else (centre, np.ones(1))
    xb, wb = (xb, wb) if wb.size else (centre, np.ones(1))
    cost = ot.dist(xa, xb, metric="euclidean")
    return float(ot.emd2(wa / wa.sum(), wb / wb.sum(), cost, numItermax=1_000_000))


def emd_per_event(original: np.ndarray, reconstructed: np.ndarray) -> dict[str, np.ndarray]:
    """Per-event EMD (rad) of ``(N, H, W, 3)`` GeV images: ``{"calo": (N,), "tracks": (N,)}``.

    ``calo`` compares ECAL + HCAL summed, ``tracks`` the Tracks channel; shapes are normalised to unit energy.
    """
    original, reconstructed = np.asarray(original), np.asarray(reconstructed)
    if original.shape != reconstructed.shape:
        raise ValueError(f"shape mismatch: original {original.shape} vs reconstructed {reconstructed.shape}")
    coords = _coordinates(*original.shape[1:3])
    calo_o, calo_r = original[..., 1] + original[..., 2], reconstructed[..., 1] + reconstructed[..., 2]
    return {
        "calo": np.array([event_emd(calo_o[i], calo_r[i], coords) for i in range(len(original))]),
        "tracks": np.array(
            [event_emd(original[i, ..., 0], reconstructed[i, ..., 0], coords) for i in range(len(original))]
        ),
    }


# ------------------------------------------------------------------------------------------------ baselines
def zero_suppress(images: np.ndarray, thresholds: Sequence[float] | None, keep_energy: bool = True) -> np.ndarray:
    """Negative pixels and pixels below the per-channel ``thresholds`` (GeV) set to 0.

    With ``keep_energy`` every channel is rescaled to its energy before suppression (after clipping negatives);
    a channel where no pixel passes keeps its hottest pixel with the whole energy — as the model's decoder does.
    """
    images = np.clip(np.asarray(images, np.float32), 0.0, None)
    if thresholds is None:
        return images
    n, h, w, c = images.shape
    flat = images.reshape(n, h * w, c)
    totals = flat.sum(axis=1)
    kept = np.where(flat >= np.asarray(thresholds, np.float32), flat, 0.0)
    if keep_energy:
        empty = (kept.sum(axis=1) == 0) & (totals > 0)
        for event, channel in zip(*np.nonzero(empty), strict=True):
            kept[event, np.argmax(flat[event, :, channel]), channel] = totals[event, channel]
        sums = kept.sum(axis=1)
        kept *= np.divide(totals, sums, out=np.zeros_like(totals), where=sums > 0)[:, None, :]
    return kept.reshape(n, h, w, c)


def mean_image(batches) -> np.ndarray:
    """Mean ``(H, W, C)`` image (GeV, float64) over an iterable of ``(B, H, W, C)`` batches or one array."""
    if isinstance(batches, np.ndarray):
        batches = [batches]
    total, count = None, 0
    for batch in batches:
        batch = np.asarray(batch, np.float64)
        total = batch.sum(axis=0) if total is None else total + batch.sum(axis=0)
        count += len(batch)
    if not count:
        raise ValueError("no images to average")
    return total / count


def mean_image_reconstruction(
    mean: np.ndarray, images: np.ndarray, thresholds: Sequence[float] | None = None
) -> np.ndarray:
    """Each event reconstructed as the mean image scaled to the event's channel energies, then zero-suppressed.

    ``mean`` is ``(H, W, C)`` (from the training split), ``images`` ``(N, H, W, C)`` GeV. Channel energies
    are kept exactly.
    """
    mean = np.asarray(mean, np.float64)
    shape = mean / np.maximum(mean.sum(axis=(0, 1)), 1e-30)
    totals = np.asarray(images, np.float64).sum(axis=(1, 2))  # (N, C)
    return zero_suppress((shape[None] * totals[:, None, None, :]).astype(np.float32), thresholds)


class PCABaseline:
    """``sklearn.decomposition.IncrementalPCA`` of flattened GeV images with ``n_components`` numbers per event.

    Reconstructions are clipped at 0 and zero-suppressed at ``thresholds`` (energy not forced: PCA has to
    carry it in its components like everything else).
    """

    def __init__(self, n_components: int, thresholds: Sequence[float] | None = None, batch_size: int = 512):
        from sklearn.decomposition import IncrementalPCA

        self.n_components = int(n_components)
        self.thresholds = thresholds
        self.batch_size = max(int(batch_size), self.n_components)
        self.pca = IncrementalPCA(n_components=self.n_components)
        self.shape: tuple[int, ...] | None = None

    def fit(self, images: np.ndarray) -> PCABaseline:
        """Fit on ``(N, H, W, C)`` training images (N ≥ n_components)."""
        images = np.asarray(images, np.float32)
        if len(images) < self.n_components:
            raise ValueError(f"PCA needs at least {self.n_components} training images, got {len(images)}")
        self.shape = images.shape[1:]
        flat = images.reshape(len(images), -1)
        for start in range(0, len(flat), self.batch_size):
            chunk = flat[start : start + self.batch_size]
            if len(chunk) >= self.n_components:
                self.pca.partial_fit(chunk)
        return self

    def encode(self, images: np.ndarray) -> np.ndarray:
        return self.pca.transform(np.asarray(images, np.float32).reshape(len(images), -1))

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W, C)`` GeV → reconstruction through ``n_components`` numbers, clipped and suppressed."""
        flat = self.pca.inverse_transform(self.encode(images)).astype(np.float32)
        out = np.clip(flat.reshape(len(images), *self.shape), 0.0, None)
        return zero_suppress(out, self.thresholds, keep_energy=False)


# ---------------------------------------------------------------------------------------- image summaries
def radial_distance(height: int, width: int) -> np.ndarray:
    """ΔR (rad) of every pixel centre from the image centre, ``(H, W)``."""
    eta, phi = pixel_coordinates(height, width)
    return np.hypot(eta, phi)


def image_summaries(images: np.ndarray, return_names: bool = False):
    """Per-image high-level summaries ``(N, F)`` float32 (and their names) for the two-sample and q/g tests.

    Per channel: ``log1p`` of the energy (GeV), ``log1p`` of the occupancies above each of
    :data:`OCCUPANCY_THRESHOLDS` GeV, ``log1p`` of the hottest pixel (GeV), the energy fractions in the ΔR
    rings of :data:`PROFILE_EDGES` (Tracks, and ECAL + HCAL), and the energy-weighted mean ΔR (rad).
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3), got {images.shape}")
    radius = radial_distance(*images.shape[1:3])
    ring = np.digitize(radius, PROFILE_EDGES[1:-1])  # (H, W) ring index 0..len-2
    onehot = np.stack([ring == k for k in range(len(PROFILE_EDGES) - 1)], axis=-1).astype(np.float32)
    columns, names = [], []
    for c, name in enumerate(("tracks", "ecal", "hcal")):
        x = images[..., c]
        columns.append(np.log1p(x.sum(axis=(1, 2))))
        names.append(f"log1p_energy_{name}")
        for t in OCCUPANCY_THRESHOLDS:
            columns.append(np.log1p((x > t).sum(axis=(1, 2))))
            names.append(f"log1p_occupancy_{name}_{t:g}GeV")
        columns.append(np.log1p(x.max(axis=(1, 2))))
        names.append(f"log1p_hottest_{name}")
    for label, x in (("tracks", images[..., 0]), ("calo", images[..., 1] + images[..., 2])):
        total = x.sum(axis=(1, 2))
        safe = np.where(total > 0, total, 1.0)
        rings = np.einsum("nhw,hwk->nk", x, onehot) / safe[:, None]
        for k in range(rings.shape[1]):
            columns.append(rings[:, k])
            names.append(f"ring_{label}_{PROFILE_EDGES[k]:g}_{PROFILE_EDGES[k + 1]:g}")
        columns.append(np.einsum("nhw,hw->n", x, radius) / safe)
        names.append(f"mean_dr_{label}")
    features = np.stack(columns, axis=1).astype(np.float32)
    return (features, names) if return_names else features


# ---------------------------------------------------------------------------------------- two-sample tests
def _kfold_auc(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> dict[str, float]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    folds = min(folds, int(np.bincount(y.astype(int)).min()))
    if folds < 2:  # too few events of one class to cross-validate
        return {"auc": float("nan"), "auc_fold_std": float("nan"), "n": int(len(y))}
    scores = np.zeros(len(y))
    aucs = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, random_state=seed)
        with threadpool_limits(1):  # small problems: OpenMP threads only add overhead (5x on a busy machine)
            clf.fit(x[train], y[train])
        scores[test] = clf.predict_proba(x[test])[:, 1]
        aucs.append(roc_auc_score(y[test], scores[test]))
    return {"auc": float(roc_auc_score(y, scores)), "auc_fold_std": float(np.std(aucs)), "n": int(len(y))}


def two_sample_auc_hl(original: np.ndarray, reconstructed: np.ndarray, folds: int = 5, seed: int = 0):
    """Out-of-fold ROC AUC of ``HistGradientBoostingClassifier`` separating originals from reconstructions on
    :func:`image_summaries` (k-fold). Returns ``{"auc", "auc_fold_std", "n"}``; 0.5 = indistinguishable."""
    x = np.concatenate([image_summaries(original), image_summaries(reconstructed)])
    y = np.concatenate([np.zeros(len(original)), np.ones(len(reconstructed))])
    return _kfold_auc(x, y, folds, seed)


def two_sample_auc_cnn(
    original: np.ndarray, reconstructed: np.ndarray, epochs: int = 10, seed: int = 0, batch_size: int = 32
) -> dict[str, float]:
    """Out-of-fold ROC AUC of a small CNN on ``log1p(GeV)`` images separating originals from reconstructions.

    2-fold: trained on half of each set, scored on the other half, and the other way round.
    Returns ``{"auc", "auc_fold_std", "n"}``.
    """
    from sklearn.metrics import roc_auc_score

    x = np.log1p(np.clip(np.concatenate([original, reconstructed]), 0.0, None)).astype(np.float32)
    y = np.concatenate([np.zeros(len(original)), np.ones(len(reconstructed))]).astype(np.float32)
    fold = np.random.default_rng(seed).permutation(len(y)) % 2
    scores = np.zeros(len(y))
    aucs = []
    for k in (0, 1):
        model = small_cnn(x.shape[1:], seed + k)
        model.fit(x[fold != k], y[fold != k], epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
        scores[fold == k] = np.asarray(model.predict(x[fold == k], batch_size=256, verbose=0)).ravel()
        aucs.append(roc_auc_score(y[fold == k], scores[fold == k]))
    return {"auc": float(roc_auc_score(y, scores)), "auc_fold_std": float(np.std(aucs)), "n": int(len(y))}


# --------------------------------------------------------------------------------- structure, occupancy, q/g
def outer_ring_share(images: np.ndarray, radius: float = OUTER_RADIUS) -> float:
    """Share of the summed calorimeter (ECAL + HCAL) energy of all events at ΔR > ``radius`` rad from the centre."""
    calo = np.asarray(images, np.float64)[..., 1] + np.asarray(images, np.float64)[..., 2]
    outer = radial_distance(*calo.shape[1:3]) > radius
    total = calo.sum()
    return float(calo[:, outer].sum() / total) if total > 0 else float("nan")


def occupancy_ratio(original: np.ndarray, reconstructed: np.ndarray, threshold: float = 0.1) -> dict[str, float]:
    """Pixels above ``threshold`` GeV, summed over events, reconstruction ÷ original, per channel."""
    out = {}
    for c, name in enumerate(("tracks", "ecal", "hcal")):
        o = float((np.asarray(original)[..., c] > threshold).sum())
        r = float((np.asarray(reconstructed)[..., c] > threshold).sum())
        out[name] = r / o if o > 0 else float("nan")
    return out


def qg_information(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    reconstructions: dict[str, np.ndarray],
    seed: int = 0,
) -> dict[str, Any]:
    """Quark/gluon AUC of a classifier trained on *original* training images, on test originals and on each
    reconstruction of them (same events, same order).

    The classifier is ``HistGradientBoostingClassifier`` on :func:`image_summaries`. Returns
    ``{"auc_original": float, "<name>": {"auc": float, "ratio": auc / auc_original}, ...}``.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    if len(np.unique(train_labels)) < 2 or len(np.unique(test_labels)) < 2:
        raise ValueError("the q/g check needs quarks and gluons among both the training and the test events")
    clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed)
    with threadpool_limits(1):
        clf.fit(image_summaries(train_images), np.asarray(train_labels).astype(int))
    test_labels = np.asarray(test_labels).astype(int)
    auc_o = float(roc_auc_score(test_labels, clf.predict_proba(image_summaries(test_images))[:, 1]))
    out: dict[str, Any] = {"auc_original": auc_o}
    for name, images in reconstructions.items():
        auc = float(roc_auc_score(test_labels, clf.predict_proba(image_summaries(images))[:, 1]))
        out[name] = {"auc": auc, "ratio": auc / auc_o}
    return out


__all__ = [
    "OCCUPANCY_THRESHOLDS",
    "OUTER_RADIUS",
    "PIXEL_SIZE",
    "PCABaseline",
    "emd_per_event",
    "event_emd",
    "image_summaries",
    "mean_image",
    "mean_image_reconstruction",
    "occupancy_ratio",
    "outer_ring_share",
    "qg_information",
    "two_sample_auc_cnn",
    "two_sample_auc_hl",
    "zero_suppress",
]
