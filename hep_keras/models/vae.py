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

**Decoder ("energy flow")**: ``[z, summary]`` → dense → transposed convolutions → per-channel softmax = energy
*fractions* ``p_c``; image = ``E_c · p_c``, cropped back to S×S. HCAL is decoded on its tower grid
(``hcal_tower`` × ``hcal_tower`` pixels per tower, 5 for CMS: a 25×25 softmax, each tower's fraction spread
evenly over its pixels, as in the data). A count head predicts, from the code, how many pixels of each channel
are above the detector's zero-suppression threshold; the decoder keeps that many of the most energetic pixels
(top-K, whole HCAL towers), drops those still under the threshold, and rescales the survivors so each channel
sums to ``E_c`` (a channel with no pixel left keeps its hottest pixel). With ``variational=False`` the same
backbone is a deterministic autoencoder (:class:`~hep_keras.models.ae.JetImageAE`).

Why: a jet image is an energy distribution over a few hundred of 15,625 pixels per channel. Pixel-wise losses
are minimised by (nearly) blank images; fractions that sum to 1 cannot be blank, and the energy is carried
exactly (so energy responses are exact by construction and say nothing about the model). Loss (per event,
batch mean, float32) — stated once, in :meth:`JetImageVAE.compute_losses`:

* ``shape_loss``: KL divergence of the predicted from the true energy fractions, summed over channels with
  energy (a cross-entropy on where the energy goes; HCAL per tower);
* ``emd_loss``: ``emd_weight`` × a multi-scale energy-flow distance (rad) between predicted and true shapes of
  the Tracks and of the calorimeter (ECAL + HCAL): the L1 distance of the two shapes summed in 2×2, 4×4, …
  blocks, weighted by the block size — the quadtree upper bound of the energy mover's distance (Indyk &
  Thaper 2003). Unlike the cross-entropy it grows with *how far* energy is misplaced, so parking energy
  anywhere it does not belong costs in proportion to the distance;
* ``count_loss``: ``count_weight`` × squared error of ``log1p`` of the per-channel occupied-pixel counts;
* ``kl_loss``: KL of the latent to the unit Gaussian × ``beta``, ramped linearly from 0 over
  ``kl_warmup_steps`` optimizer steps. The shape loss is the likelihood of *one* energy quantum, so the
  ELBO-like ``beta = 1`` over-regularises (the latent collapses to a few nats); the default is 0.01.

An earlier version added an image-mass term; the decoder satisfied it by parking energy in a second blob far
from the jet (a degenerate image can satisfy a mass constraint). Nothing in the loss above rewards that.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from hep_keras.data.normalization import ChannelLogScale
from hep_keras.evaluation.observables import PIXEL_SIZE, pixel_coordinates
from hep_keras.models.blocks import conv_decoder, conv_encoder, pad_amounts, padded_size

_TINY = 1e-12


