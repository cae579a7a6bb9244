"""Convolutional variational autoencoder for jet images, GeV in and GeV out.

``(N, 125, 125, 3)`` images in GeV → :class:`~hep_keras.data.normalization.ChannelLogScale` → zero-pad to a
multiple of ``2**len(widths)`` → convolutional encoder → latent Gaussian (``latent_dim``) → decoder → crop →
inverse normalisation → GeV. With ``variational=False`` the same backbone is a plain deterministic
autoencoder (:class:`~hep_keras.models.ae.JetImageAE`).

Loss (per event, averaged over the batch), all terms in float32:

* reconstruction: squared error in the log-scaled space summed over pixels, with occupied pixels of the
  original weighted by ``1 + occupied_weight``. The log scale makes small deposits matter; the extra weight
  on occupied pixels stops the decoder from settling on the blank image that wins plain pixel MSE on sparse
  data (a few hundred occupied pixels out of 15,625 per channel);
* physics: ``energy_weight`` × squared difference of ``log1p`` of each channel's total energy (GeV) between
  reconstruction and original, and ``mass_weight`` × the same for the image jet mass (ECAL + HCAL) — they pin
  the energy and mass responses to 1. Both are computed after a soft version of the zero suppression that is
  applied to the output, so energy smeared into sub-threshold pixels does not count;
* KL divergence to the unit Gaussian, times ``beta`` ramped linearly from 0 over ``kl_warmup_steps``
  optimizer steps (KL warm-up avoids posterior collapse early in training).

Alternatives tried and what they did are in the README ("Why the loss looks like this").
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from hep_keras.data.normalization import ChannelLogScale
from hep_keras.evaluation.observables import pixel_coordinates
from hep_keras.models.blocks import conv_decoder, conv_encoder, pad_amounts, padded_size


@keras.saving.register_keras_serializable(package="hep_keras")
class JetImageVAE(keras.Model):
    """Convolutional (variational) autoencoder of ``(N, S, S, C)`` jet images in GeV.

    Args:
        image_size: side S of the square input images in pixels (125 for the CMS images).
        channels: C, number of image channels (3: Tracks, ECAL, HCAL).
        latent_dim: size of the latent vector.
        widths: filters of the encoder levels (each halves the resolution); the decoder mirrors them.
        activation: activation of the hidden convolutions.
        scales, norms: per-channel constants of the input :class:`ChannelLogScale` (fit on the training split).
        zero_thresholds: per-channel GeV below which reconstructed pixels are set to 0 (the detector's zero
            suppression; ``None`` keeps every positive value).
        beta: weight of the KL term after warm-up.
        kl_warmup_steps: optimizer steps over which the KL weight rises linearly from 0 to ``beta``.
        occupied_weight: extra weight of the originally occupied pixels in the reconstruction loss.
        energy_weight: weight of the per-channel total-energy term.
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
        zero_thresholds: Sequence[float] | None = None,
        beta: float = 1.0,
        kl_warmup_steps: int = 0,
        occupied_weight: float = 4.0,
        energy_weight: float = 100.0,
        mass_weight: float = 100.0,
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
        self.zero_thresholds = None if zero_thresholds is None else [float(t) for t in zero_thresholds]
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.occupied_weight = float(occupied_weight)
        self.energy_weight = float(energy_weight)
        self.mass_weight = float(mass_weight)
        self.variational = bool(variational)
        self.seed = seed

        # === Layers ===
        depth = len(self.widths)
        padded = padded_size(self.image_size, depth)
        before, after = pad_amounts(self.image_size, depth)
        bottom = padded // 2**depth
        self.normalization = ChannelLogScale(scales, norms, name="normalization")
        self.pad = keras.layers.ZeroPadding2D(((before, after), (before, after)), name="pad")
        self.crop = keras.layers.Cropping2D(((before, after), (before, after)), name="crop")
        self.encoder = conv_encoder((padded, padded, self.channels), self.widths, activation, name="encoder")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.z_mean_dense = keras.layers.Dense(self.latent_dim, dtype="float32", name="z_mean")
        self.z_log_var_dense = (
            keras.layers.Dense(self.latent_dim, dtype="float32", name="z_log_var") if self.variational else None
        )
        self.decoder_dense = keras.layers.Dense(bottom * bottom * self.widths[-1], activation=activation, name="dec_dense")
        self.reshape = keras.layers.Reshape((bottom, bottom, self.widths[-1]), name="dec_reshape")
        self.decoder = conv_decoder((bottom, bottom, self.widths[-1]), self.widths, self.channels, activation, "decoder")
        self.seed_generator = keras.random.SeedGenerator(seed)

        # === Loss trackers ===
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.energy_tracker = keras.metrics.Mean(name="energy_loss")
        self.mass_tracker = keras.metrics.Mean(name="mass_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        self.build((None, self.image_size, self.image_size, self.channels))

    def build(self, input_shape):
        """Create every weight (the model must count as built for ``.keras`` files to round-trip)."""
        shape = (None, self.image_size, self.image_size, self.channels)
        self.normalization.build(shape)
        encoded = self.encoder.compute_output_shape(self.pad.compute_output_shape(shape))
        flat = self.flatten.compute_output_shape(encoded)
        self.z_mean_dense.build(flat)
        if self.z_log_var_dense is not None:
            self.z_log_var_dense.build(flat)
        self.decoder_dense.build((None, self.latent_dim))
        self.built = True

    # --- pieces -------------------------------------------------------------------------------------------
    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.reconstruction_tracker, self.energy_tracker, self.mass_tracker]
        return trackers + [self.kl_tracker] if self.variational else trackers

    def encode(self, images, training=False):
        """GeV images ``(N, S, S, C)`` → ``(z_mean, z_log_var)``, each ``(N, latent_dim)`` float32.

        For the deterministic autoencoder ``z_log_var`` is all zeros.
        """
        h = self.flatten(self.encoder(self.pad(self.normalization(images)), training=training))
        z_mean = self.z_mean_dense(h)
        if self.z_log_var_dense is None:
            return z_mean, ops.zeros_like(z_mean)
        return z_mean, self.z_log_var_dense(h)

    def decode_normalized(self, z, training=False):
        """Latent ``(N, latent_dim)`` → reconstruction in normalised units ``(N, S, S, C)`` (unclipped)."""
        h = self.reshape(self.decoder_dense(z))
        return self.crop(self.decoder(h, training=training))

    def to_gev(self, normalized):
        """Normalised network output → GeV, negative values and values under the zero thresholds set to 0."""
        gev = self.normalization.inverse(ops.relu(ops.cast(normalized, "float32")))
        if self.zero_thresholds is not None:
            thresholds = ops.convert_to_tensor(self.zero_thresholds, dtype=gev.dtype)
            gev = ops.where(gev < thresholds, ops.zeros_like(gev), gev)
        return gev

    def soft_zero_suppress(self, gev):
        """Differentiable stand-in for the zero thresholds used in the loss: ``x * sigmoid((x - t) / 0.2t)``."""
        if self.zero_thresholds is None:
            return gev
        thresholds = ops.convert_to_tensor(self.zero_thresholds, dtype=gev.dtype)
        return gev * ops.sigmoid((gev - thresholds) / (0.2 * thresholds))

    def image_mass(self, calo):
        """Differentiable image jet mass (GeV) of calorimeter images ``(N, S, S)`` in GeV.

        Same definition as :func:`hep_keras.evaluation.observables.image_jet_kinematics`.
        """
        eta, phi = pixel_coordinates(self.image_size, self.image_size)
        maps = ops.convert_to_tensor(np.stack([np.cosh(eta), np.cos(phi), np.sin(phi), np.sinh(eta)]), "float32")
        e, px, py, pz = (ops.sum(calo * maps[k], axis=(1, 2)) for k in range(4))
        return ops.sqrt(ops.maximum(e * e - px * px - py * py - pz * pz, 0.0) + 1e-6)

    def decode(self, z):
        """Latent ``(N, latent_dim)`` → images ``(N, S, S, C)`` in GeV."""
        return self.to_gev(self.decode_normalized(z))

    def call(self, images, training=False):
        """Deterministic reconstruction (latent mean) of GeV images, in GeV."""
        z_mean, _ = self.encode(images, training=training)
        return self.decode(z_mean)

    def sample_latent(self, z_mean, z_log_var):
        """Reparameterised draw ``z = mean + exp(log_var / 2) * eps`` (the mean itself when not variational)."""
        if not self.variational:
            return z_mean
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * eps

    # --- losses -------------------------------------------------------------------------------------------
    def kl_weight(self):
        """Current KL weight: ``beta`` × linear warm-up over ``kl_warmup_steps`` optimizer steps."""
        if not self.variational:
            return ops.convert_to_tensor(0.0)
        if self.kl_warmup_steps <= 0 or self.optimizer is None:
            return ops.convert_to_tensor(self.beta)
        step = ops.cast(self.optimizer.iterations, "float32")
        return self.beta * ops.minimum(1.0, step / float(self.kl_warmup_steps))

    def compute_losses(self, images, training=False):
        """Loss terms for a batch of GeV images; dict of float32 scalars (``loss`` is the total)."""
        images = ops.cast(images, "float32")
        target = ops.cast(self.normalization(images), "float32")
        z_mean, z_log_var = self.encode(images, training=training)
        z = self.sample_latent(z_mean, z_log_var) if training else z_mean
        predicted = ops.cast(self.decode_normalized(z, training=training), "float32")
        weight = 1.0 + self.occupied_weight * ops.cast(images > 0, "float32")
        reconstruction = ops.mean(ops.sum(weight * ops.square(predicted - target), axis=(1, 2, 3)))
        gev = self.soft_zero_suppress(self.normalization.inverse(ops.relu(predicted)))
        energy_pred, energy_true = ops.sum(gev, axis=(1, 2)), ops.sum(images, axis=(1, 2))
        energy = ops.mean(ops.sum(ops.square(ops.log1p(energy_pred) - ops.log1p(energy_true)), axis=-1))
        mass_pred = self.image_mass(gev[..., 1] + gev[..., 2])
        mass_true = self.image_mass(images[..., 1] + images[..., 2])
        mass = ops.mean(ops.square(ops.log1p(mass_pred) - ops.log1p(mass_true)))
        losses = {"reconstruction_loss": reconstruction, "energy_loss": energy, "mass_loss": mass}
        total = reconstruction + self.energy_weight * energy + self.mass_weight * mass
        if self.variational:
            kl = ops.mean(-0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1))
            losses["kl_loss"] = kl
            total = total + self.kl_weight() * kl
        losses["loss"] = total
        return losses

    def _update_trackers(self, losses):
        for tracker in self.metrics:
            tracker.update_state(losses[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.metrics}

    @staticmethod
    def _images(data):
        return data[0] if isinstance(data, tuple | list) else data

    def train_step(self, data):
        images = self._images(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            losses = self.compute_losses(images, training=True)
            # gradients are summed over replicas: divide so a step is the global-batch mean
            scaled = self.optimizer.scale_loss(losses["loss"] / replicas)
        gradients = tape.gradient(scaled, self.trainable_weights)
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights, strict=True))
        return self._update_trackers(losses)

    def test_step(self, data):
        return self._update_trackers(self.compute_losses(self._images(data), training=False))

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
            "zero_thresholds": self.zero_thresholds,
            "beta": self.beta,
            "kl_warmup_steps": self.kl_warmup_steps,
            "occupied_weight": self.occupied_weight,
            "energy_weight": self.energy_weight,
            "mass_weight": self.mass_weight,
            "variational": self.variational,
            "seed": self.seed,
        }
