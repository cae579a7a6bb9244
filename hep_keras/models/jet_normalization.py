"""Invertible, serialisable per-feature transforms for tabular inputs (jet 4-vectors).

Each layer maps ``(batch, F)`` → ``(batch, F)`` with ``call`` and back with ``inverse``; constants are
constructor arguments (lists of floats), so ``get_config`` round-trips and the exported graph carries them.

* :class:`LogFeatures`: ``y_i = log10(x_i + offset_i)`` for features with an offset, identity for ``None``.
* :class:`AffineFeatures`: ``y_i = (x_i - shift_i) / scale_i``.
* :func:`wrap_periodic`: map a difference into ``[-period/2, period/2)`` (for angles such as phi).

:func:`fit_affine` gives ``shift``/``scale`` for the ``standard`` (mean/std) and ``minmax`` (to [-1, 1])
normalisations from training data (numpy, already log-transformed).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

_TINY = 1e-12


@keras.saving.register_keras_serializable(package="hep_keras")
class LogFeatures(keras.layers.Layer):
    """``y_i = log10(max(x_i + offset_i, floor))`` where ``offsets[i]`` is a float; identity where it is None.

    Args:
        offsets: one entry per feature: ``None`` (leave the feature alone) or the offset added before the log
            (0 for pT in GeV, 1 GeV for the mass as in ``log10(m + 1)``).
        floor: smallest argument of the log (guards m = 0 with offset 0).
    """

    def __init__(self, offsets: list[float | None], floor: float = 1e-6, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.offsets = [None if o is None else float(o) for o in offsets]
        self.floor = float(floor)
        self._mask = np.array([o is not None for o in self.offsets], dtype=np.float32)
        self._offset = np.array([0.0 if o is None else o for o in self.offsets], dtype=np.float32)

    def call(self, x):
        mask = ops.convert_to_tensor(self._mask, dtype=x.dtype)
        logged = ops.log(ops.maximum(x + self._offset, self.floor)) / np.log(10.0)
        return mask * logged + (1.0 - mask) * x

    def inverse(self, y):
        """Physical values from log values; ``(batch, F)``."""
        mask = ops.convert_to_tensor(self._mask, dtype=y.dtype)
        powered = ops.exp(ops.minimum(y, 30.0) * np.log(10.0)) - self._offset
        return mask * powered + (1.0 - mask) * y

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "offsets": self.offsets, "floor": self.floor}


@keras.saving.register_keras_serializable(package="hep_keras")
class AffineFeatures(keras.layers.Layer):
    """``y_i = (x_i - shift_i) / scale_i``; ``inverse`` undoes it exactly (up to float rounding).

    Args:
        shift: one float per feature.
        scale: one non-zero float per feature.
    """

    def __init__(self, shift: list[float], scale: list[float], **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if len(shift) != len(scale):
            raise ValueError(f"shift and scale differ in length: {len(shift)} vs {len(scale)}")
        if any(abs(float(s)) < _TINY for s in scale):
            raise ValueError(f"scale must be non-zero, got {scale}")
        self.shift = [float(s) for s in shift]
        self.scale = [float(s) for s in scale]

    def call(self, x):
        return (x - np.array(self.shift, dtype=np.float32)) / np.array(self.scale, dtype=np.float32)

    def inverse(self, y):
        """Un-normalised values; ``(batch, F)``."""
        return y * np.array(self.scale, dtype=np.float32) + np.array(self.shift, dtype=np.float32)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "shift": self.shift, "scale": self.scale}


def wrap_periodic(delta, period: float):
    """Map ``delta`` (tensor) into ``[-period/2, period/2)``: the shortest signed distance on a circle."""
    return delta - period * ops.floor(delta / period + 0.5)


def fit_affine(features: np.ndarray, kind: str) -> tuple[list[float], list[float]]:
    """Fit ``(shift, scale)`` on ``features`` ``(N, F)``: ``standard`` = mean/std, ``minmax`` = to [-1, 1]."""
    features = np.asarray(features, dtype=np.float64)
    if kind == "standard":
        shift, scale = features.mean(axis=0), features.std(axis=0)
    elif kind == "minmax":
        lo, hi = features.min(axis=0), features.max(axis=0)
        shift, scale = (hi + lo) / 2, (hi - lo) / 2
    else:
        raise ValueError(f"unknown normalisation {kind!r}")
    scale = np.where(scale > _TINY, scale, 1.0)
    return [float(v) for v in shift], [float(v) for v in scale]
