"""Convolutional variational autoencoder for jet images, GeV in and GeV out.

**Code of an event.** ``encode`` maps ``(N, S, S, C)`` GeV images to a code of ``latent_dim + C + 1`` numbers:
a Gaussian latent ``z`` (``latent_dim``) describing *where* the energy is, followed by the event's physics
summary — ``log1p(E_c / energy_scale_c)`` for each channel's total energy and ``log1p(m / mass_scale)`` for the
image jet mass (ECAL + HCAL). The summary is computed from the image, not learned, so a reconstruction has
exactly the original channel energies; the decoder is conditioned on the summary, the way calorimeter
generative models are conditioned on the incident energy.

**Encoder**: :class:`~hep_keras.data.normalization.ChannelLogScale` → zero-pad to a multiple of
``2**len(widths)`` (never resize: interpolation changes energy) → stride-2 convolutions → flatten, joined with
the summary → dense → ``z_mean``, ``z_log_var``.

**Decoder ("energy flow")**: ``[z, summary]`` → dense → transposed convolutions → per-channel softmax over the
S×S pixels = energy *fractions* ``p_c``; image = ``E_c · p_c``, cropped back to S×S. Pixels under the detector's
zero-suppression threshold are set to 0 and the survivors rescaled so the channel still sums to ``E_c`` (a
channel with no pixel above threshold keeps its hottest pixel). With ``variational=False`` the same backbone is
a deterministic autoencoder (:class:`~hep_keras.models.ae.JetImageAE`).

Why: a jet image is an energy distribution over a few hundred of 15,625 pixels per channel. Pixel-wise losses
are minimised by (nearly) blank images; fractions that sum to 1 cannot be blank, and the energy is carried
exactly. Loss (per event, batch mean, float32):

* ``shape_loss``: KL divergence of the predicted from the true energy fractions, summed over channels with
  energy (a cross-entropy on where the energy goes);
* ``mass_loss``: ``mass_weight`` × squared error of ``log1p`` of the image jet mass (GeV) of the (softly)
  zero-suppressed reconstruction: the decoder must honour the mass it is given with pixels that survive the
  suppression, which keeps the spatial spread right;
* ``kl_loss``: KL of the latent to the unit Gaussian × ``beta``, ramped linearly from 0 over
  ``kl_warmup_steps`` optimizer steps. The shape loss is the likelihood of *one* energy quantum, so the
  ELBO-like ``beta = 1`` over-regularises (the latent collapses to a few nats); the default is 0.01.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from hep_keras.data.normalization import ChannelLogScale
from hep_keras.models.base import LossModel
from hep_keras.models.blocks import conv_decoder, conv_encoder, pad_amounts, padded_size
from hep_keras.physics import pixel_coordinates

_TINY = 1e-12


@keras.saving.register_keras_serializable(package="hep_keras")
class JetImageVAE(LossModel):
    """Convolutional (variational) autoencoder of ``(N, S, S, C)`` jet images in GeV.

    Args:
        image_size: side S of the square input images in pixels (125 for the CMS images).
        channels: C, number of image channels (3: Tracks, ECAL, HCAL).
        latent_dim: size of the Gaussian latent ``z`` (the code adds C + 1 physics numbers).
        widths: filters of the encoder levels (each halves the resolution); the decoder mirrors them.
        activation: activation of the hidden layers.
        scales, norms: per-channel constants of the input :class:`ChannelLogScale` (fit on the training split).
        energy_scales: per-channel GeV unit of the energy summary (mean channel energy of the training split).
        mass_scale: GeV unit of the mass summary (mean image mass of the training split).
        zero_thresholds: per-channel GeV below which output pixels are set to 0 (``None``: keep all).
        beta: weight of the KL term after warm-up.
        kl_warmup_steps: optimizer steps over which the KL weight rises linearly from 0 to ``beta``.
        mass_weight: weight of the image-mass term.
        variational: sample the latent (VAE) or use its mean (deterministic AE, no KL term).
        seed: seed of the latent sampling noise.
    """

    def __init__(
        self,
        image_size: int = 125,
        channels: int = 3,
        latent_dim: int = 16,
        widths: Sequence[int] = (16, 32, 64, 64),
        activation: str = "silu",
        scales: Sequence[float] = (1.0, 1.0, 1.0),
        norms: Sequence[float] = (1.0, 1.0, 1.0),
        energy_scales: Sequence[float] = (1.0, 1.0, 1.0),
        mass_scale: float = 1.0,
        zero_thresholds: Sequence[float] | None = None,
        beta: float = 0.01,
        kl_warmup_steps: int = 0,
        mass_weight: float = 30.0,
        variational: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # === Config ===
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.latent_dim = int(latent_dim)
        self.widths = [int(w) for w in widths]
        self.activation = activation
        self.energy_scales = [float(e) for e in energy_scales]
        self.mass_scale = float(mass_scale)
        self.zero_thresholds = None if zero_thresholds is None else [float(t) for t in zero_thresholds]
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.mass_weight = float(mass_weight)
        self.variational = bool(variational)
        self.seed = seed
        self.rng_seed = seed or 0

        # === Layers ===
        depth = len(self.widths)
        padded = padded_size(self.image_size, depth)
        before, after = pad_amounts(self.image_size, depth)
        bottom = padded // 2**depth
        hidden = 4 * self.latent_dim
        self.normalization = ChannelLogScale(scales, norms, name="normalization")
        self.pad = keras.layers.ZeroPadding2D(((before, after), (before, after)), name="pad")
        self.crop = keras.layers.Cropping2D(((before, after), (before, after)), name="crop")
        self.encoder = conv_encoder((padded, padded, self.channels), self.widths, activation, name="encoder")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.encoder_dense = keras.layers.Dense(hidden, activation=activation, name="enc_dense")
        self.z_mean_dense = keras.layers.Dense(self.latent_dim, dtype="float32", name="z_mean")
        self.z_log_var_dense = (
            keras.layers.Dense(self.latent_dim, dtype="float32", name="z_log_var") if self.variational else None
        )
        self.decoder_dense = keras.layers.Dense(
            bottom * bottom * self.widths[-1], activation=activation, name="dec_dense"
        )
        self.reshape = keras.layers.Reshape((bottom, bottom, self.widths[-1]), name="dec_reshape")
        self.decoder = conv_decoder(
            (bottom, bottom, self.widths[-1]), self.widths, self.channels, activation, "decoder"
        )
        eta, phi = pixel_coordinates(self.image_size, self.image_size)
        self._kinematic_maps = np.stack([np.cosh(eta), np.cos(phi), np.sin(phi), np.sinh(eta)]).astype("float32")

        # === Loss trackers ===
        names = ["loss", "shape_loss", "mass_loss"] + (["kl_loss"] if self.variational else [])
        self.track_losses(names)
        self.build((None, self.image_size, self.image_size, self.channels))

    def build(self, input_shape):
        """Create every weight (the model must count as built for ``.keras`` files to round-trip)."""
        shape = (None, self.image_size, self.image_size, self.channels)
        self.normalization.build(shape)
        encoded = self.encoder.compute_output_shape(self.pad.compute_output_shape(shape))
        flat = self.flatten.compute_output_shape(encoded)
        self.encoder_dense.build((None, flat[-1] + self.summary_dim))
        for layer in (self.z_mean_dense, self.z_log_var_dense):
            if layer is not None:
                layer.build((None, 4 * self.latent_dim))
        self.decoder_dense.build((None, self.code_dim))
        self.built = True

    @property
    def summary_dim(self) -> int:
        """Number of physics-summary entries in the code: C channel energies + the image mass."""
        return self.channels + 1

    @property
    def code_dim(self) -> int:
        """Length of an event's code: ``latent_dim`` + :attr:`summary_dim`."""
        return self.latent_dim + self.summary_dim

    # --- physics summary ------------------------------------------------------------------------------------
    def image_mass(self, calo):
        """Differentiable image jet mass (GeV) of calorimeter images ``(N, S, S)`` in GeV.

        Same definition as :func:`hep_keras.physics.image_jet_kinematics`.
        """
        maps = ops.convert_to_tensor(self._kinematic_maps)
        e, px, py, pz = (ops.sum(calo * maps[k], axis=(1, 2)) for k in range(4))
        return ops.sqrt(ops.maximum(e * e - px * px - py * py - pz * pz, 0.0) + 1e-6)

    def physics_summary(self, images):
        """``(N, C + 1)`` float32: ``log1p(E_c / energy_scale_c)`` per channel and ``log1p(m / mass_scale)``."""
        images = ops.maximum(ops.cast(images, "float32"), 0.0)
        totals = ops.sum(images, axis=(1, 2))
        energies = ops.log1p(totals / ops.convert_to_tensor(self.energy_scales, "float32"))
        mass = ops.log1p(self.image_mass(images[..., 1] + images[..., 2]) / self.mass_scale)
        return ops.concatenate([energies, mass[:, None]], axis=-1)

    def summary_energies(self, summary):
        """Per-channel energies in GeV ``(N, C)`` from the summary part of codes."""
        scales = ops.convert_to_tensor(self.energy_scales, "float32")
        return scales * ops.expm1(ops.relu(summary[:, : self.channels]))

    # --- encoder / decoder ----------------------------------------------------------------------------------
    def encode_latent(self, images, training=False):
        """GeV images → ``(z_mean, z_log_var, summary)``; ``z_log_var`` is zeros for the deterministic AE."""
        summary = self.physics_summary(images)
        h = self.flatten(self.encoder(self.pad(self.normalization(images)), training=training))
        h = self.encoder_dense(ops.concatenate([h, ops.cast(summary, h.dtype)], axis=-1))
        z_mean = self.z_mean_dense(h)
        z_log_var = ops.zeros_like(z_mean) if self.z_log_var_dense is None else self.z_log_var_dense(h)
        return z_mean, z_log_var, summary

    def encode(self, images):
        """GeV images ``(N, S, S, C)`` → codes ``(N, code_dim)`` = ``[z_mean, summary]`` (deterministic)."""
        z_mean, _, summary = self.encode_latent(images)
        return ops.concatenate([z_mean, summary], axis=-1)

    def decode_log_fractions(self, code, training=False):
        """Codes ``(N, code_dim)`` → log energy fractions ``(N, S, S, C)`` (``exp`` sums to 1 per channel)."""
        logits = self.crop(self.decoder(self.reshape(self.decoder_dense(code)), training=training))
        logits = ops.cast(logits, "float32")
        flat = ops.reshape(logits, (-1, self.image_size * self.image_size, self.channels))
        return ops.reshape(ops.log_softmax(flat, axis=1), ops.shape(logits))

    def decode(self, code):
        """Codes ``(N, code_dim)`` → images ``(N, S, S, C)`` in GeV, zero-suppressed, channel sums = E_c."""
        fractions = ops.exp(self.decode_log_fractions(code))
        energy = self.summary_energies(code[:, self.latent_dim :])[:, None, None, :]
        if self.zero_thresholds is not None:
            thresholds = ops.convert_to_tensor(self.zero_thresholds, "float32")
            kept = ops.where(fractions * energy >= thresholds, fractions, ops.zeros_like(fractions))
            kept_sum = ops.sum(kept, axis=(1, 2), keepdims=True)
            hottest = ops.cast(fractions >= ops.max(fractions, axis=(1, 2), keepdims=True), "float32")
            kept = ops.where(kept_sum > 0, kept, hottest * fractions)
            fractions = kept / ops.maximum(ops.sum(kept, axis=(1, 2), keepdims=True), _TINY)
        return fractions * energy

    def soft_zero_suppress(self, images, totals):
        """Differentiable version of :meth:`decode`'s zero suppression, for the loss.

        Pixels under the thresholds are zeroed (the gradient is that of ``sigmoid((x - t) / (0.2 t))``, a
        straight-through estimator; a channel where no pixel survives uses the sigmoid mask itself) and each
        channel rescaled back to ``totals`` (N, C), so the mass term sees the image that :meth:`decode` returns.
        Without it the decoder learns to put the jet's spread into a sub-threshold halo that the suppression
        then removes (image-mass response 0.2; a plain sigmoid mask: 0.77).
        """
        if self.zero_thresholds is None:
            return images
        thresholds = ops.convert_to_tensor(self.zero_thresholds, "float32")
        soft = ops.sigmoid((images - thresholds) / (0.2 * thresholds))
        hard = ops.cast(images >= thresholds, "float32")
        straight_through = images * (soft + ops.stop_gradient(hard - soft))  # hard forward, soft backward
        # a channel with no surviving pixel (early in training) uses the soft mask, which still has gradients
        survivors = ops.sum(images * hard, axis=(1, 2), keepdims=True) > 0
        kept = ops.where(survivors, straight_through, images * soft)
        scale = totals / ops.maximum(ops.sum(kept, axis=(1, 2)), _TINY)
        return kept * scale[:, None, None, :]

    def call(self, images, training=False):
        """Deterministic reconstruction (latent mean) of GeV images, in GeV."""
        return self.decode(self.encode(images))

    def sample_latent(self, z_mean, z_log_var):
        """Reparameterised draw ``z = mean + exp(log_var / 2) * eps`` (the mean itself when not variational)."""
        if not self.variational:
            return z_mean
        eps = self.random_normal(ops.shape(z_mean), salt=0)
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    # --- losses ---------------------------------------------------------------------------------------------
    def kl_weight(self):
        """Current KL weight: ``beta`` × linear warm-up over ``kl_warmup_steps`` optimizer steps."""
        if not self.variational:
            return ops.convert_to_tensor(0.0)
        if self.kl_warmup_steps <= 0 or self.optimizer is None:
            return ops.convert_to_tensor(self.beta)
        step = ops.cast(self.optimizer.iterations, "float32")
        return self.beta * ops.minimum(1.0, step / float(self.kl_warmup_steps))

    def compute_losses(self, images, training=False):
        """Loss terms for a batch of GeV images; dict of float32 scalars (``loss`` is the weighted total)."""
        images = ops.maximum(ops.cast(images, "float32"), 0.0)
        z_mean, z_log_var, summary = self.encode_latent(images, training=training)
        z = self.sample_latent(z_mean, z_log_var) if training else z_mean
        log_fractions = self.decode_log_fractions(ops.concatenate([z, summary], axis=-1), training=training)

        totals = ops.sum(images, axis=(1, 2))  # (N, C)
        true_fractions = images / ops.maximum(totals, _TINY)[:, None, None, :]
        cross = -ops.sum(true_fractions * log_fractions, axis=(1, 2))
        entropy = -ops.sum(true_fractions * ops.log(ops.maximum(true_fractions, _TINY)), axis=(1, 2))
        shape = ops.mean(ops.sum(ops.cast(totals > 0, "float32") * (cross - entropy), axis=-1))

        reconstructed = self.soft_zero_suppress(ops.exp(log_fractions) * totals[:, None, None, :], totals)
        mass_pred = self.image_mass(reconstructed[..., 1] + reconstructed[..., 2])
        mass_true = self.image_mass(images[..., 1] + images[..., 2])
        mass = ops.mean(ops.square(ops.log1p(mass_pred) - ops.log1p(mass_true)))

        losses = {"shape_loss": shape, "mass_loss": mass}
        total = shape + self.mass_weight * mass
        if self.variational:
            kl = ops.mean(-0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1))
            losses["kl_loss"] = kl
            total = total + self.kl_weight() * kl
        losses["loss"] = total
        return losses

    def unpack(self, data):
        """The images of a batch ``images`` or ``(images, ...)``."""
        return data[0] if isinstance(data, tuple | list) else data

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "channels": self.channels,
            "latent_dim": self.latent_dim,
            "widths": self.widths,
            "activation": self.activation,
            "scales": self.normalization.scales,
            "norms": self.normalization.norms,
            "energy_scales": self.energy_scales,
            "mass_scale": self.mass_scale,
            "zero_thresholds": self.zero_thresholds,
            "beta": self.beta,
            "kl_warmup_steps": self.kl_warmup_steps,
            "mass_weight": self.mass_weight,
            "variational": self.variational,
            "seed": self.seed,
        }
