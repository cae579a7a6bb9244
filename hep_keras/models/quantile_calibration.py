"""Quantile calibration: a monotone map that gives generated values the distribution of the training data.

A diffusion model of sparse jet images pulls the rare hits toward the empty value: about half of the hits it
generates end with a normalised energy in the occupancy gap and every hit-energy bin below the top is short by
about half (docs/diffusion.md). Quantile mapping (histogram matching, the bias correction of climate-model
downscaling) fixes such a marginal bias without touching the ranks: a generated value at the q-th quantile of
the *generated* distribution becomes the q-th quantile of the *training* distribution. Fitted per channel on
a generated sample and as many training events, it is exact on the training marginal by construction (so
that marginal is not evidence of quality); what an event looks like, which cells hold its hits and how the
channels and hits of one event relate to each other stay the model's.

The map is fitted per **ring** of the cell grid (:func:`ring_of_cells`): a model's hit rate can be wrong in a
way that depends on the distance from the jet axis (measured: too many hits just around the core, too few
further out), and one map pooled over the whole grid can only move the overall rate (measured: pooled, the
generated jets are too wide; per ring, jet mass W1 3.7 → 2.1× floor and the high-level classifier AUC
0.86 → 0.70, docs/diffusion.md).

The model's map is a **hurdle** (``fit_quantile_map(..., empty_below=...)``): first the share of generated
values that become hits is set to the training hit rate of the ring, then the generated hits are mapped onto
the training hits. A plain quantile map gets the hit rate only to within its probability step at the
hit/empty boundary, which where a few percent of the values are hits is tens of percent of the hits
(measured on the default run's weights: ECAL hits beyond 0.79 rad 5.9 per event for 7.3 real, in all 19.7
for 21.1; with the hurdle 7.0 and 20.6, the ECAL occupancy W1 1.8–2.6× → 1.4–1.65× floor, docs/diffusion.md).
Within a ring the training hit rate and hit spectrum are then matched by construction (not evidence of
quality). The model fits these maps per bin of event energy as well (``JetDiffusion.fit_calibration``,
``energy_bins``): how a jet's energy spreads from its axis changes with its energy. A ring's hit rate says
nothing about how the hits spread over the events, and the generated events were too alike in their number
of hits (measured on the long run: ECAL hits per event sd 6.4 vs 8.8 real); ``hit_counts`` adds a map of each
event's hit count per channel (a plain quantile map of counts, applied by moving the event's hit decision,
:func:`hurdle_boundary`).

Shapes: :func:`fit_quantile_map` takes values ``(M, E)`` (E channels); :func:`quantile_map` maps any tensor
through one table, or through one table per cell (tables ``(..., K)`` broadcast against the values).
"""

from __future__ import annotations

import numpy as np
from keras import ops

#: probabilities of the stored quantiles: every percent, then log-spaced toward the top (the rare hits), 131
DEFAULT_PROBABILITIES = np.concatenate([np.linspace(0.0, 0.99, 100), 1.0 - np.geomspace(0.01, 1e-5, 31)[1:], [1.0]])

#: ring edges in cells (distance of a cell's centre from the grid centre): 7 rings, the core cell, its 8
#: neighbours, then wider rings; with 5-pixel cells of the CMS images (0.0873 rad) up to 0.04, 0.13, 0.22, 0.35,
#: 0.52, 0.79 rad and beyond
DEFAULT_RINGS = (0.5, 1.5, 2.5, 4.0, 6.0, 9.0)


def ring_of_cells(grid_size: int, padded_size: int, edges=DEFAULT_RINGS) -> np.ndarray:
    """Ring index ``(padded_size, padded_size)`` int32 (0 … ``len(edges)``) of every cell of a ``grid_size``
    grid centred in ``padded_size`` (padding cells fall in the outer rings): ``numpy.digitize`` of the
    distance of the cell's centre from the grid centre, in cells."""
    if list(edges) != sorted(edges):
        raise ValueError(f"calibration ring edges must be increasing, got {list(edges)}")
    offset = (padded_size - grid_size) // 2 + (grid_size - 1) / 2.0
    axis = np.arange(padded_size) - offset
    return np.digitize(np.hypot(axis[:, None], axis[None, :]), edges).astype("int32")


def fit_quantile_map(
    generated: np.ndarray, real: np.ndarray, probabilities=DEFAULT_PROBABILITIES, empty_below: float | None = None
) -> list:
    """Per channel ``[generated quantiles, real quantiles]`` (each a list of floats) of values ``(M, E)`` and
    ``(M', E)``. The generated quantiles are made strictly increasing (ties → steps of 1e-6) so that every
    generated value has one image.

    ``empty_below`` (the hit decision of sparse values: a value is a hit when ``>= empty_below``) makes the map
    a *hurdle*: the highest ``r · M`` generated values, ``r`` the real hit rate, become hits and go through the
    quantile map of generated hits onto real hits (at ``probabilities``); all others go to the real empty
    value. The hit rate is then exact (up to ties) however small it is; a plain map only gets it to within its
    probability step at the hit/empty boundary, which for a ring of the cell grid where a few percent of the
    values are hits is tens of percent of its hits. Tables then hold ``len(probabilities) + 2`` points (two
    below the hit threshold), otherwise ``len(probabilities)``.
    """
    generated, real = np.asarray(generated, np.float64), np.asarray(real, np.float64)
    if generated.ndim != 2 or real.ndim != 2 or generated.shape[1] != real.shape[1] or not len(generated):
        raise ValueError(f"fit_quantile_map needs (M, E) arrays with the same E, got {generated.shape}, {real.shape}")
    probabilities = np.asarray(probabilities, np.float64)
    tables = []
    for channel in range(generated.shape[1]):
        g, r = generated[:, channel], real[:, channel]
        if empty_below is None:
            source, target = np.quantile(g, probabilities), np.quantile(r, probabilities)
        else:
            source, target = _hurdle_points(g, r, probabilities, empty_below)
        for i in range(1, len(source)):
            source[i] = max(source[i], source[i - 1] + 1e-6)
        tables.append([[float(v) for v in source], [float(v) for v in target]])
    return tables


