"""Patch grid of a jet image: space-to-depth of the sparse channels, HCAL on its tower grid (pure ``keras.ops``).

The full 125×125 image is too large for a CPU-affordable U-Net at pixel resolution, and most of it is empty.
:func:`to_patches` folds every ``p × p`` block of pixels into the channels of one grid cell, so a 125×125×3
image becomes a 25×25 grid (``p = 5``). The channels of a cell are:

* Tracks and ECAL (sparse, crystal-sized): the ``p²`` pixel values of the block each (space-to-depth);
* HCAL, with ``towers=True``: one value per cell, the tower, because the detector's HCAL towers are
  ``p × p`` crystals and the images hold them upsampled (every pixel of a tower has the same value). With
  ``towers=False`` HCAL is folded like the other channels.

So a cell has ``p² · (C − 1) + 1`` channels with towers (51 for p = 5) and ``p² · C`` without (75).
:func:`from_patches` is the inverse on images whose last channel is constant on the aligned ``p × p`` blocks
(exact up to the float32 rounding of the block mean, ~1e-7 relative), and exact on every image for
``towers=False``. Images whose side
is not a multiple of ``p`` are padded after the last row/column (so the block grid starts at pixel (0, 0),
where the towers start) with ``pad_value`` and cropped back by :func:`from_patches`.

Shapes: images ``(N, S, S, C)`` ↔ patches ``(N, G, G, K)`` with ``G = ceil(S / p)``.
"""

from __future__ import annotations

from keras import ops


def grid_size(image_size: int, patch: int) -> int:
    """Cells per side of the patch grid of an ``image_size``-pixel image (``ceil(image_size / patch)``)."""
    return -(-int(image_size) // int(patch))


def patch_channels(channels: int, patch: int, towers: bool) -> int:
    """Channels of one grid cell: ``patch² · (channels − 1) + 1`` with towers, else ``patch² · channels``."""
    return patch * patch * (channels - 1) + 1 if towers else patch * patch * channels


def space_to_depth(x, patch: int):
    """``(N, G·p, G·p, C)`` → ``(N, G, G, p·p·C)`` (row-major inside the block, channel fastest)."""
    n, h, w, c = ops.shape(x)[0], x.shape[1], x.shape[2], x.shape[3]
    x = ops.reshape(x, (n, h // patch, patch, w // patch, patch, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (n, h // patch, w // patch, patch * patch * c))


def depth_to_space(x, patch: int, channels: int):
    """Inverse of :func:`space_to_depth`: ``(N, G, G, p·p·C)`` → ``(N, G·p, G·p, C)``."""
    n, g1, g2 = ops.shape(x)[0], x.shape[1], x.shape[2]
    x = ops.reshape(x, (n, g1, g2, patch, patch, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (n, g1 * patch, g2 * patch, channels))


def block_mean(x, patch: int):
    """Mean of each aligned ``p × p`` block of ``(N, G·p, G·p, C)`` → ``(N, G, G, C)``."""
    return ops.average_pool(x, patch, strides=patch, padding="valid")


def to_patches(images, patch: int, towers: bool, pad_value: float = 0.0):
    """Images ``(N, S, S, C)`` → patch grid ``(N, G, G, K)`` (see the module docstring).

    With ``towers`` the last channel enters as the mean of each block (its exact value when the block is
    uniform, as HCAL towers are); the other channels are folded pixel by pixel.
    """
    size = images.shape[1]
    extra = grid_size(size, patch) * patch - size
    if extra:
        images = ops.pad(images, [[0, 0], [0, extra], [0, extra], [0, 0]], constant_values=pad_value)
    if patch == 1:
        return images
    if not towers:
        return space_to_depth(images, patch)
    return ops.concatenate([space_to_depth(images[..., :-1], patch), block_mean(images[..., -1:], patch)], axis=-1)


def from_patches(cells, patch: int, towers: bool, image_size: int, channels: int):
    """Patch grid ``(N, G, G, K)`` → images ``(N, image_size, image_size, channels)``; inverse of
    :func:`to_patches` (with ``towers`` the tower value is repeated over its ``p × p`` pixels)."""
    if patch == 1:
        images = cells
    elif not towers:
        images = depth_to_space(cells, patch, channels)
    else:
        sparse = depth_to_space(cells[..., :-1], patch, channels - 1)
        tower = ops.repeat(ops.repeat(cells[..., -1:], patch, axis=1), patch, axis=2)
        images = ops.concatenate([sparse, tower], axis=-1)
    return images[:, :image_size, :image_size, :]


def constant_on_blocks(channel, patch: int, rtol: float = 1e-4) -> bool:
    """True when a numpy channel ``(N, S, S)`` is constant on every aligned ``patch × patch`` block (the blocks
    that fit; HCAL towers upsampled to crystals are), to ``rtol`` of the channel's largest value."""
    import numpy as np

    channel = np.asarray(channel, dtype=np.float64)
    g = channel.shape[1] // patch
    if g == 0 or patch == 1:
        return patch == 1
    blocks = channel[:, : g * patch, : g * patch].reshape(len(channel), g, patch, g, patch)
    spread = blocks.max(axis=(2, 4)) - blocks.min(axis=(2, 4))
    return bool(spread.max() <= rtol * max(float(channel.max()), 1e-12))
