"""Generation quality table: every number beside its real-vs-real floor, with bootstrap errors.

Inputs are numpy arrays only: two disjoint sets of held-out *real* events, A (the reference) and B (a second
real sample, the floor), and generated events with the same quark/gluon labels as B. Every measure is
computed twice, generated vs A and real B vs A, so a number is read against what a second real sample of the
same size gives:

* ``hl_auc``: a real-vs-other classifier (sklearn ``HistGradientBoostingClassifier``, k-fold out-of-fold
  scores) on high-level features (:func:`quality_features`): per-channel energy, occupancy at
  :data:`OCCUPANCY_THRESHOLDS` GeV, radial profile, image jet mass and pT, hottest pixel per channel.
  0.5 = indistinguishable (the floor is 0.5 up to statistics).
* ``cnn_auc``: the same with a small Keras CNN on the full images (log1p GeV), 2-fold.
* ``w1_<observable>``: Wasserstein-1 (``scipy.stats.wasserstein_distance``) to A, in units of the floor:
  the mean W1 between two real samples of the sizes of A and B over ``floor_splits`` random re-splits of the
  pooled real events A ∪ B (:func:`w1_floor`; its error, in the floor column, is the spread of one split's
  value). One split alone is a noisy denominator: on 2000 + 2000 events its W1 moves by 30–36 % of the mean.
* ``qg_auc``: a quark/gluon classifier trained on A is applied to B (real) and to the generated events; the
  generated AUC should be within 0.05 of the real one. Its ``ratio`` is the difference generated − real and
  ``ratio_error`` that difference's error (both errors in quadrature: the samples are independent). More
  generated events for this row alone (``qg_generated``) shrink the generated side of it.

Errors are the standard deviation over ``n_boot`` bootstrap resamples of the scored events (AUC) or of both
samples (W1 of the generated events). Every stage can report progress through a ``progress(stage, done,
total)`` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from hep_keras.evaluation.metrics import w1_floor
from hep_keras.evaluation.two_sample import small_cnn
from hep_keras.physics import CHANNEL_KEYS, image_observables, radial_profile

#: per-pixel thresholds [GeV] of the occupancy features
OCCUPANCY_THRESHOLDS = (0.0, 1.0, 5.0)
#: observables whose W1 is reported (image_observables keys)
W1_OBSERVABLES = ("mass", "pt", *(f"energy_{c}" for c in CHANNEL_KEYS), *(f"occupancy_{c}" for c in CHANNEL_KEYS))
RADIAL_BINS, RADIAL_MAX = 8, 0.8


def quality_features(images: np.ndarray) -> np.ndarray:
    """High-level features ``(N, F)`` of ``(N, H, W, 3)`` GeV images (see the module docstring)."""
    obs = image_observables(images)
    columns = [np.log1p(np.maximum(obs[f"energy_{c}"], 0.0)) for c in CHANNEL_KEYS]
    for threshold in OCCUPANCY_THRESHOLDS:
        counts = (images > threshold).sum(axis=(1, 2))
        columns += [np.log1p(counts[:, c]) for c in range(images.shape[-1])]
    _, profile = radial_profile(images, RADIAL_BINS, RADIAL_MAX)
    columns += list(profile.T)
    columns += [np.log1p(obs["mass"]), np.log1p(obs["pt"])]
    columns += list(np.log1p(images.max(axis=(1, 2))).T)
    return np.stack(columns, axis=1).astype(np.float32)


def quality_feature_names() -> list[str]:
    """Names of the columns of :func:`quality_features` (log = log1p of GeV or of a count)."""
    names = [f"log energy {c}" for c in CHANNEL_KEYS]
    for threshold in OCCUPANCY_THRESHOLDS:
        names += [f"log hits > {threshold:g} GeV {c}" for c in CHANNEL_KEYS]
    width = RADIAL_MAX / RADIAL_BINS
    names += [f"radial profile {i * width:.1f}-{(i + 1) * width:.1f} rad" for i in range(RADIAL_BINS)]
    return [*names, "log mass", "log pT", *(f"log hottest pixel {c}" for c in CHANNEL_KEYS)]


def feature_separation(real_a: np.ndarray, real_b: np.ndarray, generated: np.ndarray) -> list[dict[str, Any]]:
    """Which high-level features tell generated events from real ones: one row per :func:`quality_features`
    column, ``{"feature", "auc", "floor"}``, most separating first.

    ``auc``: that feature alone as the score of generated vs real A (> 0.5: larger in generated events);
    ``floor``: the same for real B vs A. Sorted by ``|auc - 0.5|``.
    """
    feats = {name: quality_features(x) for name, x in (("a", real_a), ("b", real_b), ("g", generated))}
    rows = []
    for j, name in enumerate(quality_feature_names()):
        auc = {}
        for other in ("g", "b"):
            labels = np.r_[np.zeros(len(feats["a"])), np.ones(len(feats[other]))]
            auc[other] = _auc(labels, np.r_[feats["a"][:, j], feats[other][:, j]])
        rows.append({"feature": name, "auc": auc["g"], "floor": auc["b"]})
    return sorted(rows, key=lambda r: -abs(r["auc"] - 0.5))


#: groups of :func:`quality_features` columns, by the start of their names (:func:`quality_feature_names`)
FEATURE_GROUPS = {
    "channel energies": ("log energy",),
    "hit counts": ("log hits",),
    "radial profile": ("radial profile",),
    "jet mass and pT": ("log mass", "log pT"),
    "hottest pixels": ("log hottest pixel",),
}


def feature_group_separation(
    real_a: np.ndarray, real_b: np.ndarray, generated: np.ndarray, seed: int = 0
) -> list[dict[str, Any]]:
    """Which groups of high-level features (:data:`FEATURE_GROUPS`) the ``hl_auc`` classifier uses: one row per
    group, ``{"group", "alone", "floor", "without"}``, most separating alone first.

    ``alone``: the classifier's AUC on the group's features only, generated vs real A; ``floor``: the same for
    real B vs A; ``without``: on every other feature, generated vs A. A group can separate jointly where none
    of its features does alone (:func:`feature_separation`), e.g. hit counts that are right per channel but
    uncorrelated between channels (:func:`hit_count_correlations`).
    """
    feats = {name: quality_features(x) for name, x in (("a", real_a), ("b", real_b), ("g", generated))}
    names = quality_feature_names()

    def auc(columns, other):
        labels, scores = oof_scores(feats["a"][:, columns], feats[other][:, columns], seed=seed)
        return _auc(labels, scores)

    rows = []
    for group, prefixes in FEATURE_GROUPS.items():
        inside = [j for j, name in enumerate(names) if name.startswith(prefixes)]
        outside = [j for j in range(len(names)) if j not in inside]
        row = {"group": group, "alone": auc(inside, "g"), "floor": auc(inside, "b"), "without": auc(outside, "g")}
        rows.append(row)
    return sorted(rows, key=lambda r: -r["alone"])


def hit_count_correlations(images: np.ndarray) -> np.ndarray:
    """Spearman rank correlation over events of the number of hits (pixels > 0) of each pair of channels of
    ``(N, S, S, 3)`` images: ``(3,)`` for (Tracks, ECAL), (Tracks, HCAL), (ECAL, HCAL). In real jets the three
    grow together with the jet's particle multiplicity."""
    from scipy.stats import spearmanr

    counts = (np.asarray(images) > 0).sum(axis=(1, 2))  # (N, 3)
    matrix = spearmanr(counts).statistic
    return np.array([matrix[0, 1], matrix[0, 2], matrix[1, 2]])


