"""Building blocks shared by the image models: padding to a power-of-two grid, down/up-sampling stacks.

Images are never resized (interpolation changes the deposited energy): a 125×125 image is zero-padded to the
next multiple of ``2**depth`` before the convolutions and cropped back after them.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def padded_size(size: int, depth: int) -> int:
    """Smallest multiple of ``2**depth`` that is ≥ ``size`` (125 → 128 for depth 2–7)."""
    step = 2**depth
    return -(-size // step) * step


def pad_amounts(size: int, depth: int) -> tuple[int, int]:
    """(before, after) zero padding that centres a ``size`` image in :func:`padded_size` pixels."""
    extra = padded_size(size, depth) - size
    return extra // 2, extra - extra // 2


def conv_encoder(
    input_shape: tuple[int, int, int], widths: Sequence[int], activation: str, name: str
) -> keras.Sequential:
    """One stride-2 convolution per entry of ``widths``, then one same-resolution convolution at the bottom.

    ``(P, P, C)`` → ``(P / 2**len(widths), P / 2**len(widths), widths[-1])``. Nothing runs at full resolution
    but the first, cheap layer: about 16 M multiply-adds per 128×128×3 image for widths (16, 32, 64, 64).
    """
    layers: list = [keras.Input(input_shape)]
    for i, width in enumerate(widths):
        layers.append(keras.layers.Conv2D(width, 3, strides=2, padding="same", activation=activation, name=f"down{i}"))
    layers.append(keras.layers.Conv2D(widths[-1], 3, padding="same", activation=activation, name="bottom"))
    return keras.Sequential(layers, name=name)


def conv_decoder(
    input_shape: tuple[int, int, int], widths: Sequence[int], out_channels: int, activation: str, name: str
) -> keras.Sequential:
    """Mirror of :func:`conv_encoder`: a bottom convolution, transposed stride-2 convolutions through the
    reversed ``widths``, the last one straight to ``out_channels`` (linear, float32 for mixed precision)."""
    layers: list = [keras.Input(input_shape)]
    layers.append(keras.layers.Conv2D(widths[-1], 3, padding="same", activation=activation, name="bottom"))
    for i, width in enumerate(list(reversed(widths))[1:]):
        layers.append(
            keras.layers.Conv2DTranspose(width, 3, strides=2, padding="same", activation=activation, name=f"up{i}")
        )
    layers.append(
        keras.layers.Conv2DTranspose(out_channels, 3, strides=2, padding="same", dtype="float32", name="output")
    )
    return keras.Sequential(layers, name=name)