def _hurdle_points(g: np.ndarray, r: np.ndarray, probabilities: np.ndarray, empty_below: float):
    """``(source, target)`` of the hurdle map (see :func:`fit_quantile_map`) of one channel's values: the
    ``k`` highest generated values (``k / len(g)`` the real hit rate) go onto the real hits, the rest (up to the
    highest of them, ``last_empty``) onto the real empty value."""
    hits, empties = r[r >= empty_below], r[r < empty_below]
    empty = float(np.median(empties)) if len(empties) else float(empty_below) - 1.0
    g = np.sort(g)
    k = int(round(len(hits) / len(r) * len(g)))
    low = float(g[0]) - 1.0
    if k == 0:  # no real hit: every generated value is empty
        source = np.linspace(low, max(float(g[-1]), low + 1.0), len(probabilities) + 2)
        return source, np.full(len(source), empty)
    last_empty = float(g[-k - 1]) if k < len(g) else low + 0.5
    source = np.concatenate([[low, last_empty], np.quantile(g[-k:], probabilities)])
    return source, np.concatenate([[empty, empty], np.quantile(hits, probabilities)])


def hurdle_boundary(tables, empty_below: float) -> np.ndarray:
    """The generated value at which hurdle tables (``fit_quantile_map(..., empty_below=...)``, shape ``(..., 2,
    K)``: source, target) turn a value into a hit: the map crosses ``empty_below`` on the segment from the
    highest empty point (index 1) to the lowest hit (index 2). ``(...)`` float64; ``inf`` for a table without
    hits (every value stays empty)."""
    tables = np.asarray(tables, np.float64)
    if tables.shape[-1] < 3:
        raise ValueError(f"hurdle tables have at least 3 points, got {tables.shape[-1]}")
    source, target = tables[..., 0, :], tables[..., 1, :]
    last_empty, lowest_hit, empty, hit = source[..., 1], source[..., 2], target[..., 1], target[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        boundary = last_empty + (empty_below - empty) / (hit - empty) * (lowest_hit - last_empty)
    return np.where(hit >= empty_below, boundary, np.inf)


def check_quantile_map(tables, channels: int) -> None:
    """Raise ValueError unless ``tables`` holds ``channels`` pairs of equally long lists (≥ 2 values), the first
    strictly increasing, the second non-decreasing, all finite."""
    if len(tables) != channels:
        raise ValueError(f"calibration needs one table per energy channel ({channels}), got {len(tables)}")
    for source, target in tables:
        source, target = np.asarray(source), np.asarray(target)
        if source.shape != target.shape or source.ndim != 1 or len(source) < 2:
            raise ValueError("each calibration table needs two equally long lists of at least 2 values")
        if not (np.all(np.isfinite(source)) and np.all(np.isfinite(target))):
            raise ValueError("calibration tables must be finite")
        if np.any(np.diff(source) <= 0) or np.any(np.diff(target) < 0):
            raise ValueError("calibration tables must be increasing (the generated quantiles strictly)")


def quantile_map(x, source, target):
    """Piecewise-linear map of ``x`` (any shape) through the points ``(source[..., i], target[..., i])``
    (source strictly increasing along the last axis), constant beyond the ends: ``numpy.interp`` in
    ``keras.ops`` (traceable, XLA). ``source`` / ``target`` are one table ``(K,)`` or one per value, ``(..., K)``
    broadcasting against ``x``'s trailing axes (e.g. ``(P, P, K)`` for values ``(N, P, P)``)."""
    source = ops.convert_to_tensor(source, "float32")
    target = ops.convert_to_tensor(target, "float32")
    x = ops.cast(x, "float32")
    index = ops.sum(ops.cast(x[..., None] >= source[..., 1:-1], "int32"), axis=-1)  # segment 0 … K-2
    segment = ops.one_hot(index, ops.shape(source)[-1] - 1)  # (..., K-1)
    x0, x1 = ops.sum(source[..., :-1] * segment, -1), ops.sum(source[..., 1:] * segment, -1)
    y0, y1 = ops.sum(target[..., :-1] * segment, -1), ops.sum(target[..., 1:] * segment, -1)
    return y0 + ops.clip((x - x0) / (x1 - x0), 0.0, 1.0) * (y1 - y0)