def block_centre_share(images: np.ndarray, patch: int = 5) -> np.ndarray:
    """Share of each channel's hits (pixels > 0) that sit on the centre pixel of their ``patch × patch`` block
    (blocks aligned with pixel (0, 0)): ``(C,)``, NaN for a channel without hits. Images ``(N, S, S, C)``.

    A generator of hit slots (one position per hit inside its block) that puts uncertain hits at their
    block's centre shows it here and as a regular dot grid in the mean image; real Tracks/ECAL hits sit there
    about ``1 / patch²`` of the time (4 % for 5 × 5; a tower-uniform HCAL is exactly that by construction).
    """
    centre = np.arange(images.shape[1]) % patch == patch // 2
    on_centre = centre[:, None] & centre[None, :]  # (S, S)
    hits = np.asarray(images) > 0
    total = hits.sum(axis=(0, 1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (hits & on_centre[None, :, :, None]).sum(axis=(0, 1, 2)) / total


#: the sides of :func:`edge_hits`, in its order (left = smallest Δφ column, top = first row)
EDGE_SIDES = ("left", "right", "top", "bottom")


def edge_hits(images: np.ndarray, width: int = 5) -> np.ndarray:
    """Mean hits (pixels > 0) per event in the outer ``width`` pixel columns or rows of each side of the image
    (:data:`EDGE_SIDES`): ``(4, C)`` for images ``(N, S, S, C)`` GeV.

    A network that treats the image's border unlike its inside (e.g. where its grid has less padding on one
    side) puts too many or too few hits there; the quantile calibration per ring cannot move them within the
    ring, so the excess shows here (generated / real per side)."""
    hits = np.asarray(images) > 0
    sides = (hits[:, :, :width], hits[:, :, -width:], hits[:, :width], hits[:, -width:])
    return np.stack([side.sum(axis=(1, 2)).mean(axis=0) for side in sides])


def describe_edge_hits(
    generated: np.ndarray, real: np.ndarray, width: int = 5, channels=("Tracks", "ECAL", "HCAL")
) -> str:
    """One line: the :func:`edge_hits` ``(4, C)`` of generated over those of real images, per channel and side
    (1 = as many hits on that border as real events; NaN where the real events have none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.asarray(generated, float) / np.asarray(real, float)
    per_channel = ", ".join(f"{c} " + " / ".join(f"{r:.2f}" for r in ratio[:, i]) for i, c in enumerate(channels))
    return f"Hits in the outer {width} pixels of each side ({' / '.join(EDGE_SIDES)}), generated / real: {per_channel}."


def describe_block_centre_share(
    generated: np.ndarray, real: np.ndarray, patch: int, channels=("Tracks", "ECAL")
) -> str:
    """One line: the :func:`block_centre_share` ``(C,)`` of generated and of real images, for the first
    ``len(channels)`` channels (the sparse ones), beside the uniform ``1 / patch²``."""
    share = lambda v: " / ".join(f"{100 * x:.1f} %" for x in v[: len(channels)])  # noqa: E731
    return (
        f"Hits on their {patch}x{patch} block's centre pixel ({' / '.join(channels)}): generated {share(generated)}, "
        f"real {share(real)} (uniform: {100 / patch**2:.0f} %)."
    )


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def bootstrap_auc(labels: np.ndarray, scores: np.ndarray, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """``(AUC, bootstrap standard deviation)`` of scores for binary labels."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() != labels[idx].max():
            values.append(_auc(labels[idx], scores[idx]))
    return _auc(labels, scores), float(np.std(values))


def _boosted(n_train: int, seed: int):
    """Gradient-boosted trees; leaves of at least 2 and at most 20 events (1/20 of the training events)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    leaf = max(2, min(20, n_train // 20))
    return HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, min_samples_leaf=leaf, random_state=seed)


def oof_scores(x0: np.ndarray, x1: np.ndarray, folds: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold scores of a gradient-boosted classifier separating ``x0`` (label 0) from ``x1`` (label 1).

    One OpenMP thread: on these sizes threads only add overhead (2000 + 2000 events of 25 features: 0.75 s vs
    1.4 s on 2 idle cores; in the test suite, beside another worker, a test of 30 such fits took 215 s)."""
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    x = np.concatenate([x0, x1])
    y = np.concatenate([np.zeros(len(x0)), np.ones(len(x1))]).astype(int)
    folds = max(2, min(folds, len(x0), len(x1)))  # small samples: fewer folds, at least one event per class
    scores = np.zeros(len(y))
    with threadpool_limits(1):
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
            clf = _boosted(len(train), seed)
            clf.fit(x[train], y[train])
            scores[test] = clf.predict_proba(x[test])[:, 1]
    return y, scores


def cnn_oof_scores(images0: np.ndarray, images1: np.ndarray, epochs: int = 8, seed: int = 0):
    """2-fold out-of-fold scores of a small CNN on log1p(GeV) images separating ``images0`` from ``images1``."""
    x = np.log1p(np.maximum(np.concatenate([images0, images1]), 0.0)).astype(np.float32)
    y = np.concatenate([np.zeros(len(images0)), np.ones(len(images1))]).astype(np.float32)
    perm = np.random.default_rng(seed).permutation(len(y))
    halves = (perm[: len(y) // 2], perm[len(y) // 2 :])
    scores = np.zeros(len(y))
    for k, test in enumerate(halves):
        train = halves[1 - k]
        model = small_cnn(x.shape[1:], seed + k, towers=True)
        model.fit(x[train], y[train], epochs=epochs, batch_size=32, verbose=0)
        scores[test] = np.asarray(model.predict(x[test], batch_size=64, verbose=0)).ravel()
    return y.astype(int), scores


def bootstrap_w1(a: np.ndarray, b: np.ndarray, n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """``(W1(a, b), bootstrap standard deviation)`` resampling both samples."""
    rng = np.random.default_rng(seed)
    boots = [
        wasserstein_distance(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
        for _ in range(n_boot)
    ]
    return float(wasserstein_distance(a, b)), float(np.std(boots))


def quality_table(
    real_a: np.ndarray,
    real_b: np.ndarray,
    generated: np.ndarray,
    labels_a: np.ndarray,
    labels_b: np.ndarray,
    cnn_epochs: int = 8,
    n_boot: int = 200,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    qg_generated: tuple[np.ndarray, np.ndarray] | None = None,
    floor_splits: int = 50,
) -> list[dict[str, Any]]:
    """Rows ``{"measure", "value", "error", "floor", "floor_error", "ratio", "unit"}`` (see the module docstring).

    ``generated`` must carry the labels ``labels_b`` (0 quark, 1 gluon) and have as many events as ``real_b``.
    ``ratio`` is value / floor for W1 rows (1 = as close as a second real sample), and generated − real for
    the quark/gluon row (with ``ratio_error``). ``qg_generated``: ``(images, labels)`` of generated events
    scored by the quark/gluon row instead of ``generated`` (any number, e.g. several per event of B).
    ``floor_splits``: the re-splits of the real events each W1 floor is averaged over (:func:`w1_floor`).
    """
    if len(generated) != len(real_b):
        raise ValueError(f"need as many generated events as real B events, got {len(generated)} and {len(real_b)}")
    report = progress or (lambda stage, done, total: None)
    total = 3 + len(W1_OBSERVABLES)
    rows: list[dict[str, Any]] = []
    feats = {name: quality_features(x) for name, x in (("a", real_a), ("b", real_b), ("g", generated))}

    gen_auc = bootstrap_auc(*oof_scores(feats["a"], feats["g"], seed=seed), n_boot, seed)
    floor_auc = bootstrap_auc(*oof_scores(feats["a"], feats["b"], seed=seed), n_boot, seed)
    rows.append(_row("hl_auc", gen_auc, floor_auc, "AUC", ratio=None))
    report("classifiers", 1, total)

    gen_cnn = bootstrap_auc(*cnn_oof_scores(real_a, generated, cnn_epochs, seed), n_boot, seed)
    floor_cnn = bootstrap_auc(*cnn_oof_scores(real_a, real_b, cnn_epochs, seed), n_boot, seed)
    rows.append(_row("cnn_auc", gen_cnn, floor_cnn, "AUC", ratio=None))
    report("classifiers", 2, total)

    obs = {name: image_observables(x) for name, x in (("a", real_a), ("b", real_b), ("g", generated))}
    for i, key in enumerate(W1_OBSERVABLES):
        value = bootstrap_w1(obs["g"][key], obs["a"][key], n_boot, seed)
        floor = w1_floor(obs["a"][key], obs["b"][key], floor_splits, seed)
        unit = "pixels" if key.startswith("occupancy") else "GeV"
        rows.append(_row(f"w1_{key}", value, floor, unit, ratio=value[0] / floor[0] if floor[0] > 0 else np.nan))
        report("classifiers", 3 + i, total)

    if qg_generated is not None:
        feats["g"], labels_g = quality_features(qg_generated[0]), qg_generated[1]
    else:
        labels_g = labels_b
    rows.append(_quark_gluon_row(feats, labels_a, labels_b, labels_g, n_boot, seed))
    report("classifiers", total, total)
    return rows


def _row(measure: str, value: tuple[float, float], floor: tuple[float, float], unit: str, ratio) -> dict[str, Any]:
    return {
        "measure": measure,
        "value": value[0],
        "error": value[1],
        "floor": floor[0],
        "floor_error": floor[1],
        "ratio": None if ratio is None else float(ratio),
        "unit": unit,
    }


def _quark_gluon_row(feats, labels_a, labels_b, labels_g, n_boot: int, seed: int) -> dict[str, Any]:
    labels_a, labels_b, labels_g = (np.asarray(y).astype(int) for y in (labels_a, labels_b, labels_g))
    if min(np.bincount(y, minlength=2).min() for y in (labels_a, labels_b, labels_g)) < 2:
        nan = (float("nan"), float("nan"))
        return {**_row("qg_auc", nan, nan, "AUC", ratio=float("nan")), "ratio_error": float("nan")}
    clf = _boosted(len(labels_a), seed)
    clf.fit(feats["a"], labels_a)
    real = bootstrap_auc(labels_b, clf.predict_proba(feats["b"])[:, 1], n_boot, seed)
    gen = bootstrap_auc(labels_g, clf.predict_proba(feats["g"])[:, 1], n_boot, seed)
    # here the "floor" column holds the real events' AUC and ratio the difference generated - real
    return {**_row("qg_auc", gen, real, "AUC", ratio=gen[0] - real[0]), "ratio_error": float(np.hypot(gen[1], real[1]))}


#: what each row means and its target at the default budget, for the printed table
TARGETS = {
    "hl_auc": "<= 0.75",
    "cnn_auc": "reported",
    "qg_auc": "gen - real within ±0.05",
    **{f"w1_{k}": "<= 3x floor" for k in W1_OBSERVABLES},
}


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`quality_table` rows."""
    lines = [
        "| measure | generated | real-vs-real floor | ratio (W1: gen/floor; q/g: gen-real) | target |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        if "ratio_error" in r:
            ratio = f"{r['ratio']:+.3f} ± {r['ratio_error']:.3f}"
        floor_name = "real q/g AUC " if r["measure"] == "qg_auc" else ""
        lines.append(
            f"| {r['measure']} [{r['unit']}] | {r['value']:.3f} ± {r['error']:.3f} | "
            f"{floor_name}{r['floor']:.3f} ± {r['floor_error']:.3f} | {ratio} | {TARGETS.get(r['measure'], '')} |"
        )
    return "\n".join(lines)
