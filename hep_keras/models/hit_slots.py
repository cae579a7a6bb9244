"""Hit slots: the sparse channels of a jet image as up to K hits per ``p × p`` block (pure ``keras.ops``).

Tracks and ECAL are sparse: ~14 and ~20 hits in 15,625 pixels, and 90 % of the 5 × 5 blocks that hold a hit
hold exactly one. Folding every pixel of a block into its own channel (:mod:`hep_keras.models.patches`) gives a
denoiser 25 channels per sparse channel and cell that are empty 99.9 % of the time; a diffusion model then has
to put every one of them back at "empty" at every step, and ours did not (docs/diffusion.md). Hit slots
describe a block by its ``K`` hottest hits instead, each as three dense numbers:

* ``energy`` (GeV): the hit's energy; the energy of the block's hits beyond the ``K``-th is added to the first
  slot, so the block's (and the image's) energy is conserved;
* ``row``, ``col``: the hit's pixel inside the block mapped to ``[-1, 1]`` (``(i - (p - 1) / 2) / ((p - 1) / 2)``,
  so neighbouring pixels are ``2 / (p - 1)`` apart); ``0`` for an empty slot.

Slots are ordered by energy (hottest first). The round trip :func:`from_slots` ∘ :func:`to_slots` is exact on
every block with at most ``K`` hits; a block with more keeps its ``K`` hottest pixels and their total energy
(on the shipped sample ``K = 2`` keeps 96.6 % of the Tracks and 96.9 % of the ECAL hits and all of the energy;
``K = 3`` 98.9 % / 98.8 %). Decoding rounds positions to the nearest pixel, and two slots on one pixel add.

Shapes: images ``(N, S, S, C)`` GeV ↔ ``energy, row, col`` each ``(N, G, G, K, C)`` with ``G = ceil(S / p)``.

**What the slots drop, restored statistically.** A block's hits beyond the ``K``-th are lost (their energy
stays in the first slot): decoded events have too few hits and too hot a hottest pixel (on the shipped sample's
geometry the real events through two slots and back are told from real ones at a high-level AUC of 0.59,
docs/diffusion.md). :func:`fit_overflow` measures on training events, per channel and ring of blocks, how often
a block whose ``K`` slots are all occupied had more hits and what fraction of the first slot's energy each of
them held; :func:`from_slots` given those tables (``overflow``) splits, with that probability, that many hits
(one recorded block's fractions, drawn at random) off the block's hottest pixel onto random free pixels of the
block. Energy is conserved; the statistics restored are those of the training events (not evidence of a
generator's quality).
"""

from __future__ import annotations

import numpy as np
from keras import ops

from hep_keras.models.patches import depth_to_space, to_patches

#: most hits beyond the K-th of a block that the overflow tables restore (further ones stay in the hottest hit)
OVERFLOW_HITS = 4
#: recorded blocks with overflow kept per channel and ring (evenly spaced in their total overflow fraction)
OVERFLOW_RECORDS = 64


def _half_width(patch: int) -> float:
    return max((patch - 1) / 2.0, 0.5)


