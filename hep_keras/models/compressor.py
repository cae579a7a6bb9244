"""``JetCompressor``: a dense autoencoder compressing jet 4-vectors (pT, eta, phi, m) to 3 numbers.

Architecture (constructor defaults, as in the ATLAS/CMS trigger-jet studies): 4-200-100-50-3-50-100-200-4, tanh.
What ``fit compressor`` trains (gelu, loss weights, patience) is the recipe's ``DEFAULTS``, stated in
docs/compressor.md (generated from them and tested).

Input and output are *physical* ``(batch, 4)`` float32 arrays of (pT [GeV], eta, phi [rad], m [GeV]); the
normalisation lives inside the model:

``features``   (log10 pT, eta, phi, log10(m + mass_offset))  — :class:`~.jet_normalization.LogFeatures`
``normalised`` (features - shift) / scale                     — :class:`~.jet_normalization.AffineFeatures`

with ``shift``/``scale`` from the normalisation chosen by name (:func:`normalization_constants`):
``custom`` (fixed: (log10 pT - 1.3)/1.2, eta/5, phi/3, log10(m+1)/1.8), ``standard`` (mean/std fitted on the
training jets) or ``minmax`` (fitted range → [-1, 1]). pT and m are always log-transformed: an error in
log10 pT is a relative error in pT, which is what the compression is judged by.

phi is fed as a plain number (phi/scale), decoded as a plain number and wrapped into (-pi, pi] at the output;
the training loss uses the *wrapped* difference, so a prediction of -3.14 for a true +3.14 costs nothing. We
do not use (cos phi, sin phi): phi is uniform and independent of the rest, so it needs one latent number, and
a circle cannot be mapped continuously and one-to-one onto one number — the network would have to tear the
circle somewhere inside its domain and jets near the tear would be badly reconstructed. Feeding phi as an
interval puts the tear exactly at ±pi, where the wrapped output makes it harmless.

The latent is 3 float32 numbers per jet (``encode``); ``decode`` maps them back to physical units.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from hep_keras.models.base import LossModel
from hep_keras.models.jet_normalization import AffineFeatures, LogFeatures, fit_affine, wrap_periodic

N_FEATURES = 4
PHI = 2
#: normalisation constants of ``custom`` (from the public trigger-jet compression studies)
CUSTOM_SHIFT = [1.3, 0.0, 0.0, 0.0]
CUSTOM_SCALE = [1.2, 5.0, 3.0, 1.8]
NORMALIZATIONS = ("custom", "standard", "minmax")


def log_offsets(mass_offset: float) -> list[float | None]:
    """Offsets of :class:`LogFeatures` for (pT, eta, phi, m): log10(pT), log10(m + mass_offset)."""
    return [0.0, None, None, float(mass_offset)]


def normalization_constants(
    kind: str, jets: np.ndarray | None = None, mass_offset: float = 1.0
) -> tuple[list[float], list[float]]:
    """``(shift, scale)`` for normalisation ``kind`` in log-feature space.

    Args:
        kind: ``custom`` (fixed constants) or ``standard`` / ``minmax`` (fitted on ``jets``).
        jets: ``(N, 4)`` physical (pT, eta, phi, m) training jets; needed for the fitted kinds.
        mass_offset: GeV added to m before the log.
    """
    if kind == "custom":
        return list(CUSTOM_SHIFT), list(CUSTOM_SCALE)
    if jets is None:
        raise ValueError(f"normalisation {kind!r} is fitted: pass the training jets")
    features = np.asarray(LogFeatures(log_offsets(mass_offset))(np.asarray(jets, np.float32)))
    shift, scale = fit_affine(features, kind)
    shift[PHI], scale[PHI] = 0.0, (math.pi if kind == "minmax" else scale[PHI])  # phi stays centred on 0
    return shift, scale


@keras.saving.register_keras_serializable(package="hep_keras")
class JetCompressor(LossModel):
    """Dense autoencoder (pT, eta, phi, m) → ``latent_dim`` numbers → (pT, eta, phi, m), physical units.

    Args:
        widths: hidden widths of the encoder (the decoder mirrors them), e.g. ``[200, 100, 50]``.
        latent_dim: numbers per jet after compression (3).
        activation: Keras activation name of the hidden layers (``tanh``, ``leaky_relu``, ``gelu``, ...).
        normalization: ``custom`` | ``standard`` | ``minmax`` (recorded; the constants are ``shift``/``scale``).
        shift, scale: per-feature constants of the normalisation in log-feature space (4 floats each).
        mass_offset: GeV added to m before log10 (``custom`` uses 1).
        loss_weights: weights of the per-variable squared errors in normalised space (4 floats).

    ``call(x)``: ``(batch, 4)`` → ``(batch, 4)``; ``encode``: ``(batch, 4)`` → ``(batch, latent_dim)``;
    ``decode``: ``(batch, latent_dim)`` → ``(batch, 4)``. The training loss is the weighted MSE in normalised
    space with the phi difference wrapped (see the module docstring).
    """

    def __init__(
        self,
        widths: list[int] = (200, 100, 50),
        latent_dim: int = 3,
        activation: str = "tanh",
        normalization: str = "custom",
        shift: list[float] = tuple(CUSTOM_SHIFT),
        scale: list[float] = tuple(CUSTOM_SCALE),
        mass_offset: float = 1.0,
        loss_weights: list[float] = (1.0, 1.0, 1.0, 1.0),
        **kwargs,
    ):
        super().__init__(**kwargs)
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        # === Config ===
        self.widths = [int(w) for w in widths]
        self.latent_dim = int(latent_dim)
        self.activation = str(activation)
        self.normalization = normalization
        self.shift = [float(v) for v in shift]
        self.scale = [float(v) for v in scale]
        self.mass_offset = float(mass_offset)
        self.loss_weights = [float(v) for v in loss_weights]
        self.phi_period = 2 * math.pi / self.scale[PHI]

        # === Layers ===
        self.log_features = LogFeatures(log_offsets(self.mass_offset), name="log_features")
        self.normalize = AffineFeatures(self.shift, self.scale, name="normalize")
        self.encoder_layers = [
            keras.layers.Dense(w, activation=self.activation, dtype="float32", name=f"encoder_{i}")
            for i, w in enumerate(self.widths)
        ] + [keras.layers.Dense(self.latent_dim, dtype="float32", name="latent")]
        self.decoder_layers = [
            keras.layers.Dense(w, activation=self.activation, dtype="float32", name=f"decoder_{i}")
            for i, w in enumerate(reversed(self.widths))
        ] + [keras.layers.Dense(N_FEATURES, dtype="float32", name="output")]
        self.track_losses(["loss"])
        self.build((None, N_FEATURES))

    def build(self, input_shape=None):
        """Create every weight (a never-called subclassed model must still save/reload its weights)."""
        shape = (None, N_FEATURES)
        for layer in (self.log_features, self.normalize):
            layer.build(shape)
        for layer in self.encoder_layers:
            layer.build(shape)
            shape = (None, layer.units)
        shape = (None, self.latent_dim)
        for layer in self.decoder_layers:
            layer.build(shape)
            shape = (None, layer.units)
        self.built = True

    # --- forward ---------------------------------------------------------------------------------------------

    def normalized_features(self, x):
        """Physical ``(batch, 4)`` → normalised features ``(batch, 4)``."""
        return self.normalize(self.log_features(ops.cast(x, "float32")))

    def encode(self, x):
        """Physical (pT, eta, phi, m) ``(batch, 4)`` → latent ``(batch, latent_dim)`` float32."""
        h = self.normalized_features(x)
        for layer in self.encoder_layers:
            h = layer(h)
        return h

    def decode_normalized(self, z):
        """Latent ``(batch, latent_dim)`` → normalised features ``(batch, 4)`` (phi not yet wrapped)."""
        h = ops.cast(z, "float32")
        for layer in self.decoder_layers:
            h = layer(h)
        return h

    def decode(self, z):
        """Latent ``(batch, latent_dim)`` → physical (pT, eta, phi, m) ``(batch, 4)``; phi in [-pi, pi), m >= 0."""
        x = self.log_features.inverse(self.normalize.inverse(self.decode_normalized(z)))
        pt, eta, phi, m = (x[:, i] for i in range(N_FEATURES))
        phi = wrap_periodic(phi, 2 * math.pi)
        return ops.stack([pt, eta, phi, ops.maximum(m, 0.0)], axis=1)

    def call(self, x):
        return self.decode(self.encode(x))

    # --- training --------------------------------------------------------------------------------------------

    def residuals(self, x):
        """Normalised prediction minus normalised target ``(batch, 4)``, the phi column wrapped."""
        target = self.normalized_features(x)
        pred = self.decode_normalized(self.encode(x))
        delta = pred - target
        wrapped = wrap_periodic(delta[:, PHI], self.phi_period)
        return ops.concatenate([delta[:, :PHI], wrapped[:, None], delta[:, PHI + 1 :]], axis=1)

    def jet_loss(self, x):
        """Weighted mean squared residual in normalised space (scalar)."""
        weights = np.array(self.loss_weights, dtype=np.float32) / np.mean(self.loss_weights)
        return ops.mean(ops.square(self.residuals(x)) * weights)

    def unpack(self, data):
        """The jets ``(batch, 4)`` of a batch ``jets`` or ``(jets, ...)``."""
        return data[0] if isinstance(data, tuple | list) else data

    def compute_losses(self, x, training=False):
        """``{"loss": jet_loss(x)}`` for physical jets ``(batch, 4)``."""
        return {"loss": self.jet_loss(x)}

    # --- config ----------------------------------------------------------------------------------------------

    def get_config(self):
        return {
            **super().get_config(),
            "widths": self.widths,
            "latent_dim": self.latent_dim,
            "activation": self.activation,
            "normalization": self.normalization,
            "shift": self.shift,
            "scale": self.scale,
            "mass_offset": self.mass_offset,
            "loss_weights": self.loss_weights,
        }