@keras.saving.register_keras_serializable(package="hep_keras")
class JetImageVAE(keras.Model):
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
        zero_thresholds: per-channel GeV below which output pixels are set to 0 (``None``: keep all); also the
            thresholds at which the count head counts occupied pixels.
        beta: weight of the KL term after warm-up.
        kl_warmup_steps: optimizer steps over which the KL weight rises linearly from 0 to ``beta``.
        emd_weight: weight of the multi-scale energy-flow (quadtree EMD) term, per rad.
        count_weight: weight of the occupied-pixel count term.
        hcal_tower: HCAL tower size in pixels (5 for CMS; 1 decodes HCAL per pixel); must divide ``image_size``.
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
        emd_weight: float = 10.0,
        count_weight: float = 1.0,
        hcal_tower: int = 5,
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
        self.emd_weight = float(emd_weight)
        self.count_weight = float(count_weight)
        self.hcal_tower = int(hcal_tower)
        if self.hcal_tower < 1 or self.image_size % self.hcal_tower:
            raise ValueError(f"hcal_tower={hcal_tower} must be >= 1 and divide image_size={image_size}")
        self.variational = bool(variational)
        self.seed = seed

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
        self.count_dense = keras.layers.Dense(hidden, activation=activation, name="count_dense")
        self.count_head = keras.layers.Dense(self.channels, dtype="float32", name="count_head")
        self.seed_generator = keras.random.SeedGenerator(seed)
        eta, phi = pixel_coordinates(self.image_size, self.image_size)
        self._kinematic_maps = np.stack([np.cosh(eta), np.cos(phi), np.sin(phi), np.sinh(eta)]).astype("float32")

        # === Loss trackers ===
        names = ["loss", "shape_loss", "emd_loss", "count_loss"] + (["kl_loss"] if self.variational else [])
        self.trackers = [keras.metrics.Mean(name=name) for name in names]
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
        self.count_dense.build((None, self.code_dim))
        self.count_head.build((None, 4 * self.latent_dim))
        self.built = True

    @property
    def metrics(self):
        return self.trackers

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

        Same definition as :func:`hep_keras.evaluation.observables.image_jet_kinematics`.
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
        """Codes ``(N, code_dim)`` → log energy fractions ``(N, S, S, C)`` (``exp`` sums to 1 per channel).

        The last channel (HCAL) is a softmax over towers of ``hcal_tower``² pixels, spread evenly over them.
        """
        s, c = self.image_size, self.channels
        logits = self.crop(self.decoder(self.reshape(self.decoder_dense(code)), training=training))
        logits = ops.cast(logits, "float32")
        flat = ops.reshape(logits, (-1, s * s, c))
        log_fractions = ops.reshape(ops.log_softmax(flat, axis=1), (-1, s, s, c))
        if self.hcal_tower == 1:
            return log_fractions
        t, k = s // self.hcal_tower, self.hcal_tower
        towers = ops.mean(ops.reshape(logits[..., -1], (-1, t, k, t, k)), axis=(2, 4))  # (N, t, t)
        tower_log = ops.reshape(ops.log_softmax(ops.reshape(towers, (-1, t * t)), axis=1), (-1, t, 1, t, 1))
        hcal = ops.reshape(ops.broadcast_to(tower_log, (ops.shape(towers)[0], t, k, t, k)), (-1, s, s))
        hcal = hcal - float(np.log(k * k))
        return ops.concatenate([log_fractions[..., :-1], hcal[..., None]], axis=-1)

    def log_counts(self, code):
        """Predicted ``log1p`` of the number of pixels above the zero-suppression threshold per channel (N, C)."""
        return self.count_head(self.count_dense(code))

    def occupied_counts(self, images):
        """Pixels at or above the zero-suppression thresholds (> 0 without thresholds) per channel, float (N, C)."""
        images = ops.cast(images, "float32")
        if self.zero_thresholds is None:
            return ops.sum(ops.cast(images > 0, "float32"), axis=(1, 2))
        thresholds = ops.convert_to_tensor(self.zero_thresholds, "float32")
        return ops.sum(ops.cast((images >= thresholds) & (images > 0), "float32"), axis=(1, 2))

    def decode(self, code):
        """Codes ``(N, code_dim)`` → images ``(N, S, S, C)`` in GeV: top-K pixels per channel (K from the count
        head), zero-suppressed, channel sums = E_c."""
        fractions = ops.exp(self.decode_log_fractions(code))
        energy = self.summary_energies(code[:, self.latent_dim :])[:, None, None, :]
        n_pixels = self.image_size * self.image_size
        counts = ops.clip(ops.round(ops.expm1(self.log_counts(code))), 1.0, float(n_pixels))  # (N, C)
        flat = ops.reshape(fractions, (-1, n_pixels, self.channels))
        ordered = -ops.sort(-ops.transpose(flat, (0, 2, 1)), axis=-1)  # (N, C, P) descending
        kth = ops.take_along_axis(ordered, ops.cast(counts, "int32")[..., None] - 1, axis=-1)  # (N, C, 1)
        kept = ops.where(fractions >= ops.transpose(kth, (0, 2, 1))[:, None], fractions, ops.zeros_like(fractions))
        if self.zero_thresholds is not None:
            thresholds = ops.convert_to_tensor(self.zero_thresholds, "float32")
            scaled = kept * energy / ops.maximum(ops.sum(kept, axis=(1, 2), keepdims=True), _TINY)
            kept = ops.where(scaled >= thresholds, kept, ops.zeros_like(kept))
        kept_sum = ops.sum(kept, axis=(1, 2), keepdims=True)
        hottest = ops.cast(fractions >= ops.max(fractions, axis=(1, 2), keepdims=True), "float32")
        kept = ops.where(kept_sum > 0, kept, hottest * fractions)
        return kept / ops.maximum(ops.sum(kept, axis=(1, 2), keepdims=True), _TINY) * energy

    def call(self, images, training=False):
        """Deterministic reconstruction (latent mean) of GeV images, in GeV."""
        return self.decode(self.encode(images))

    def sample_latent(self, z_mean, z_log_var):
        """Reparameterised draw ``z = mean + exp(log_var / 2) * eps`` (the mean itself when not variational)."""
        if not self.variational:
            return z_mean
        eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
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

    def multiscale_emd(self, p, q):
        """Quadtree bound of the EMD (rad) between unit-sum maps ``p``, ``q`` ``(N, S, S)``: per event, the sum over
        block sizes b = 1, 2, 4, … of ``b · PIXEL_SIZE · ½ Σ |block sums of p − q|`` (S zero-padded to 2^L)."""
        size = 2 ** int(np.ceil(np.log2(self.image_size)))
        pad = size - self.image_size
        d = ops.pad(p - q, ((0, 0), (0, pad), (0, pad)))
        total = ops.zeros_like(d[:, 0, 0])
        block = 1
        while size > 1:
            total = total + 0.5 * block * PIXEL_SIZE * ops.sum(ops.abs(d), axis=(1, 2))
            size //= 2
            block *= 2
            d = ops.sum(ops.reshape(d, (-1, size, 2, size, 2)), axis=(2, 4))
        return total

    def compute_losses(self, images, training=False):
        """Loss terms for a batch of GeV images; dict of float32 scalars (``loss`` is the weighted total).

        ``loss = shape_loss + emd_weight · emd_loss + count_weight · count_loss (+ kl_weight · kl_loss)``.
        """
        images = ops.maximum(ops.cast(images, "float32"), 0.0)
        z_mean, z_log_var, summary = self.encode_latent(images, training=training)
        z = self.sample_latent(z_mean, z_log_var) if training else z_mean
        code = ops.concatenate([z, summary], axis=-1)
        log_fractions = self.decode_log_fractions(code, training=training)

        totals = ops.sum(images, axis=(1, 2))  # (N, C)
        has_energy = ops.cast(totals > 0, "float32")
        true_fractions = images / ops.maximum(totals, _TINY)[:, None, None, :]
        cross = -ops.sum(true_fractions * log_fractions, axis=(1, 2))
        entropy = -ops.sum(true_fractions * ops.log(ops.maximum(true_fractions, _TINY)), axis=(1, 2))
        shape = ops.mean(ops.sum(has_energy * (cross - entropy), axis=-1))

        fractions = ops.exp(log_fractions)
        calo_e = totals[:, 1:3]
        calo_sum = ops.maximum(ops.sum(calo_e, axis=-1), _TINY)[:, None, None]
        calo_pred = (
            fractions[..., 1] * calo_e[:, None, None, 0] + fractions[..., 2] * calo_e[:, None, None, 1]
        ) / calo_sum
        calo_true = (images[..., 1] + images[..., 2]) / calo_sum
        emd = self.multiscale_emd(fractions[..., 0], true_fractions[..., 0]) * has_energy[:, 0]
        emd = ops.mean(emd + self.multiscale_emd(calo_pred, calo_true))

        counts = ops.mean(ops.sum(ops.square(self.log_counts(code) - ops.log1p(self.occupied_counts(images))), axis=-1))

        losses = {"shape_loss": shape, "emd_loss": emd, "count_loss": counts}
        total = shape + self.emd_weight * emd + self.count_weight * counts
        if self.variational:
            kl = ops.mean(-0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1))
            losses["kl_loss"] = kl
            total = total + self.kl_weight() * kl
        losses["loss"] = total
        return losses

    def _update_trackers(self, losses):
        for tracker in self.trackers:
            tracker.update_state(losses[tracker.name])
        return {tracker.name: tracker.result() for tracker in self.trackers}

    @staticmethod
    def _images(data):
        return data[0] if isinstance(data, tuple | list) else data

    def train_step(self, data):
        images = self._images(data)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            losses = self.compute_losses(images, training=True)
            # gradients are summed over replicas: divide so a step uses the global-batch mean
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
            "energy_scales": self.energy_scales,
            "mass_scale": self.mass_scale,
            "zero_thresholds": self.zero_thresholds,
            "beta": self.beta,
            "kl_warmup_steps": self.kl_warmup_steps,
            "emd_weight": self.emd_weight,
            "count_weight": self.count_weight,
            "hcal_tower": self.hcal_tower,
            "variational": self.variational,
            "seed": self.seed,
        }
