"""Convolutional variational autoencoder for jet images, GeV in and GeV out, decoding each event as deposits.

**Code of an event.** ``encode`` maps ``(N, S, S, C)`` GeV images to a code of ``latent_dim + C + 1`` numbers:
a Gaussian latent ``z`` (``latent_dim``) describing *where* the energy is, followed by the event's physics
summary — ``log1p(E_c / energy_scale_c)`` for each channel's total energy and ``log1p(m / mass_scale)`` for the
image jet mass (ECAL + HCAL). The summary is computed from the image, not learned, so a reconstruction has
exactly the original channel energies (exact by construction: never evidence of quality); the decoder is
conditioned on it, the way calorimeter generative models are conditioned on the incident energy.

**Encoder**: :class:`~hep_keras.data.normalization.ChannelLogScale` → zero-pad to a multiple of
``2**len(widths)`` (never resize: interpolation changes energy) → stride-2 convolutions → flatten, joined with
the summary → dense → ``z_mean``, ``z_log_var``.

**Decoder ("deposits")**: a jet image is a few dozen energy deposits on a 125×125 grid, so the decoder predicts
them as a set: ``[z, summary]`` → MLP → for each channel ``n_deposits`` positions (Δη, Δφ) in rad (clipped to
the window) and energy fractions (softmax over the deposits). The image is rendered by adding each deposit's
``E_c × fraction`` to the pixel it falls in (HCAL: to its ``hcal_tower`` × ``hcal_tower`` tower, spread evenly
over the tower's pixels, as in the data); pixels under the detector's zero-suppression threshold are dropped
and the survivors rescaled so the channel sums to ``E_c`` (a channel with no pixel left keeps its hottest one).
The number of occupied pixels is therefore learned (deposits given negligible fractions vanish), the image can
never be a blur or a halo, and HCAL keeps its tower structure. With ``variational=False`` the same backbone is a
deterministic autoencoder (:class:`~hep_keras.models.ae.JetImageAE`).

**Loss** (per event, batch mean, float32) — stated once, in :meth:`JetImageVAE.compute_losses`:

* ``emd_loss``: the energy mover's distance (rad) between the predicted deposits and the image's ``truth_deposits``
  most energetic pixels (HCAL: towers), each normalised to unit energy, summed over channels with energy;
  entropic optimal transport (log-domain Sinkhorn, ε annealed down to ``sinkhorn_epsilon`` rad, cost = ΔR).
  Gradients use the envelope theorem (transport plan and dual potential held fixed). An EMD is minimised only by
  putting the energy where it is: a degenerate image (blank, blob, halo, energy parked far away to fake a mass)
  pays for every GeV × rad it is off;
* ``kl_loss``: KL of the latent to the unit Gaussian × ``beta``, ramped linearly from 0 over
  ``kl_warmup_steps`` optimizer steps.

History: a pixel-softmax decoder trained with a cross-entropy on the energy fractions plus an image-mass term
reconstructed a smooth blob (per-event EMD 0.93× the mean-image baseline) and satisfied the mass term by parking
energy in a second blob far from the jet; adding a multi-scale EMD term and a top-K occupancy head still gave
0.99× the mean image after 10 epochs (the cross-entropy of where one energy quantum lands is minimised by a blur).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from hep_keras.data.normalization import ChannelLogScale
from hep_keras.models.base import LossModel
from hep_keras.models.blocks import conv_encoder, pad_amounts, padded_size
from hep_keras.physics import PIXEL_SIZE, pixel_coordinates

_TINY = 1e-12


@keras.saving.register_keras_serializable(package="hep_keras")
class JetImageVAE(LossModel):
    """Convolutional (variational) autoencoder of ``(N, S, S, C)`` jet images in GeV with a deposit decoder.

    Args:
        image_size: side S of the square input images in pixels (125 for the CMS images).
        channels: C, number of image channels (3: Tracks, ECAL, HCAL; the last one is decoded per tower).
        latent_dim: size of the Gaussian latent ``z`` (the code adds C + 1 physics numbers).
        widths: filters of the encoder levels (each halves the resolution).
        activation: activation of the hidden layers.
        scales, norms: per-channel constants of the input :class:`ChannelLogScale` (fit on the training split).
        energy_scales: per-channel GeV unit of the energy summary (mean channel energy of the training split).
        mass_scale: GeV unit of the mass summary (mean image mass of the training split).
        zero_thresholds: per-channel GeV below which output pixels are set to 0 (``None``: keep all).
        beta: weight of the KL term after warm-up.
        kl_warmup_steps: optimizer steps over which the KL weight rises linearly from 0 to ``beta``.
        n_deposits: deposits the decoder predicts per channel (one number for all, or one per channel).
        truth_deposits: most energetic pixels (HCAL: towers) of the input each channel's EMD is computed against.
        hidden_units: width of the decoder MLP's two hidden layers.
        sinkhorn_epsilon: final entropic regularisation of the Sinkhorn EMD (rad).
        sinkhorn_iterations: Sinkhorn iterations per loss evaluation (ε annealed geometrically from 1 rad).
        hcal_tower: HCAL tower size in pixels (5 for CMS; 1 = per pixel); must divide ``image_size``.
        variational: sample the latent (VAE) or use its mean (deterministic AE, no KL term).
        seed: seed of the latent sampling noise.

    Examples:
    ```python
    model = JetImageVAE(image_size=125, latent_dim=32, **fit_image_normalization(batches))
    code = model.encode(images_gev)        # (N, 36)
    images = model.decode(code)            # (N, 125, 125, 3) GeV
    ```
    """

    def __init__(
        self,
        image_size: int = 125,
        channels: int = 3,
        latent_dim: int = 32,
        widths: Sequence[int] = (16, 32, 64, 64),
        activation: str = "silu",
        scales: Sequence[float] = (1.0, 1.0, 1.0),
        norms: Sequence[float] = (1.0, 1.0, 1.0),
        energy_scales: Sequence[float] = (1.0, 1.0, 1.0),
        mass_scale: float = 1.0,
        zero_thresholds: Sequence[float] | None = None,
        beta: float = 1e-4,
        kl_warmup_steps: int = 0,
        n_deposits: int | Sequence[int] = (16, 24, 32),
        truth_deposits: int = 64,
        hidden_units: int = 256,
        sinkhorn_epsilon: float = 0.005,
        sinkhorn_iterations: int = 40,
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
        counts = [int(n_deposits)] * self.channels if np.isscalar(n_deposits) else [int(n) for n in n_deposits]
        if len(counts) != self.channels or min(counts) < 1:
            raise ValueError(f"n_deposits must be one positive count or one per channel, got {n_deposits}")
        self.n_deposits = counts
        self.max_deposits = max(counts)
        self.truth_deposits = int(truth_deposits)
        self.hidden_units = int(hidden_units)
        self.sinkhorn_epsilon = float(sinkhorn_epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.hcal_tower = int(hcal_tower)
        if self.hcal_tower < 1 or self.image_size % self.hcal_tower:
            raise ValueError(f"hcal_tower={hcal_tower} must be >= 1 and divide image_size={image_size}")
        self.variational = bool(variational)
        self.seed = seed
        self.rng_seed = seed or 0

        # === Layers ===
        depth = len(self.widths)
        padded = padded_size(self.image_size, depth)
        before, after = pad_amounts(self.image_size, depth)
        hidden = 4 * self.latent_dim
        self.normalization = ChannelLogScale(scales, norms, name="normalization")
        self.pad = keras.layers.ZeroPadding2D(((before, after), (before, after)), name="pad")
        self.encoder = conv_encoder((padded, padded, self.channels), self.widths, activation, name="encoder")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.encoder_dense = keras.layers.Dense(hidden, activation=activation, name="enc_dense")
        self.z_mean_dense = keras.layers.Dense(self.latent_dim, dtype="float32", name="z_mean")
        self.z_log_var_dense = (
            keras.layers.Dense(self.latent_dim, dtype="float32", name="z_log_var") if self.variational else None
        )
        self.decoder_hidden = [
            keras.layers.Dense(self.hidden_units, activation=activation, name=f"dec_hidden{i}") for i in range(2)
        ]
        self.deposit_head = keras.layers.Dense(
            self.channels * self.max_deposits * 3,
            dtype="float32",
            kernel_initializer=keras.initializers.VarianceScaling(0.1),
            name="deposits",
        )
        eta, phi = pixel_coordinates(self.image_size, self.image_size)
        self._kinematic_maps = np.stack([np.cosh(eta), np.cos(phi), np.sin(phi), np.sinh(eta)]).astype("float32")
        self._pixel_coords = np.stack([eta, phi], axis=-1).reshape(-1, 2).astype("float32")  # (S*S, 2) rad
        k = self.hcal_tower
        self._tower_coords = self._pixel_coords.reshape(self.image_size // k, k, self.image_size // k, k, 2)
        self._tower_coords = self._tower_coords.mean(axis=(1, 3)).reshape(-1, 2)  # (T*T, 2) rad

        # === Loss trackers ===
        names = ["loss", "emd_loss"] + (["kl_loss"] if self.variational else [])
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
        width = self.code_dim
        for layer in self.decoder_hidden:
            layer.build((None, width))
            width = self.hidden_units
        self.deposit_head.build((None, self.hidden_units))
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

    def decode_deposits(self, code, training=False):
        """Codes ``(N, code_dim)`` → deposit positions ``(N, C, K, 2)`` (Δη, Δφ in rad; :meth:`render` clips them
        to the window) and log energy fractions ``(N, C, K)`` (``exp`` sums to 1 per channel)."""
        h = code
        for layer in self.decoder_hidden:
            h = layer(h)
        raw = ops.reshape(ops.cast(self.deposit_head(h), "float32"), (-1, self.channels, self.max_deposits, 3))
        half = (self.image_size - 1) / 2 * PIXEL_SIZE
        # 1.1 × tanh: the window's edge pixels are reachable without saturating the tanh (render clips)
        positions = 1.1 * half * ops.tanh(raw[..., :2])
        # channels with fewer deposits: the extra ones get zero energy
        unused = np.arange(self.max_deposits)[None, :] >= np.asarray(self.n_deposits)[:, None]  # (C, K)
        logits = ops.where(unused[None], -1e9, raw[..., 2])
        return positions, ops.log_softmax(logits, axis=-1)

    def render(self, positions, fractions, energies):
        """Deposits → images ``(N, S, S, C)`` GeV: each deposit's ``energy × fraction`` added to its pixel (last
        channel: to its tower, spread evenly over the tower's pixels). ``positions`` (N, C, K, 2) rad,
        ``fractions`` (N, C, K), ``energies`` (N, C) GeV."""
        s, c, k = self.image_size, self.channels, self.hcal_tower
        index = ops.cast(ops.round(positions / PIXEL_SIZE + (s - 1) / 2), "int32")
        index = ops.clip(index, 0, s - 1)
        tower_index = (index // k) * k  # top-left pixel of the deposit's tower
        is_hcal = ops.reshape(ops.arange(c) == c - 1, (1, c, 1, 1))
        index = ops.where(is_hcal, tower_index, index) if k > 1 else index
        n = ops.shape(positions)[0]
        flat = (
            ops.reshape(ops.arange(n), (-1, 1, 1)) * (s * s * c)
            + index[..., 0] * (s * c)
            + index[..., 1] * c
            + ops.reshape(ops.arange(c), (1, c, 1))
        )
        values = fractions * energies[:, :, None]
        images = tf.math.unsorted_segment_sum(ops.reshape(values, (-1,)), ops.reshape(flat, (-1,)), n * s * s * c)
        images = ops.reshape(images, (-1, s, s, c))
        if k == 1:
            return images
        t = s // k
        hcal = ops.reshape(images[..., -1], (-1, t, k, t, k))
        hcal = ops.broadcast_to(ops.sum(hcal, axis=(2, 4), keepdims=True) / (k * k), ops.shape(hcal))
        return ops.concatenate([images[..., :-1], ops.reshape(hcal, (-1, s, s, 1))], axis=-1)

    def decode(self, code):
        """Codes ``(N, code_dim)`` → images ``(N, S, S, C)`` in GeV, zero-suppressed, channel sums = E_c."""
        positions, log_fractions = self.decode_deposits(code)
        energy = self.summary_energies(code[:, self.latent_dim :])
        images = self.render(positions, ops.exp(log_fractions), energy)
        energy = energy[:, None, None, :]
        if self.zero_thresholds is not None:
            thresholds = ops.convert_to_tensor(self.zero_thresholds, "float32")
            kept = ops.where(images >= thresholds, images, ops.zeros_like(images))
            kept_sum = ops.sum(kept, axis=(1, 2), keepdims=True)
            hottest = ops.cast(images >= ops.max(images, axis=(1, 2), keepdims=True), "float32")
            images = ops.where(kept_sum > 0, kept, hottest * images)
        return images / ops.maximum(ops.sum(images, axis=(1, 2), keepdims=True), _TINY) * energy

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

    def truth_sets(self, images):
        """The ``truth_deposits`` most energetic pixels of each channel (last channel: towers): positions
        ``(N, C, M, 2)`` rad and weights ``(N, C, M)`` normalised to the channel's energy (zeros when empty)."""
        s, c, k = self.image_size, self.channels, self.hcal_tower
        flat = ops.transpose(ops.reshape(images, (-1, s * s, c)), (0, 2, 1))  # (N, C, P)
        m = min(self.truth_deposits, (s // k) ** 2 if k > 1 else s * s)  # the same set size in every channel
        sets = []
        for ch in range(c):
            values, coords = flat[:, ch], self._pixel_coords
            if ch == c - 1 and k > 1:
                t = s // k
                values = ops.reshape(ops.sum(ops.reshape(images[..., ch], (-1, t, k, t, k)), axis=(2, 4)), (-1, t * t))
                coords = self._tower_coords
            top, idx = ops.top_k(values, m)
            sets.append((ops.take(ops.convert_to_tensor(coords), idx, axis=0), top))
        positions = ops.stack([p for p, _ in sets], axis=1)
        weights = ops.stack([w for _, w in sets], axis=1)
        return positions, weights / ops.maximum(ops.sum(flat, axis=-1, keepdims=True), _TINY)

    def sinkhorn_emd(self, x, a, y, b):
        """Entropic EMD (rad) between weighted point sets ``x (..., K, 2)``, ``a (..., K)`` and ``y (..., M, 2)``,
        ``b (..., M)`` (weights summing to 1; zero weights allowed in ``b``). Log-domain Sinkhorn with ε annealed
        geometrically from 1 rad to ``sinkhorn_epsilon``; the value is the transport cost of the final plan.
        The plan and the dual potential are held fixed for the gradient (envelope theorem): d/dx through the
        cost, d/da through the potential."""
        cost = ops.sqrt(ops.sum(ops.square(x[..., :, None, :] - y[..., None, :, :]), axis=-1) + 1e-10)
        log_a, log_b = ops.log(ops.maximum(a, 1e-30)), ops.log(ops.maximum(b, 1e-30))
        c_fixed = ops.stop_gradient(cost)
        la, lb = ops.stop_gradient(log_a), ops.stop_gradient(log_b)
        f = ops.zeros_like(a)
        g = ops.zeros_like(b)
        n = max(self.sinkhorn_iterations, 1)
        for i in range(n):
            eps = float(max(self.sinkhorn_epsilon, 1.0 * (self.sinkhorn_epsilon / 1.0) ** (i / max(n - 5, 1))))
            f = -eps * ops.logsumexp(lb[..., None, :] + (g[..., None, :] - c_fixed) / eps, axis=-1)
            g = -eps * ops.logsumexp(la[..., :, None] + (f[..., :, None] - c_fixed) / eps, axis=-2)
        eps = self.sinkhorn_epsilon
        plan = ops.exp((f[..., :, None] + g[..., None, :] - c_fixed) / eps + la[..., :, None] + lb[..., None, :])
        plan = ops.stop_gradient(plan)
        f = ops.stop_gradient(f - ops.sum(f * a, axis=-1, keepdims=True))
        return (
            ops.sum(plan * cost, axis=(-2, -1)) + ops.sum(f * a, axis=-1) - ops.stop_gradient(ops.sum(f * a, axis=-1))
        )

    def compute_losses(self, images, training=False):
        """Loss terms for a batch of GeV images; dict of float32 scalars (``loss`` is the weighted total).

        ``loss = emd_loss (+ kl_weight · kl_loss)``; ``emd_loss`` = Σ over channels with energy of the Sinkhorn
        EMD (rad) between predicted deposits and the image's most energetic pixels/towers, batch mean.
        """
        images = ops.maximum(ops.cast(images, "float32"), 0.0)
        z_mean, z_log_var, summary = self.encode_latent(images, training=training)
        z = self.sample_latent(z_mean, z_log_var) if training else z_mean
        positions, log_fractions = self.decode_deposits(ops.concatenate([z, summary], axis=-1), training=training)
        true_positions, true_weights = self.truth_sets(images)
        has_energy = ops.cast(ops.sum(true_weights, axis=-1) > 0, "float32")  # (N, C)
        # an empty channel gets a uniform dummy target (its term is masked out) so Sinkhorn stays finite
        true_weights = ops.where(has_energy[..., None] > 0, true_weights, ops.ones_like(true_weights))
        true_weights = true_weights / ops.sum(true_weights, axis=-1, keepdims=True)
        emd = self.sinkhorn_emd(positions, ops.exp(log_fractions), true_positions, true_weights)
        emd = ops.mean(ops.sum(has_energy * emd, axis=-1))
        losses = {"emd_loss": emd}
        total = emd
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
            "n_deposits": self.n_deposits,
            "truth_deposits": self.truth_deposits,
            "hidden_units": self.hidden_units,
            "sinkhorn_epsilon": self.sinkhorn_epsilon,
            "sinkhorn_iterations": self.sinkhorn_iterations,
            "hcal_tower": self.hcal_tower,
            "variational": self.variational,
            "seed": self.seed,
        }
