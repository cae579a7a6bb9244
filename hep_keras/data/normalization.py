"""Invertible, serialisable normalisation of jet images (GeV ↔ network units).

:class:`ChannelLogScale` maps a pixel value ``x`` (GeV) of channel ``c`` to ``log1p(x / scale_c) / norm_c``:
the logarithm keeps 50 MeV deposits and 200 GeV cores both visible to the network (a plain linear scale makes
the loss blind to everything but the hottest pixels, and models then reconstruct blank images), and ``norm_c``
brings the hottest training pixel to about 1. Its :meth:`ChannelLogScale.inverse` is exact up to float32
rounding. The constants are fitted on the training split with :func:`fit_channel_log_scale` and stored in the
layer's config, so an exported model maps GeV to GeV by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from hep_keras.physics import image_jet_kinematics


@keras.saving.register_keras_serializable(package="hep_keras")
class ChannelLogScale(keras.layers.Layer):
    """Per-channel ``y = log1p(max(x, 0) / scale) / norm``; ``inverse(y) = scale * expm1(norm * y)``.

    Args:
        scales: per-channel energy scale in GeV (length C), e.g. the median non-zero pixel value.
        norms: per-channel divisor in log units (length C), e.g. ``log1p(max pixel / scale)``.

    Input/output: ``(..., C)`` float tensors; works on any leading shape.
    """

    def __init__(self, scales: Sequence[float], norms: Sequence[float], **kwargs):
        super().__init__(**kwargs)
        # === Config ===
        self.scales = [float(s) for s in scales]
        self.norms = [float(n) for n in norms]
        if len(self.scales) != len(self.norms) or min(self.scales) <= 0 or min(self.norms) <= 0:
            raise ValueError(f"scales and norms must be positive and of equal length: {scales}, {norms}")

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        scales = ops.cast(ops.convert_to_tensor(self.scales), x.dtype)
        norms = ops.cast(ops.convert_to_tensor(self.norms), x.dtype)
        return ops.log1p(ops.maximum(x, 0.0) / scales) / norms

    def inverse(self, y):
        """Network units back to GeV (same shape)."""
        scales = ops.cast(ops.convert_to_tensor(self.scales), y.dtype)
        norms = ops.cast(ops.convert_to_tensor(self.norms), y.dtype)
        return scales * ops.expm1(y * norms)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scales": self.scales, "norms": self.norms}


def fit_image_normalization(batches: Iterable[np.ndarray], max_events: int = 2000) -> dict[str, Any]:
    """Per-channel normalisation constants fitted on batches ``(B, H, W, C)`` of GeV images.

    Returns a dict of length-C lists:

    * ``scales``: median of the channel's non-zero pixels (GeV), for :class:`ChannelLogScale`;
    * ``norms``: ``log1p(p99.99 / scale)`` of the non-zero pixels, so that almost every pixel maps into [0, 1];
    * ``zero_thresholds``: 0.1st percentile of the non-zero pixels (GeV), i.e. the detector's zero-suppression
      threshold as seen in the data (reconstructed pixels below it are set to zero);
    * ``energy_scales``: mean total energy of the channel per event (GeV), the unit of the energy summary;

    and ``mass_scale`` (a float): mean image jet mass (GeV, ECAL + HCAL) per event, the unit of the mass summary.

    Reads at most ``max_events`` events.
    """
    nonzero: list[list[np.ndarray]] = []
    totals: list[np.ndarray] = []
    masses: list[np.ndarray] = []
    seen = 0
    for batch in batches:
        batch = np.asarray(batch)
        if not nonzero:
            nonzero = [[] for _ in range(batch.shape[-1])]
        for c in range(batch.shape[-1]):
            values = batch[..., c]
            nonzero[c].append(values[values > 0].astype(np.float64))
        totals.append(batch.sum(axis=(1, 2), dtype=np.float64))
        masses.append(image_jet_kinematics(batch[..., 1] + batch[..., 2])[1])
        seen += len(batch)
        if seen >= max_events:
            break
    if not nonzero:
        raise ValueError("no events to fit the normalisation on")
    out: dict[str, Any] = {"scales": [], "norms": [], "zero_thresholds": [], "energy_scales": []}
    mean_totals = np.concatenate(totals).mean(axis=0)
    for c, per_channel in enumerate(nonzero):
        values = np.concatenate(per_channel)
        scale = float(np.median(values)) if values.size else 1.0
        top = float(np.percentile(values, 99.99)) if values.size else 1.0
        out["scales"].append(scale)
        out["norms"].append(float(max(np.log1p(top / scale), 1e-3)))
        out["zero_thresholds"].append(float(np.percentile(values, 0.1)) if values.size else 0.0)
        out["energy_scales"].append(float(mean_totals[c]) if mean_totals[c] > 0 else 1.0)
    mean_mass = float(np.concatenate(masses).mean())
    out["mass_scale"] = mean_mass if mean_mass > 0 else 1.0
    return out