def to_slots(images, patch: int, slots: int):
    """GeV images ``(N, S, S, C)`` → ``(energy, row, col)`` each ``(N, G, G, K, C)`` (see the module docstring)."""
    channels = images.shape[3]
    images = ops.maximum(ops.cast(images, "float32"), 0.0)
    blocks = to_patches(images, patch, towers=False)  # (N, G, G, p² · C) zero-padded, pixel-major, channel fastest
    n, g = ops.shape(blocks)[0], blocks.shape[1]
    blocks = ops.reshape(blocks, (n, g, g, patch * patch, channels))
    blocks = ops.moveaxis(blocks, -2, -1)  # (N, G, G, C, p²)
    energy, index = ops.top_k(blocks, slots, sorted=True)  # (N, G, G, C, K)
    overflow = ops.sum(blocks, axis=-1, keepdims=True) - ops.sum(energy, axis=-1, keepdims=True)
    first = ops.reshape(ops.one_hot(0, slots), (1, 1, 1, 1, slots))
    energy = energy + overflow * first
    occupied = energy > 0
    half = _half_width(patch)
    row = ops.cast(index // patch, "float32") / half - (patch - 1) / 2.0 / half
    col = ops.cast(index % patch, "float32") / half - (patch - 1) / 2.0 / half
    row, col = ops.where(occupied, row, 0.0), ops.where(occupied, col, 0.0)
    return tuple(ops.moveaxis(v, -1, -2) for v in (energy, row, col))  # (N, G, G, K, C)


def from_slots(energy, row, col, patch: int, image_size: int, overflow=None):
    """``(energy, row, col)`` each ``(N, G, G, K, C)`` → GeV images ``(N, image_size, image_size, C)``.

    Positions are rounded to the nearest pixel of the block (clipped to it); energies ≤ 0 are empty slots.
    ``overflow``: ``(rates, fractions, ring_of_block, uniform)``, the arguments of :func:`split_overflow` after
    the blocks: the hits the slots drop are split off each block's hottest pixel.
    """
    half = _half_width(patch)
    to_pixel = lambda v: ops.clip(ops.round(v * half + (patch - 1) / 2.0), 0, patch - 1)  # noqa: E731
    index = ops.cast(to_pixel(row) * patch + to_pixel(col), "int32")  # (N, G, G, K, C)
    energy = ops.maximum(ops.cast(energy, "float32"), 0.0)
    pixels = ops.sum(ops.one_hot(index, patch * patch) * energy[..., None], axis=-3)  # (N, G, G, C, p²)
    if overflow is not None:
        pixels = split_overflow(pixels, energy.shape[-2], *overflow)
    channels = energy.shape[-1]
    pixels = ops.moveaxis(pixels, -1, -2)  # (N, G, G, p², C)
    n, g = ops.shape(pixels)[0], pixels.shape[1]
    pixels = ops.reshape(pixels, (n, g, g, patch * patch * channels))
    return depth_to_space(pixels, patch, channels)[:, :image_size, :image_size, :]


def split_overflow(pixels, slots: int, rates, fractions, ring_of_block, uniform):
    """Blocks ``(N, G, G, C, p²)`` GeV (at most ``slots`` hits each) → the same with the dropped hits restored.

    ``rates`` (C, rings) and ``fractions`` (C, rings, R, H) are :func:`fit_overflow`'s tables (numpy),
    ``ring_of_block`` (G, G) int each block's ring: in a block with ``slots`` hits, with the rate of its channel
    and ring, one of that table's ``R`` records (the fractions of the hottest pixel's energy its up to H dropped
    hits held) is drawn and those energies move from the hottest pixel to random empty pixels of the block.
    ``uniform`` (N, G, G, C, p² + 2): uniform (0, 1) noise (the draw, the record, the pixels)."""
    channels, size = pixels.shape[3], pixels.shape[4]
    rings, records, hits = np.shape(fractions)[1:]
    table = np.arange(channels) * rings + np.asarray(ring_of_block)[..., None]  # (G, G, C): each block's table
    occupied = pixels > 0
    full = ops.sum(ops.cast(occupied, "int32"), axis=-1) >= slots  # (N, G, G, C)
    happens = full & (uniform[..., 0] < np.reshape(rates, -1)[table][None])
    record = ops.minimum(ops.cast(uniform[..., 1] * records, "int32"), records - 1)
    share = ops.take(np.reshape(fractions, (-1, hits)), table[None] * records + record, axis=0)  # (N, G, G, C, H)
    share = ops.where(happens[..., None], share, 0.0)
    _, free = ops.top_k(ops.where(occupied, -1.0, uniform[..., 2:]), hits)  # H random empty pixels
    hottest = ops.max(pixels, axis=-1, keepdims=True)  # (N, G, G, C, 1)
    moved = ops.sum(ops.one_hot(free, size) * (share * hottest)[..., None], axis=-2)
    taken = ops.one_hot(ops.argmax(pixels, axis=-1), size) * ops.sum(share, axis=-1, keepdims=True) * hottest
    return pixels + moved - taken


def fit_overflow(
    images: np.ndarray, patch: int, slots: int, ring_of_block: np.ndarray, rings: int | None = None,
    records: int = OVERFLOW_RECORDS, hits: int = OVERFLOW_HITS,
) -> tuple[list, list]:  # fmt: skip
    """What ``slots`` hit slots drop from training images ``(N, S, S, C)`` GeV, per channel and ring (numpy).

    ``ring_of_block`` ``(G, G)`` int: each block's ring (``0 … rings - 1``; ``rings`` defaults to its largest
    + 1). Returns ``(rates (C, rings), fractions (C, rings, records, H))`` as lists, ``H = min(hits, p² -
    slots)``: among blocks whose ``slots``
    hottest pixels are all hits, the share that held more hits, and for ``records`` of those (evenly spaced in
    their summed fraction) the energy of each further hit (hottest first, at most H) as a fraction of what the
    first slot holds (its hit plus every dropped one). A ring without such blocks (or without blocks) gets
    rate 0."""
    n, size, _, channels = images.shape
    g = -(-size // patch)
    padded = np.zeros((n, g * patch, g * patch, channels), np.float64)
    padded[:, :size, :size] = np.maximum(images, 0.0)
    blocks = padded.reshape(n, g, patch, g, patch, channels).transpose(0, 1, 3, 5, 2, 4).reshape(n, g, g, channels, -1)
    ordered = -np.sort(-blocks, axis=-1)  # (N, G, G, C, p²) hottest first
    hits = min(hits, patch * patch - slots)
    first = ordered[..., 0] + ordered[..., slots:].sum(axis=-1)  # what the first slot holds
    shares = ordered[..., slots : slots + hits] / np.maximum(first, 1e-30)[..., None]
    full, dropped = ordered[..., slots - 1] > 0, ordered[..., slots] > 0
    rings = int(ring_of_block.max()) + 1 if rings is None else rings
    rates, fractions = np.zeros((channels, rings)), np.zeros((channels, rings, records, hits))
    for c in range(channels):
        for ring in range(rings):
            where = full[..., c] & (ring_of_block == ring)[None]
            if not where.any():
                continue
            rates[c, ring] = dropped[..., c][where].mean()
            kept = shares[..., c, :][where & dropped[..., c]]
            if len(kept):
                kept = kept[np.argsort(kept.sum(axis=1), kind="stable")]
                fractions[c, ring] = kept[np.round(np.linspace(0, len(kept) - 1, records)).astype(int)]
    return rates.tolist(), fractions.tolist()
