"""Where a hit sits inside its block: the exact (Bayes) denoiser of the hit slots' positions.

A hit slot's position (:mod:`hep_keras.models.hit_slots`) takes one of ``p²`` values: ``row`` and ``col`` each
on ``p`` evenly spaced levels of ``[-1, 1]``. Diffusion blurs them into a continuum, and a denoiser has to put
them back on a pixel. Ours did not learn to: on independent events its loss on the position channels was the
loss of returning ``x_t`` unchanged at low noise and worse than the denoiser below at every noise level, and the
central 5×5 block of generated jets came out flat where real jets peak on the axis pixel (docs/diffusion.md,
"The network does not learn where a hit sits in its block").

For a slot whose position ``x0 = (r_k, c_k)`` has prior probability ``π_k`` on pixel ``k`` of its block and
``x_t = α x0 + σ ε``, the posterior mean

    E[x0 | x_t] = Σ_k w_k (r_k, c_k),   w_k ∝ π_k exp(-|x_t - α (r_k, c_k)|² / (2 σ²))

is the exact (least-squares) denoiser of that slot's position that knows nothing else of the event.
:class:`~hep_keras.models.diffusion.JetDiffusion` with ``position_counts`` takes x̂0 of every position channel
from it (energies and towers stay the network's); the probability-flow ODE then draws each slot's pixel from
``π`` given the trajectory: the positions follow the training events' statistics per slot, channel and block
(restored by construction, as the overflow hits are; not evidence of what the network learned).

The prior: per slot (hottest, second, …), channel and block, the training events' counts of the occupied slot's
pixel (:func:`fit_position_counts`), shrunk towards the counts of the block's calibration ring with
:data:`PSEUDO_HITS` pseudo-hits (:func:`position_log_prior`): a block hit a few times gets its ring's shape.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from hep_keras.models.hit_slots import _half_width, to_slots

#: weight (in hits) of the ring's distribution in each block's prior
PSEUDO_HITS = 50.0
#: counts added to every pixel of a ring's distribution (no pixel of a block has probability 0)
RING_SMOOTHING = 0.5


def position_levels(patch: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` each ``(p²,)`` float32: the normalised position of every pixel of a block, pixel
    ``k = row · p + col`` as in :func:`~hep_keras.models.hit_slots.to_slots`."""
    levels = (np.arange(patch) - (patch - 1) / 2.0) / _half_width(patch)
    rows, cols = np.meshgrid(levels, levels, indexing="ij")
    return rows.ravel().astype("float32"), cols.ravel().astype("float32")


def fit_position_counts(images: np.ndarray, patch: int, slots: int, batch_size: int = 250) -> np.ndarray:
    """How often each slot of each block of training images ``(N, S, S, C)`` GeV held a hit on each pixel.

    Returns int64 ``(slots, C, G, G, p²)`` (``G = ceil(S / p)``; slot 0 is the block's hottest hit)."""
    n, size, _, channels = np.shape(images)
    grid = -(-size // patch)
    counts = np.zeros((slots, channels, grid, grid, patch * patch), np.int64)
    half = _half_width(patch)
    to_index = lambda v: np.rint(np.asarray(v) * half + (patch - 1) / 2.0).astype(np.int64)  # noqa: E731
    for start in range(0, n, batch_size):
        energy, row, col = to_slots(np.asarray(images[start : start + batch_size]), patch, slots)
        energy = np.asarray(energy)
        pixel = to_index(row) * patch + to_index(col)  # (B, G, G, K, C)
        event, i, j, slot, channel = np.nonzero(energy > 0)
        np.add.at(counts, (slot, channel, i, j, pixel[event, i, j, slot, channel]), 1)
    return counts


def position_log_prior(counts, ring_of_block: np.ndarray, rings: int | None = None) -> np.ndarray:
    """Log prior ``(K, C, G, G, p²)`` float32 of :func:`fit_position_counts`'s ``counts``: each block's counts
    plus :data:`PSEUDO_HITS` times its ring's distribution (``ring_of_block`` ``(G, G)`` int; the ring's counts
    plus :data:`RING_SMOOTHING` per pixel, normalised), normalised."""
    counts = np.asarray(counts, np.float64)
    rings = int(ring_of_block.max()) + 1 if rings is None else rings
    ring_counts = np.full((*counts.shape[:2], rings, counts.shape[-1]), RING_SMOOTHING)
    for ring in range(rings):
        ring_counts[:, :, ring] += counts[:, :, ring_of_block == ring].sum(axis=2)
    ring_shape = ring_counts / ring_counts.sum(axis=-1, keepdims=True)
    prior = counts + PSEUDO_HITS * ring_shape[:, :, ring_of_block]  # (K, C, G, G, p²)
    return np.log(prior / prior.sum(axis=-1, keepdims=True)).astype("float32")


def posterior_mean_positions(row, col, log_prior, signal_rate, noise_rate, patch: int):
    """``E[x0 | x_t]`` of slot positions: ``row``, ``col`` ``(N, H, W, S)`` noisy positions at one time with
    ``(noise_rate σ, signal_rate α)`` (scalars), ``log_prior`` ``(H, W, S, p²)`` (numpy). Returns the posterior
    means ``(row, col)``, each ``(N, H, W, S)`` float32 (see the module docstring)."""
    level_rows, level_cols = (ops.convert_to_tensor(v) for v in position_levels(patch))
    alpha, sigma = ops.cast(signal_rate, "float32"), ops.cast(noise_rate, "float32")
    row, col = ops.cast(row, "float32")[..., None], ops.cast(col, "float32")[..., None]
    distance = ops.square(row - alpha * level_rows) + ops.square(col - alpha * level_cols)  # (N, H, W, S, p²)
    weights = ops.softmax(ops.convert_to_tensor(log_prior) - distance / (2.0 * ops.maximum(sigma * sigma, 1e-12)))
    return ops.sum(weights * level_rows, axis=-1), ops.sum(weights * level_cols, axis=-1)
