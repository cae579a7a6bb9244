"""Conditional denoising-diffusion model for jet images (GeV in, GeV out).

:class:`JetDiffusion` follows keras.io ``examples/generative/ddim.py`` (Keras 3): a subclassed model with its own
``train_step`` / ``test_step``, loss trackers created in ``__init__`` and listed in ``metrics``, and an EMA copy
of the denoiser used for sampling, test loss and reconstruction. Unlike the example it has no module-global
hyperparameters: every shape comes from the constructor or ``ops.shape(x)``.

Pipeline inside the model (all invertible, so the exported graph takes and returns GeV):

1. :class:`JetIntensityTransform` — per channel an empty pixel maps to ``-1`` and a hit of ``x`` GeV to
   ``-1 + g + (2 - g) · log1p(x / s_c) / m_c`` with ``s_c`` (GeV) the median non-zero pixel of the training
   split, ``m_c = log1p(max_c / s_c)`` and the *occupancy gap* ``g`` (0.5): hits live in ``[-1 + g, 1]``, so
   "is there a hit" and "how much energy" are both large signals for the denoiser. Its inverse is exact;
   generated / reconstructed pixels are hits when they land above the middle of the gap, and a hit is never
   below the channel's detector threshold ``z_c`` (the 0.1st percentile of non-zero training pixels).
2. The patch grid (:mod:`hep_keras.models.patches`, ``patch`` p > 1): every p × p block of pixels becomes the
   channels of one grid cell (space-to-depth), and with ``hcal_towers`` HCAL enters as one value per cell, its
   tower (the data's HCAL towers are 5 × 5 crystals, upsampled). The full 125 × 125 × 3 image becomes a
   25 × 25 × 51 grid (p = 5): the U-Net works at tower resolution while every output pixel stays its own
   channel, so nothing is resized or smoothed and the round trip is exact. ``patch = 1`` is the pixel grid.
   With ``slots`` K > 0 (the recipe's default, 2) the sparse channels enter instead as the K hottest hits of each
   block, three dense numbers each (:mod:`hep_keras.models.hit_slots`: transformed energy, row, column), so a
   cell holds 13 numbers instead of 51; an empty slot's position is left out of the loss. The network does not
   learn where a hit sits in its block; with ``position_counts`` (the recipe's default) x̂0 of the positions is
   the exact posterior mean under the training events' distribution of each slot's pixel per block instead
   (:mod:`hep_keras.models.slot_positions`). The grid is padded with ``-1`` (0 GeV) to a multiple of
   ``2 ** (len(widths) - 1)`` (25 → 28); outputs are cropped back and the padding is excluded from the loss,
   which weights a tower by its p² pixels so that it is the per-pixel MSE (with slots: every slot number 1, a
   tower a third of the cell).
   While sampling, the padding's predicted clean value is held at -1 (:meth:`JetDiffusion.denoise`).
3. The variance-preserving forward process ``x_t = α(t) x_0 + σ(t) ε``, ``α² + σ² = 1``, ``t ∈ [0, 1]`` with
   :func:`diffusion_schedule` (``"cosine"``: α = cos(t · arccos(α_min)); ``"linear"``: the DDPM linear β from
   1e-4 to 0.02 over 1000 steps in continuous time). The denoiser (:func:`hep_keras.models.unet.build_unet`)
   predicts ε (``prediction="epsilon"``) or v = α ε − σ x_0 (``prediction="v"``).
4. Label conditioning (0 = quark, 1 = gluon) with label dropout to the null label 2 during training, so that
   classifier-free guidance ``out = out_null + w (out_label - out_null)`` works at sampling time (``w = 1`` is
   plain conditional sampling and costs one network evaluation per step; any other ``w`` costs two).
5. Optional energy conditioning (``energy_quantiles``), as calorimeter generators condition on the incident
   energy: the denoiser also sees the event's total energy ``E`` (GeV, all pixels and channels) as
   ``(log E - centre) / width``. Training takes ``E`` from the event itself; reconstruction from the image
   being reconstructed; generation draws it per event from the training split's ``log E`` quantiles of the
   event's class (seeded, linear interpolation between quantiles), or takes it from the caller. The
   generated total-energy spectrum then follows the training split's by construction; how closely each
   event's channels add up to its condition, and how they share it, is what the model learns. With
   ``energy_fractions`` the model goes one step further, like CaloChallenge generators that model voxel
   energies over the incident energy: it diffuses each pixel's *fraction* of the event's energy (the intensity
   transform is fitted on fractions), and a generated event is scaled so that its pixels add up to the
   condition exactly (then the detector thresholds, in GeV, are applied): each event's total energy holds by
   construction, its split between channels and pixels does not.
6. Optional multiplicity conditioning (``multiplicities``), as point-cloud jet generators (MPGAN, EPiC-GAN,
   PC-JeDi) draw the number of constituents first: the denoiser also sees each channel's number of hit pixels
   ``n_c`` as ``(log(1 + n_c) - centre_c) / width_c``. Training and reconstruction take the counts from the
   event; generation takes them from a training event of the same class at the same rank of total energy
   (:func:`fit_multiplicities`), so the drawn (energy, Tracks, ECAL, HCAL counts) carry the training events'
   correlations. Without it the network learns each channel's count from the energy alone and the channels'
   counts come out nearly uncorrelated (docs/diffusion.md).

Sampling is DDIM (``eta = 0`` deterministic, ``eta = 1`` equals ancestral DDPM sampling with the posterior
variance) on a uniform grid of ``steps`` times; noise is drawn with stateless seeds ``(seed, step)`` so the
same seed gives identical events. With a ``calibration`` (fitted after training by :meth:`JetDiffusion.
fit_calibration`, :mod:`hep_keras.models.quantile_calibration`) the sampled energy numbers go through a
hurdle quantile map per channel, ring of the cell grid and bin of event energy (the event's energy
condition) onto the training distribution before decoding (the training hit rate of the ring, then its hit
spectrum), and optionally each event's number of hits per channel onto the training events' counts (only the
hit decision moves).
Reconstruction is deterministic DDIM inversion (image → noise → image) or partial noising to ``t = strength``
followed by denoising (SDEdit); it is never calibrated.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from hep_keras.models.base import LossModel, stateless_normal, stateless_uniform
from hep_keras.models.hit_slots import fit_overflow, from_slots, to_slots
from hep_keras.models.patches import from_patches, grid_size, patch_channels, to_patches
from hep_keras.models.quantile_calibration import (
    DEFAULT_RINGS,
    check_quantile_map,
    fit_quantile_map,
    hurdle_boundary,
    quantile_map,
    ring_of_cells,
)
from hep_keras.models.slot_positions import fit_position_counts, position_log_prior, posterior_mean_positions
from hep_keras.models.unet import build_unet

SCHEDULES = ("cosine", "linear")
PREDICTIONS = ("epsilon", "v")
NULL_LABEL = 2
#: the label groups of a per-class calibration, in the order of its bins: the events of label 0, of label 1, and
#: all events (for unconditional events, label NULL_LABEL)
CALIBRATION_CLASSES = ("quark", "gluon", "all")
#: width (normalised units) of the sigmoid step of the soft hit count that ranks events for the hit-count map: a
#: hard count plus fractions for values within a few hundredths of their cell's hit boundary (breaks the ties of
#: integer counts, so that the map spreads events that the network gives the same count)
HIT_COUNT_SOFTNESS = 0.01
#: range the predicted clean image is clipped to while sampling (normalised units; -1 = 0 GeV). Not clipped at
#: -1: that cuts only the low side of the denoiser's scatter around an empty pixel or slot, biases every step's
#: x̂0 upward and left generated empty slots near -0.8 (docs/diffusion.md: CNN AUC 0.71 → 0.65 without it)
X0_CLIP = (-1.5, 1.5)


# ---------------------------------------------------------------------------------------------------------
# noise schedule
# ---------------------------------------------------------------------------------------------------------
def diffusion_schedule(
    t,
    kind: str = "cosine",
    min_signal_rate: float = 0.02,
    beta_min: float = 1e-4,
    beta_max: float = 0.02,
    num_timesteps: int = 1000,
):
    """Noise and signal rates ``(σ(t), α(t))`` of the variance-preserving process, pure ``keras.ops``.

    Args:
        t: diffusion times in [0, 1], any shape.
        kind: ``"cosine"`` — α = cos(t · arccos(min_signal_rate)), so α(0) = 1, α(1) = ``min_signal_rate``;
            ``"linear"`` — ᾱ(t) = exp(-(β_min T t + ½ (β_max - β_min) T t²)), the continuous-time limit of the
            DDPM linear β schedule with T = ``num_timesteps`` (α(0) = 1, α(1)² ≈ 4.3e-5 for the defaults).
    Returns:
        ``(noise_rates, signal_rates)`` with the shape of ``t``; ``noise² + signal² = 1``, σ increasing in t.
    """
    t = ops.cast(t, "float32")
    if kind == "cosine":
        angles = t * math.acos(min_signal_rate)
        return ops.sin(angles), ops.cos(angles)
    if kind == "linear":
        integral = beta_min * num_timesteps * t + 0.5 * (beta_max - beta_min) * num_timesteps * ops.square(t)
        alpha_bar = ops.exp(-integral)
        return ops.sqrt(1.0 - alpha_bar), ops.sqrt(alpha_bar)
    raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")


def forward_diffusion(images, noises, t, kind: str = "cosine", min_signal_rate: float = 0.02):
    """Closed-form sample of q(x_t | x_0): ``α(t) x_0 + σ(t) ε`` for images ``(N, H, W, C)``, times ``(N,)``."""
    noise_rates, signal_rates = diffusion_schedule(ops.reshape(t, (-1, 1, 1, 1)), kind, min_signal_rate)
    return signal_rates * images + noise_rates * noises


def _stateless_normal(shape, seed, counter):
    """Standard normal noise from the stateless seed pair ``(seed, counter)`` (same pair → same numbers)."""
    pair = tf.stack([tf.cast(seed, tf.int64), tf.cast(counter, tf.int64)])
    return stateless_normal(shape, pair)  # the same numbers with and without XLA


# ---------------------------------------------------------------------------------------------------------
# intensity transform
# ---------------------------------------------------------------------------------------------------------
def fit_intensity_transform(images: np.ndarray, zero_quantile: float = 0.1) -> dict[str, list[float]]:
    """Fit :class:`JetIntensityTransform` parameters on training images ``(N, H, W, C)`` in GeV.

    Returns ``{"scales": s_c, "log_max": m_c, "thresholds": z_c}`` per channel: ``s_c`` the median non-zero
    pixel (GeV), ``m_c = log1p(max / s_c)`` and ``z_c`` the ``zero_quantile``-th percentile of the non-zero
    pixels (GeV), i.e. the detector's zero-suppression threshold (the default 0.1 % is robust to a few
    stray sub-threshold pixels). A channel without any non-zero pixel gets ``s = 1, m = 1, z = 0``.
    """
    scales, log_max, thresholds = [], [], []
    for c in range(images.shape[-1]):
        values = images[..., c]
        values = values[values > 0]
        if values.size == 0:
            scales.append(1.0), log_max.append(1.0), thresholds.append(0.0)
            continue
        s = float(np.median(values))
        scales.append(s)
        log_max.append(float(np.log1p(values.max() / s)))
        thresholds.append(float(np.percentile(values, zero_quantile)))
    return {"scales": scales, "log_max": log_max, "thresholds": thresholds}


def event_energy(images):
    """Total energy (N,) GeV of images ``(N, H, W, C)`` GeV: every pixel of every channel."""
    return ops.sum(ops.cast(images, "float32"), axis=(1, 2, 3))


def fit_energy_quantiles(images: np.ndarray, labels: np.ndarray, n_quantiles: int = 65) -> list[list[float]]:
    """``log(E / GeV)`` of the total energy of training images ``(N, H, W, C)`` GeV at ``n_quantiles`` evenly
    spaced probabilities from 0 to 1, for quark (label 0) and gluon (label 1) events: the
    ``energy_quantiles`` of :class:`JetDiffusion`. A class without events takes the other's quantiles."""
    log_e = np.log(np.maximum(np.asarray(event_energy(images), np.float64), 1e-3))
    labels = np.asarray(labels).ravel().astype(int)
    probabilities = np.linspace(0.0, 1.0, n_quantiles)
    rows = [np.quantile(log_e[labels == c], probabilities) if np.any(labels == c) else None for c in (0, 1)]
    if rows[0] is None and rows[1] is None:
        raise ValueError("fit_energy_quantiles needs at least one event")
    rows = [row if row is not None else next(r for r in rows if r is not None) for row in rows]
    return [[float(v) for v in row] for row in rows]


def hit_pixel_counts(images):
    """Number of hit pixels (> 0 GeV) per channel ``(N, C)`` float32 of images ``(N, H, W, C)`` GeV."""
    return ops.sum(ops.cast(ops.convert_to_tensor(images) > 0, "float32"), axis=(1, 2))


def fit_multiplicities(
    images: np.ndarray, labels: np.ndarray, rows: int | None = None, counts: np.ndarray | None = None
) -> list[list[list[int]]]:
    """The ``multiplicities`` of :class:`JetDiffusion`: for quark (label 0), gluon (label 1) and all events, the
    hit pixels per channel ``(rows, C)`` of ``rows`` training events evenly spaced in the class's ranking by
    total energy (row ``i`` is the event at rank ``i / (rows - 1)``), from images ``(N, H, W, C)`` GeV. ``rows``
    None: as many as the larger class has events, so every training event is a row of its class's table (a
    subsample of the events is a noisier table: 256 events per class put the mean ECAL count ±0.8 pixels off
    the class's). A class without events takes the rows of all events. ``counts`` (N, C): other numbers of the
    same events to tabulate in the same rows (e.g. :meth:`JetDiffusion.hit_cells`) instead of the hit pixels."""
    images = np.asarray(images)
    labels = np.asarray(labels).ravel().astype(int)
    if len(images) == 0:
        raise ValueError("fit_multiplicities needs at least one event")
    if rows is None:
        rows = max(2, int(np.bincount(labels, minlength=2)[:2].max()))
    if rows < 2:
        raise ValueError(f"fit_multiplicities needs rows >= 2, got {rows}")
    counts = np.asarray(hit_pixel_counts(images) if counts is None else counts).astype(int)  # (N, C)
    if counts.shape[0] != len(images):
        raise ValueError(f"fit_multiplicities needs one row of counts per event, got {counts.shape} for {len(images)}")
    energy = np.asarray(event_energy(images))

    def ranked(mask):
        order = np.flatnonzero(mask)[np.argsort(energy[mask], kind="stable")]
        return counts[order[np.round(np.linspace(0, len(order) - 1, rows)).astype(int)]].tolist()

    pooled = ranked(np.ones(len(labels), bool))
    return [ranked(labels == c) if np.any(labels == c) else pooled for c in (0, 1)] + [pooled]


def _multiplicity_table(multiplicities, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(table (3, R, C) float32 of log(1 + n), centre (C,), width (C,))`` from ``multiplicities``; centre and
    width are the median and half the 16–84 % range of the pooled rows (the standardisation of the condition)."""
    table = np.asarray(multiplicities, np.float64)
    if table.ndim != 3 or table.shape[0] != 3 or table.shape[1] < 2 or table.shape[2] != channels:
        raise ValueError(
            f"multiplicities needs quark, gluon and pooled rows of {channels} hit counts each (at least 2 rows), "
            f"got shape {table.shape}"
        )
    if not np.all(np.isfinite(table)) or np.any(table < 0):
        raise ValueError("multiplicities must be finite hit counts >= 0")
    table = np.log1p(table)
    low, centre, high = np.quantile(table[2], [0.16, 0.5, 0.84], axis=0)
    return table.astype("float32"), centre.astype("float32"), np.maximum((high - low) / 2, 1e-3).astype("float32")


def _energy_table(quantiles) -> tuple[np.ndarray, float, float]:
    """``(table (3, M) float32 of log E: quark, gluon, both pooled; centre; width)`` from ``energy_quantiles``.

    The pooled row is the quantile function of the equal-weight mixture of the two classes; ``centre`` its
    median and ``width`` half its 16–84 % range (the standardisation of the condition)."""
    quark, gluon = (np.asarray(row, np.float64) for row in quantiles)
    if quark.shape != gluon.shape or quark.ndim != 1 or len(quark) < 2:
        raise ValueError("energy_quantiles needs two equally long lists of at least 2 quantiles (quark, gluon)")
    if np.any(np.diff(quark) < 0) or np.any(np.diff(gluon) < 0) or not np.all(np.isfinite([quark, gluon])):
        raise ValueError("energy_quantiles must be finite and increasing")
    probabilities = np.linspace(0.0, 1.0, len(quark))
    pooled = np.interp(probabilities, np.linspace(0.0, 1.0, 2 * len(quark)), np.sort(np.concatenate([quark, gluon])))
    centre = float(np.interp(0.5, probabilities, pooled))
    width = max(float(np.interp(0.84, probabilities, pooled) - np.interp(0.16, probabilities, pooled)) / 2, 1e-3)
    return np.stack([quark, gluon, pooled]).astype("float32"), centre, width


@keras.saving.register_keras_serializable(package="hep_keras")
class JetIntensityTransform(layers.Layer):
    """Per-channel GeV ↔ [-1, 1] map with an *occupancy gap*, exact on every image with x ≥ 0.

    ``call(x)``: (..., C) GeV → ``-1`` for an empty pixel and ``-1 + gap + (2 - gap) · log1p(x / s_c) / m_c``
    for a hit, so hits live in ``[-1 + gap, 1]`` and empty pixels sit ``gap`` below the softest hit. Without
    the gap a 0.1 GeV ECAL hit would be 0.02 above an empty pixel and any wobble of the denoiser around -1
    would become a hit. ``inverse(y)``: the exact inverse on ``[-1, -1 + gap] ∪ [-1 + gap, ∞)`` (everything
    below ``-1 + gap`` is 0 GeV). ``to_energy(y)``: the decision used for generated / reconstructed images —
    a pixel is a hit when ``y ≥ -1 + gap / 2`` (the middle of the gap), with energy ``max(inverse(y), z_c)``
    (a hit is never below the detector threshold ``z_c``, GeV); otherwise it is 0.
    """

    def __init__(self, scales, log_max, thresholds=None, gap: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.scales = [float(s) for s in scales]
        self.log_max = [float(m) for m in log_max]
        self.thresholds = [float(z) for z in (thresholds or [0.0] * len(self.scales))]
        self.gap = float(gap)
        if not (len(self.scales) == len(self.log_max) == len(self.thresholds)):
            raise ValueError("scales, log_max and thresholds need one value per channel")
        if min(self.scales) <= 0 or min(self.log_max) <= 0:
            raise ValueError("scales and log_max must be > 0")
        if not 0 < self.gap < 2:
            raise ValueError(f"gap must be in (0, 2), got {gap}")

    def _param(self, name: str, channels):
        values = getattr(self, name)
        return ops.array(values if channels is None else [values[c] for c in channels])

    def call(self, x, channels=None):
        """GeV ``(..., C)`` → normalised; ``channels`` (indices) when the last axis holds a subset of them."""
        x = ops.maximum(ops.cast(x, "float32"), 0.0)
        u = ops.log1p(x / self._param("scales", channels)) / self._param("log_max", channels)
        return ops.where(x > 0, -1.0 + self.gap + (2.0 - self.gap) * u, -1.0)

    def inverse(self, y, channels=None):
        """Exact inverse of ``call``; ``y < -1 + gap`` (empty pixels and the gap) is 0 GeV."""
        u = ops.maximum(ops.cast(y, "float32") + 1.0 - self.gap, 0.0) / (2.0 - self.gap)
        return self._param("scales", channels) * ops.expm1(u * self._param("log_max", channels))

    @property
    def hit_threshold(self) -> float:
        """The hit decision in the [-1, 1] space: the middle of the occupancy gap, ``-1 + gap / 2``."""
        return -1.0 + 0.5 * self.gap

    def to_energy(self, y, channels=None):
        """Hit where ``y ≥ hit_threshold`` with energy ``max(inverse(y), thresholds)`` GeV, else 0 GeV."""
        y = ops.cast(y, "float32")
        energy = ops.maximum(self.inverse(y, channels), self._param("thresholds", channels))
        return ops.where(y >= self.hit_threshold, energy, 0.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "scales": self.scales,
            "log_max": self.log_max,
            "thresholds": self.thresholds,
            "gap": self.gap,
        }


# ---------------------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="hep_keras")
class JetDiffusion(LossModel):
    """Conditional diffusion model of jet images; see the module docstring for the full description.

    Args:
        image_size: side of the square images the model sees (125 for full images, or a central crop).
        channels: image channels (3: Tracks, ECAL, HCAL).
        patch: side of the pixel blocks folded into one cell of the U-Net's grid (1 = pixel grid; 5 = the
            HCAL tower grid, 125 × 125 → 25 × 25), see :mod:`hep_keras.models.patches`.
        hcal_towers: the last channel (HCAL) enters as one value per ``patch × patch`` tower (its pixels are
            equal in the data); generated HCAL is then uniform on the towers by construction.
        widths, blocks_per_level, attention, embed_dim, dropout, head_width: U-Net settings (:func:`build_unet`;
            ``head_width`` > 0 adds the per-cell head a patch grid needs, see docs/diffusion.md; ``scale_shift``
            conditions every residual block by FiLM instead of an added bias).
        prediction: ``"v"`` or ``"epsilon"``.
        schedule: ``"cosine"`` or ``"linear"`` (:func:`diffusion_schedule`); ``min_signal_rate`` for cosine.
        label_dropout: probability of replacing the label by the null label in training.
        ema: EMA decay of the sampling network (with warm-up ``min(ema, (1 + n) / (10 + n))`` at step n).
        scales, log_max, thresholds, gap: :class:`JetIntensityTransform` parameters (the first three one per
            channel).
        energy_quantiles: ``None`` (no energy conditioning) or two equally long increasing lists, quark and
            gluon, of ``log(E / GeV)`` of the training events at evenly spaced probabilities from 0 to 1
            (:func:`fit_energy_quantiles`).
        multiplicities: ``None`` (no multiplicity conditioning) or the hit pixels per channel of training events
            ranked by energy, quark, gluon and all events (:func:`fit_multiplicities`; needs
            ``energy_quantiles``): the denoiser also sees each event's counts (module docstring, 6).
        energy_fractions: diffuse each pixel's fraction of the event's total energy and scale generated events
            to their energy condition (needs ``energy_quantiles``; ``scales`` / ``log_max`` then describe
            fractions, ``thresholds`` stay in GeV).
        calibration: ``None`` or, per bin of event energy (``len(calibration_energy_edges) + 1``), per ring of
            :attr:`calibration_rings` and per energy cell channel (:attr:`energy_channels`), ``[generated
            quantiles, real quantiles]``: the quantile map applied to generated events (:meth:`calibrate`;
            fitted by :meth:`fit_calibration`; the formats without the bin or ring level still load).
        calibration_rings: increasing ring edges of the calibration, in cells from the grid centre
            (:func:`~hep_keras.models.quantile_calibration.ring_of_cells`; ``[]``: one map for the whole grid).
        calibration_energy_edges: increasing edges (GeV) of the calibration's bins of event energy (``[]``: one
            bin); a generated event goes through the maps of the bin of the energy it is generated for.
        calibration_hit_counts: ``None`` or, per bin of event energy and per image channel, ``[generated soft
            hit counts, real hit counts]`` quantiles: the map of each event's number of hits (hit values of the
            cell grid) that :meth:`calibrate` applies after the per-cell map (fitted by :meth:`fit_calibration`
            with ``hit_counts``).
        calibration_per_class: the calibration's bins are (class, energy bin): quark, gluon and all events, each
            with ``len(calibration_energy_edges) + 1`` energy bins (class-major); a quark or gluon event goes
            through its class's maps, an unconditional one (label 2) through those of all events.
        calibration_drawn_counts: image channels (0 Tracks, 1 ECAL, 2 HCAL) whose hit-count map aims each event
            at the hit pixels it was conditioned on (:meth:`calibrate`) instead of the training count at its
            generated count's quantile; needs ``multiplicities`` and ``calibration_hit_counts``.
        multiplicity_cells: ``None`` or the hit cells per channel (:meth:`hit_cells`: slot hits, HCAL towers,
            pixels) of the training events of ``multiplicities``, in the same rows
            (:meth:`fit_multiplicity_cells`): the drawn channels' hit-count map aims at these; without them a
            slot channel aims at its drawn hit pixels, which the restored overflow hits then exceed.
        overflow_rates, overflow_fractions: ``None`` or, with hit slots, the tables of
            :func:`~hep_keras.models.hit_slots.fit_overflow` per hit-slot channel and ring of
            :attr:`calibration_rings` (:func:`fit_slot_overflow`): decoding then restores, at random with the
            training events' statistics, the hits beyond the ``slots``-th of a block that the slots drop.
        position_counts: ``None`` or, with hit slots, the training events' counts of each slot's pixel per slot,
            hit-slot channel, block and pixel, ``(slots, channels, G, G, patch²)`` (:func:`fit_slot_positions`):
            x̂0 of the slots' positions is then the exact posterior mean under the prior they give
            (:mod:`hep_keras.models.slot_positions`) instead of the network's.
        seed: seed of the training noise.
    """

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        widths=(16, 32, 64),
        blocks_per_level: int = 1,
        attention: bool = True,
        embed_dim: int = 64,
        dropout: float = 0.0,
        prediction: str = "v",
        schedule: str = "cosine",
        min_signal_rate: float = 0.02,
        label_dropout: float = 0.1,
        ema: float = 0.999,
        patch: int = 1,
        hcal_towers: bool = False,
        slots: int = 0,
        head_width: int = 0,
        scale_shift: bool = False,
        scales=(1.0, 1.0, 1.0),
        log_max=(5.0, 5.0, 5.0),
        thresholds=None,
        gap: float = 0.5,
        energy_quantiles=None,
        energy_fractions: bool = False,
        multiplicities=None,
        calibration=None,
        calibration_rings=DEFAULT_RINGS,
        calibration_energy_edges=(),
        calibration_hit_counts=None,
        calibration_per_class: bool = False,
        calibration_drawn_counts=(),
        multiplicity_cells=None,
        overflow_rates=None,
        overflow_fractions=None,
        position_counts=None,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        # === Config ===
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.widths = [int(w) for w in widths]
        self.blocks_per_level = int(blocks_per_level)
        self.attention = bool(attention)
        self.embed_dim = int(embed_dim)
        self.dropout = float(dropout)
        self.head_width = int(head_width)
        self.scale_shift = bool(scale_shift)
        self.prediction = prediction
        self.schedule = schedule
        self.min_signal_rate = float(min_signal_rate)
        self.label_dropout = float(label_dropout)
        self.ema = float(ema)
        self.seed = int(seed)
        self.rng_seed = self.seed
        self.patch = int(patch)
        self.hcal_towers = bool(hcal_towers)
        self.slots = int(slots)
        quantiles = None if energy_quantiles is None else [[float(q) for q in row] for row in energy_quantiles]
        self.energy_quantiles = quantiles
        self.energy_conditioning = self.energy_quantiles is not None
        self.energy_fractions = bool(energy_fractions)
        if self.energy_fractions and not self.energy_conditioning:
            raise ValueError("energy_fractions needs energy conditioning (energy_quantiles)")
        if self.energy_conditioning:
            self._energy_table, self._energy_centre, self._energy_width = _energy_table(self.energy_quantiles)
        self.multiplicities = None if multiplicities is None else [[[int(n) for n in row] for row in rows]
                                                                   for rows in multiplicities]  # fmt: skip
        self.multiplicity_conditioning = self.multiplicities is not None
        if self.multiplicity_conditioning:
            if not self.energy_conditioning:
                raise ValueError("multiplicities need energy conditioning (energy_quantiles)")
            self._multiplicity_table, self._count_centre, self._count_width = _multiplicity_table(
                self.multiplicities, self.channels
            )
        #: numbers per event the denoiser is conditioned on besides its label: 0, 1 (energy), 1 + C (and counts)
        self.condition_size = int(self.energy_conditioning) + self.channels * int(self.multiplicity_conditioning)
        if self.patch < 1:
            raise ValueError(f"patch must be >= 1, got {patch}")
        if self.hcal_towers and self.patch == 1:
            raise ValueError("hcal_towers needs patch > 1 (the tower side)")
        if not 0 <= self.slots <= self.patch**2:
            raise ValueError(f"slots must be in [0, patch²] = [0, {self.patch**2}], got {slots}")
        self.grid_size = grid_size(self.image_size, self.patch)
        #: channels described per pixel / by hit slots (all but a tower HCAL)
        self.fine_channels = list(range(self.channels - 1 if self.hcal_towers else self.channels))
        if self.slots:
            self.cell_channels = 3 * self.slots * len(self.fine_channels) + int(self.hcal_towers)
        else:
            self.cell_channels = patch_channels(self.channels, self.patch, self.hcal_towers)
        factor = 2 ** (len(self.widths) - 1)
        self.padded_size = -(-self.grid_size // factor) * factor
        self.pad_before = (self.padded_size - self.grid_size) // 2
        self.pad_after = self.padded_size - self.grid_size - self.pad_before

        # === Layers ===
        self.transform = JetIntensityTransform(scales, log_max, thresholds, gap, name="intensity_transform")
        unet_args = {
            "image_shape": (self.padded_size, self.padded_size, self.cell_channels),
            "widths": tuple(self.widths),
            "blocks_per_level": self.blocks_per_level,
            "attention": self.attention,
            "embed_dim": self.embed_dim,
            "num_classes": NULL_LABEL,
            "dropout": self.dropout,
            "head_width": self.head_width,
            "scale_shift": self.scale_shift,
            "energy_conditioning": self.energy_conditioning,
            "condition_size": max(self.condition_size, 1),
        }
        self.network = build_unet(**unet_args, name="network")
        self.ema_network = build_unet(**unet_args, name="ema_network")
        self.ema_network.set_weights(self.network.get_weights())
        self.ema_network.trainable = False  # updated by EMA after each step (after_step), never by the optimizer
        self.track_losses(["loss"])
        self._loss_mask = self._pixel_weights()
        #: (1, P, P, K) bool: the cell channels outside the image (the grid's padding and the pixels a partial patch
        #: adds), out of the loss; their clean value is known, -1 (0 GeV), and sampling holds x̂0 there (denoise)
        self._outside = self._loss_mask == 0
        # hit slots: cell channel j is (energy, row, col)[j % 3] of the slot whose energy is channel j - j % 3
        slot_values = 3 * self.slots * len(self.fine_channels)
        self._is_position = np.array([0 < j < slot_values and j % 3 > 0 for j in range(self.cell_channels)])
        self._energy_of = np.array([j - j % 3 if j < slot_values else j for j in range(self.cell_channels)])
        #: cell channels that hold a normalised energy (all but the slots' positions)
        self.energy_channels = [j for j in range(self.cell_channels) if not self._is_position[j]]
        self.calibration_rings = [float(edge) for edge in calibration_rings]
        #: (P, P) int32: the calibration ring of every cell of the padded grid
        self.ring_of_cell = ring_of_cells(self.grid_size, self.padded_size, self.calibration_rings)
        #: (E,) the image channel of every energy cell channel (slot energies, pixels of a patch, the HCAL tower)
        fine = len(self.fine_channels)
        sparse = self.cell_channels - int(self.hcal_towers)  # cell channels before the tower
        self._channel_of_energy = np.array(
            [(j // 3 if self.slots else j) % fine if j < sparse else self.channels - 1 for j in self.energy_channels]
        )
        self.set_calibration(calibration, calibration_energy_edges, calibration_hit_counts, calibration_per_class)
        self.calibration_drawn_counts = sorted({int(c) for c in calibration_drawn_counts})
        if self.calibration_drawn_counts and not self.multiplicity_conditioning:
            raise ValueError("calibration_drawn_counts needs multiplicity conditioning (multiplicities)")
        if not set(self.calibration_drawn_counts) <= set(range(self.channels)):
            raise ValueError(f"calibration_drawn_counts must be image channels 0..{self.channels - 1}, "
                             f"got {list(calibration_drawn_counts)}")  # fmt: skip
        self.set_multiplicity_cells(multiplicity_cells)
        self._set_overflow(overflow_rates, overflow_fractions)
        self.set_position_counts(position_counts)
        self.build((None, self.image_size, self.image_size, self.channels))

    # --- Keras plumbing -------------------------------------------------------------------------------
    def build(self, input_shape):
        """Build every sublayer. The U-Nets are functional (built at construction); the transform has no
        weights; building it here keeps the model "built" so ``.keras`` files reload its weights."""
        self.transform.build(input_shape)
        self.built = True

    def _pixel_weights(self) -> np.ndarray:
        """Loss weights ``(1, P, P, K)`` on the padded grid: the number of real image pixels behind each cell
        channel (1 per folded pixel, up to p² per tower, 0 on the padding)."""
        ones = np.ones((1, self.image_size, self.image_size, self.channels), "float32")
        weights = np.array(to_patches(ones, self.patch, self.hcal_towers, pad_value=0.0))
        if self.slots:  # every slot number weighs 1; a tower as much as a third of the cell, as in the pixel loss
            inside = weights.max(axis=-1, keepdims=True) > 0  # any pixel of the block in the image
            tower = [1.5 * self.slots * len(self.fine_channels)] if self.hcal_towers else []
            weights = inside * np.array([1.0] * (self.cell_channels - len(tower)) + tower, "float32")
        elif self.hcal_towers:
            weights[..., -1] *= self.patch**2
        pad = [(0, 0), (self.pad_before, self.pad_after), (self.pad_before, self.pad_after), (0, 0)]
        return np.pad(weights, pad).astype("float32")

    def get_config(self):
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "channels": self.channels,
            "patch": self.patch,
            "hcal_towers": self.hcal_towers,
            "slots": self.slots,
            "widths": list(self.widths),
            "blocks_per_level": self.blocks_per_level,
            "attention": self.attention,
            "embed_dim": self.embed_dim,
            "dropout": self.dropout,
            "head_width": self.head_width,
            "scale_shift": self.scale_shift,
            "prediction": self.prediction,
            "schedule": self.schedule,
            "min_signal_rate": self.min_signal_rate,
            "label_dropout": self.label_dropout,
            "ema": self.ema,
            "scales": list(self.transform.scales),
            "log_max": list(self.transform.log_max),
            "thresholds": list(self.transform.thresholds),
            "gap": self.transform.gap,
            "energy_quantiles": self.energy_quantiles,
            "energy_fractions": self.energy_fractions,
            "multiplicities": self.multiplicities,
            "calibration": self.calibration,
            "calibration_rings": self.calibration_rings,
            "calibration_energy_edges": self.calibration_energy_edges,
            "calibration_hit_counts": self.calibration_hit_counts,
            "overflow_rates": self.overflow_rates,
            "overflow_fractions": self.overflow_fractions,
            "calibration_per_class": self.calibration_per_class,
            "calibration_drawn_counts": self.calibration_drawn_counts,
            "multiplicity_cells": self.multiplicity_cells,
            "position_counts": self.position_counts,
            "seed": self.seed,
        }

    def call(self, inputs, training=False):
        """Raw denoiser output of the EMA network.

        ``inputs = [noisy (N, P, P, K) normalised patch grid, padded (P = padded_size, K = cell_channels),
        times (N,), labels (N,)]`` and, with energy conditioning, the standardised condition (N,), or
        ``(N, 1 + C)`` with multiplicity conditioning (:meth:`event_condition`).
        """
        noisy, times, labels, *energies = inputs
        return self.ema_network([noisy, times, ops.cast(labels, "int32"), *energies], training=training)

    # --- transforms -----------------------------------------------------------------------------------
    def schedule_rates(self, t):
        """``(σ(t), α(t))`` of this model's schedule (see :func:`diffusion_schedule`)."""
        return diffusion_schedule(t, self.schedule, self.min_signal_rate)

    def normalize(self, images):
        """GeV ``(N, S, S, C)`` (S = ``image_size``) → normalised, padded patch grid ``(N, P, P, K)``.

        With ``hcal_towers`` the tower value is the transform of the tower's mean energy (GeV), so HCAL energy
        is conserved even for a tower whose pixels differ."""
        images = ops.cast(images, "float32")
        if self.energy_fractions:
            images = images / ops.reshape(ops.maximum(event_energy(images), 1e-6), (-1, 1, 1, 1))
        if self.hcal_towers:
            size, p = self.image_size, self.patch
            hcal = to_patches(images[..., -1:], p, towers=False)  # (N, G, G, p²)
            hcal = ops.mean(hcal, axis=-1, keepdims=True)
            hcal = from_patches(ops.repeat(hcal, p * p, axis=-1), p, False, size, 1)
            images = ops.concatenate([images[..., :-1], hcal], axis=-1)
        if self.slots:
            y = self._slots_from_images(images)
        else:
            y = to_patches(self.transform(images), self.patch, self.hcal_towers, pad_value=-1.0)
        pad = [[0, 0], [self.pad_before, self.pad_after], [self.pad_before, self.pad_after], [0, 0]]
        return ops.pad(y, pad, constant_values=-1.0)

    def _slots_from_images(self, images):
        """GeV images (towers already uniform) → normalised cells ``(N, G, G, K)``: per fine channel and slot
        (energy, row, col) with the energy through the intensity transform, then the HCAL tower."""
        fine = self.fine_channels
        energy, row, col = to_slots(images[..., : len(fine)], self.patch, self.slots)  # (N, G, G, slots, F)
        cells = ops.stack([self.transform(energy, channels=fine), row, col], axis=-1)  # (N, G, G, slots, F, 3)
        n = ops.shape(cells)[0]
        cells = ops.reshape(cells, (n, self.grid_size, self.grid_size, self.cell_channels - int(self.hcal_towers)))
        if not self.hcal_towers:
            return cells
        hcal = self.transform(images[..., -1:], channels=[self.channels - 1])
        tower = to_patches(hcal, self.patch, False, pad_value=-1.0)[..., :1]  # its (uniform) tower's first pixel
        return ops.concatenate([cells, tower], axis=-1)

    def _cells(self, y):
        """Remove the padding: ``(N, P, P, K)`` → ``(N, G, G, K)``."""
        start = self.pad_before
        return y[:, start : start + self.grid_size, start : start + self.grid_size, :]

    def crop(self, y):
        """Remove the padding and unfold the grid: ``(N, P, P, K)`` → normalised pixels ``(N, S, S, C)``
        (pixel folding only; hit slots are decoded in GeV by :meth:`denormalize`)."""
        return from_patches(self._cells(y), self.patch, self.hcal_towers, self.image_size, self.channels)

    def _to_energy(self, y, channels=None):
        """Normalised values → GeV (:meth:`JetIntensityTransform.to_energy`), or with ``energy_fractions`` →
        fractions of the event's energy (a hit is > 0; the GeV thresholds come after the scaling)."""
        if not self.energy_fractions:
            return self.transform.to_energy(y, channels)
        hit = ops.cast(y, "float32") >= self.transform.hit_threshold
        return ops.where(hit, ops.maximum(self.transform.inverse(y, channels), 1e-12), 0.0)

    def denormalize(self, y, energies=None, seed=0):
        """Normalised, padded ``(N, P, P, K)`` → GeV ``(N, S, S, C)`` with zero suppression. With
        ``energy_fractions``, ``energies`` (N,) GeV: each event is scaled to add up to its energy, then every
        hit is raised to its channel's detector threshold. ``seed`` (int) seeds the restored overflow hits
        (``overflow_rates``; same seed → same events)."""
        images = self._decode(y, seed)
        if not self.energy_fractions:
            return images
        if energies is None:
            raise ValueError("a model with energy_fractions needs the events' energies to decode them")
        total = ops.sum(images, axis=(1, 2, 3), keepdims=True)
        scaled = images * ops.reshape(ops.cast(energies, "float32"), (-1, 1, 1, 1)) / ops.maximum(total, 1e-12)
        return ops.where(images > 0, ops.maximum(scaled, ops.array(self.transform.thresholds)), 0.0)

    def _decode(self, y, seed=0):
        """Normalised, padded ``(N, P, P, K)`` → ``(N, S, S, C)`` GeV (fractions with ``energy_fractions``)."""
        if not self.slots:
            return self._to_energy(self.crop(y))
        cells = self._cells(y)
        fine = self.fine_channels
        n = ops.shape(cells)[0]
        slots = ops.reshape(
            cells[..., : 3 * self.slots * len(fine)], (n, self.grid_size, self.grid_size, self.slots, len(fine), 3)
        )
        energy = self._to_energy(slots[..., 0], channels=fine)
        overflow = None
        if self.overflow_rates is not None:
            shape = ops.stack([n, self.grid_size, self.grid_size, len(fine), self.patch**2 + 2])
            uniform = stateless_uniform(shape, tf.stack([tf.cast(seed, tf.int64), tf.constant(-4, tf.int64)]))
            overflow = (*self._overflow_tables, uniform)
        images = from_slots(energy, slots[..., 1], slots[..., 2], self.patch, self.image_size, overflow)
        if not self.hcal_towers:
            return images
        tower = self._to_energy(cells[..., -1:], channels=[self.channels - 1])
        hcal = ops.repeat(ops.repeat(tower, self.patch, axis=1), self.patch, axis=2)[
            :, : self.image_size, : self.image_size
        ]
        return ops.concatenate([images, hcal], axis=-1)

    # --- training -------------------------------------------------------------------------------------
    def _targets(self, images, noises, noise_rates, signal_rates):
        return noises if self.prediction == "epsilon" else signal_rates * noises - noise_rates * images

    def diffusion_loss(self, images, labels, network, training: bool):
        """Masked MSE between the network output and the ε / v target at random times.

        ``images`` normalised and padded (N, P, P, C); ``labels`` (N,) int32 in {0, 1}, or ``(labels,
        energies)`` with the standardised energy condition (:meth:`unpack`).
        """
        labels, energies = self._condition(labels, images)
        batch = ops.shape(images)[0]
        noises = self.random_normal(ops.shape(images), salt=1)
        times = self.random_uniform((batch,), salt=2)
        noise_rates, signal_rates = self.schedule_rates(ops.reshape(times, (-1, 1, 1, 1)))
        noisy = forward_diffusion(images, noises, times, self.schedule, self.min_signal_rate)
        if training and self.label_dropout > 0:
            drop = self.random_uniform((batch,), salt=3) < self.label_dropout
            labels = ops.where(drop, NULL_LABEL, labels)
        outputs = network(self._network_inputs(noisy, times, labels, energies), training=training)
        target = self._targets(images, noises, noise_rates, signal_rates)
        weights = ops.convert_to_tensor(self._loss_mask)
        per_pixel = ops.square(outputs - target) * weights
        if self.slots:  # the position of an empty slot is not data: it does not count
            per_pixel = per_pixel * ops.where(self._is_position, ops.cast(self._slot_occupied(images), "float32"), 1.0)
        return ops.sum(per_pixel) / (ops.cast(batch, "float32") * ops.sum(weights))

    def _slot_occupied(self, y):
        """``(N, P, P, K)`` bool: for every cell channel, whether its slot's (normalised) energy is a hit."""
        return ops.take(y, ops.convert_to_tensor(self._energy_of), axis=-1) >= self.transform.hit_threshold

    def unpack(self, data):
        """``(images, labels)`` batch → normalised padded images ``(N, P, P, C)`` and int32 labels ``(N,)``
        (with energy conditioning ``(labels, conditions)``, each event's own condition, :meth:`image_condition`)."""
        images, labels = data[0], ops.cast(ops.reshape(data[1], (-1,)), "int32")
        if self.energy_conditioning:
            labels = (labels, self.image_condition(images))
        return self.normalize(images), labels

    # --- energy conditioning --------------------------------------------------------------------------
    def energy_condition(self, energies):
        """Total event energies (N,) GeV → the standardised condition ``(log E - centre) / width`` (N,)."""
        log_e = ops.log(ops.maximum(ops.cast(energies, "float32"), 1e-3))
        return (log_e - self._energy_centre) / self._energy_width

    def image_condition(self, images):
        """The condition of GeV images ``(N, S, S, C)``: their energy condition (N,) (:meth:`energy_condition`)
        or, with multiplicity conditioning, ``(N, 1 + C)``: it and their hit pixels per channel."""
        return self.event_condition(event_energy(images), hit_pixel_counts(images))

    def event_condition(self, energies, counts=None):
        """Total energies (N,) GeV and hit pixels per channel ``(N, C)`` → the standardised condition: (N,)
        ``(log E - centre) / width``, with multiplicity conditioning ``(N, 1 + C)``: and
        ``(log(1 + n_c) - centre_c) / width_c`` (counts ignored without it)."""
        condition = self.energy_condition(energies)
        if not self.multiplicity_conditioning:
            return condition
        log_n = ops.log1p(ops.maximum(ops.cast(counts, "float32"), 0.0))
        return ops.concatenate([condition[:, None], (log_n - self._count_centre) / self._count_width], axis=1)

    def draw_counts(self, labels, energies, cells=False):
        """Hit pixels per channel ``(N, C)`` for events of ``labels`` (N,) (0 quark, 1 gluon, 2 both) generated
        with total energies (N,) GeV: the counts of the training event (:attr:`multiplicities`) at the rank
        that each energy has in its class's training spectrum (``energy_quantiles``); ``cells``: that same
        training event's hit cells (:attr:`multiplicity_cells`) instead."""
        labels = ops.cast(labels, "int32")
        rows = ops.take(ops.convert_to_tensor(self._energy_table), labels, axis=0)  # (N, M) log E quantiles
        m = self._energy_table.shape[1]
        log_e = ops.log(ops.maximum(ops.cast(ops.reshape(energies, (-1, 1)), "float32"), 1e-3))
        low = ops.clip(ops.cast(tf.searchsorted(rows, log_e, side="right"), "int32") - 1, 0, m - 2)  # (N, 1)
        below = ops.take_along_axis(rows, low, axis=1)
        above = ops.take_along_axis(rows, low + 1, axis=1)
        fraction = ops.clip((log_e - below) / ops.maximum(above - below, 1e-12), 0.0, 1.0)
        rank = (ops.cast(low, "float32") + fraction)[:, 0] / (m - 1)  # (N,) in [0, 1]
        table = self._multiplicity_table  # (3, R, C) log(1 + n)
        row = ops.cast(ops.round(rank * (table.shape[1] - 1)), "int32")
        if cells:
            flat = ops.convert_to_tensor(np.reshape(self.multiplicity_cells, (-1, self.channels)), "float32")
            return ops.take(flat, labels * table.shape[1] + row, axis=0)
        flat = ops.reshape(ops.convert_to_tensor(table), (-1, self.channels))
        return ops.expm1(ops.take(flat, labels * table.shape[1] + row, axis=0))

    def draw_energies(self, labels, seed):
        """Seeded total energies (N,) GeV for ``labels`` (N,) (0 quark, 1 gluon, 2 both classes pooled):
        inverse-CDF sampling of the training split's ``log E`` quantiles of the label's class."""
        table = ops.convert_to_tensor(self._energy_table)  # (3, M): quark, gluon, pooled
        m = self._energy_table.shape[1]
        u = stateless_uniform(tf.shape(labels), tf.stack([tf.cast(seed, tf.int64), tf.constant(-3, tf.int64)]))
        position = u * (m - 1)
        low = ops.cast(ops.minimum(ops.floor(position), m - 2), "int32")
        rows = ops.take(table, ops.cast(labels, "int32"), axis=0)  # (N, M)
        below = ops.take_along_axis(rows, low[:, None], axis=1)[:, 0]
        above = ops.take_along_axis(rows, low[:, None] + 1, axis=1)[:, 0]
        return ops.exp(below + (position - ops.cast(low, "float32")) * (above - below))

    def _condition(self, labels, x):
        """``labels`` or ``(labels, conditions)`` → ``(int32 labels (N,), standardised conditions (N,) or
        (N, condition_size), or None)``; a conditioned model given labels only uses the centre (condition 0)."""
        energies = None
        if isinstance(labels, tuple | list):
            labels, energies = labels
        labels = self._labels_or_null(labels, x)
        if self.energy_conditioning and energies is None:
            shape = ops.shape(labels) if self.condition_size == 1 else (ops.shape(labels)[0], self.condition_size)
            energies = ops.zeros(shape, "float32")
        return labels, energies

    def _network_inputs(self, noisy, times, labels, energies):
        return [noisy, times, labels] + ([energies] if self.energy_conditioning else [])

    def compute_losses(self, data, training=False):
        """``{"loss": diffusion_loss}``: the training network in training, the EMA network (used for sampling)
        in evaluation."""
        images, labels = data  # labels: (labels, energies) with energy conditioning
        network = self.network if training else self.ema_network
        return {"loss": self.diffusion_loss(images, labels, network, training=training)}

    def step_variables(self):
        return self.network.trainable_weights

    def after_step(self):
        """EMA of the network's weights, decay ``min(ema, (1 + n) / (10 + n))`` at optimizer step n."""

        def average(ema_weight, weight):  # runs where the EMA copy lives (each replica's device)
            step = ops.cast(self.optimizer.iterations, "float32")
            decay = ops.minimum(self.ema, (1.0 + step) / (10.0 + step))
            return decay * ema_weight + (1.0 - decay) * weight

        self.assign_variables(list(zip(self.ema_network.weights, self.network.weights, strict=True)), average)

    # --- denoising ------------------------------------------------------------------------------------
    def _network_output(self, noisy, times, labels, guidance):
        """EMA-network output with classifier-free guidance ``null + w (cond - null)``; one evaluation if w = 1.
        Guidance acts on the quark/gluon label only; the energy condition is the same in both halves."""
        labels, energies = self._condition(labels, noisy)

        def conditional():
            return self.ema_network(self._network_inputs(noisy, times, labels, energies), training=False)

        def guided():
            twice = None if energies is None else ops.concatenate([energies, energies], 0)
            both = self.ema_network(
                self._network_inputs(
                    ops.concatenate([noisy, noisy], 0),
                    ops.concatenate([times, times], 0),
                    ops.concatenate([labels, ops.full_like(labels, NULL_LABEL)], 0),
                    twice,
                ),
                training=False,
            )
            cond, null = ops.split(both, 2, axis=0)
            return null + guidance * (cond - null)

        if isinstance(guidance, int | float):
            return conditional() if guidance == 1 else guided()
        return ops.cond(ops.equal(guidance, 1.0), conditional, guided)

    def denoise(self, noisy, t, labels, guidance=1.0, clip: bool = False):
        """Predicted noise and clean image ``(ε̂, x̂0)`` at a common time ``t`` (scalar) for normalised padded
        ``noisy`` (N, P, P, C). ``clip`` clips x̂0 to :data:`X0_CLIP` (ε̂ is then recomputed). With hit slots
        the position of a slot x̂0 calls empty is left as the network has it (it is out of the loss): projecting
        it to 0, its value in the data, shrank the position of every hit that appears late on the trajectory
        (soft, peripheral hits) to its block's centre pixel (docs/diffusion.md, "the dot grid"). Outside the image
        (the grid's padding) x̂0 is its known value -1 and ε̂ the noise that ``noisy`` then holds, so the padding
        of x_t is distributed as in training at every step: left as the network had it (it is out of the loss),
        it drifted and the image's border next to it filled with hits (docs/diffusion.md, "the edge artefact").
        With ``position_counts`` x̂0 of every slot position is the exact posterior mean under their prior instead of
        the network's (:meth:`_denoise_positions`; clipped or not)."""
        batch = ops.shape(noisy)[0]
        times = ops.full((batch,), t, dtype="float32")
        noise_rate, signal_rate = self.schedule_rates(t)
        out = self._network_output(noisy, times, labels, guidance)
        if self.prediction == "epsilon":
            pred_noise = out
            pred_image = (noisy - noise_rate * out) / signal_rate
        else:
            pred_image = signal_rate * noisy - noise_rate * out
            pred_noise = noise_rate * noisy + signal_rate * out
        if clip:
            pred_image = ops.clip(pred_image, *X0_CLIP)
            if self.prediction == "v":  # for ε-prediction ε̂ is the network output; keep it
                pred_noise = (noisy - signal_rate * pred_image) / ops.maximum(noise_rate, 1e-6)
        if self._position_log_prior is not None:
            pred_noise, pred_image = self._denoise_positions(noisy, pred_noise, pred_image, noise_rate, signal_rate)
        if self._outside.any():  # the padding is known: x̂0 = -1 there, and ε̂ the noise that x then holds
            outside = ops.convert_to_tensor(self._outside)
            pred_image = ops.where(outside, -1.0, pred_image)
            pred_noise = ops.where(outside, (noisy + signal_rate) / ops.maximum(noise_rate, 1e-6), pred_noise)
        return pred_noise, pred_image

    def _denoise_positions(self, noisy, pred_noise, pred_image, noise_rate, signal_rate):
        """``(ε̂, x̂0)`` with x̂0 of every slot position the posterior mean under ``position_counts``' prior
        (:func:`~hep_keras.models.slot_positions.posterior_mean_positions`) and ε̂ the noise ``noisy`` then holds."""
        slot_values = 3 * self.slots * len(self.fine_channels)
        shape = (-1, self.padded_size, self.padded_size, slot_values // 3, 3)
        noisy_slots = ops.reshape(noisy[..., :slot_values], shape)  # (N, P, P, slots · F, [energy, row, col])
        row, col = posterior_mean_positions(
            noisy_slots[..., 1], noisy_slots[..., 2], self._position_log_prior, signal_rate, noise_rate, self.patch
        )
        energy = ops.reshape(pred_image[..., :slot_values], shape)[..., 0]
        slots = ops.stack([energy, ops.cast(row, energy.dtype), ops.cast(col, energy.dtype)], axis=-1)
        slots = ops.reshape(slots, (-1, self.padded_size, self.padded_size, slot_values))
        pred_image = ops.concatenate([slots, pred_image[..., slot_values:]], axis=-1)
        noise = (noisy - signal_rate * pred_image) / ops.maximum(noise_rate, 1e-6)
        return ops.where(ops.convert_to_tensor(self._is_position), noise, pred_noise), pred_image

    def ddim_step(self, x, t, t_next, labels, guidance=1.0, eta=0.0, noise=None, clip=True):
        """One DDIM update from time ``t`` to ``t_next`` (either direction; η only when ``t_next < t``).

        ``x_next = α' x̂0 + sqrt(σ'² - s²) ε̂ + s z`` with ``s = η sqrt(σ'²/σ² · (1 - α²/α'²))``; η = 1 gives the
        DDPM posterior q(x_{t'} | x_t, x̂0).
        """
        pred_noise, pred_image = self.denoise(x, t, labels, guidance, clip)
        noise_rate, signal_rate = self.schedule_rates(t)
        next_noise_rate, next_signal_rate = self.schedule_rates(t_next)
        if noise is None:
            return next_signal_rate * pred_image + next_noise_rate * pred_noise
        ratio = ops.square(next_noise_rate) / ops.maximum(ops.square(noise_rate), 1e-12)
        ratio = ratio * (1.0 - ops.square(signal_rate) / ops.square(next_signal_rate))
        s = eta * ops.sqrt(ops.maximum(ratio, 0.0))
        direction = ops.sqrt(ops.maximum(ops.square(next_noise_rate) - ops.square(s), 0.0))
        return next_signal_rate * pred_image + direction * pred_noise + s * noise

    def integrate(self, x, labels, t_start, t_end, steps, guidance=1.0, eta=0.0, seed=0, clip=True):
        """Run ``steps`` DDIM updates on a uniform grid from ``t_start`` to ``t_end`` (normalised, padded x).

        Going down (``t_end < t_start``) with ``eta > 0`` draws fresh noise with stateless seeds ``(seed, i)``.
        Works eagerly and traced with tensor ``steps`` (``ops.fori_loop``).
        """
        stochastic = not (isinstance(eta, int | float) and eta == 0)
        steps_f = ops.cast(steps, "float32")

        def body(i, x):
            fi = ops.cast(i, "float32")
            t = t_start + (t_end - t_start) * fi / steps_f
            t_next = t_start + (t_end - t_start) * (fi + 1.0) / steps_f
            noise = _stateless_normal(ops.shape(x), seed, i) if stochastic else None
            return self.ddim_step(x, t, t_next, labels, guidance, eta, noise, clip)

        return ops.fori_loop(0, steps, body, x)

    # --- user-facing API (normalised ↔ GeV handled here) ------------------------------------------------
    def initial_noise(self, n, seed):
        """Seeded N(0, 1) noise ``(n, P, P, K)`` on the padded patch grid that sampling starts from."""
        shape = ops.stack([ops.cast(n, "int32"), self.padded_size, self.padded_size, self.cell_channels])
        return _stateless_normal(shape, seed, -1)

    def sample(
        self, labels, steps: int = 25, eta: float = 0.0, guidance: float = 1.0, seed: int = 0, noise=None,
        energies=None, counts=None,
    ):  # fmt: skip
        """Generate ``len(labels)`` events in GeV ``(N, S, S, C)``.

        Args:
            labels: (N,) int — 0 quark, 1 gluon, 2 unconditional.
            steps: DDIM steps (network evaluations per event; ×2 when ``guidance != 1``).
            eta: 0 deterministic DDIM … 1 ancestral DDPM.
            guidance: classifier-free guidance scale w (1 = plain conditional).
            seed: same seed (and labels, steps, η) → identical events.
            noise: optional starting noise ``(N, P, P, C)`` instead of the seeded one.
            energies: with energy conditioning, the total energy (N,) GeV each event is generated for; by
                default drawn (seeded) from the training spectrum of its class (:meth:`draw_energies`).
            counts: with multiplicity conditioning, the hit pixels per channel ``(N, C)`` each event is generated
                for; by default those of the training event at its energy's rank (:meth:`draw_counts`).
        """
        x, energies = self.sample_normalized(labels, steps, eta, guidance, seed, noise, energies, counts)
        return self.denormalize(self.calibrate(x, energies, labels, counts), energies, seed)

    def sample_normalized(
        self, labels, steps=25, eta=0.0, guidance=1.0, seed=0, noise=None, energies=None, counts=None
    ):
        """The DDIM trajectory of :meth:`sample` without calibration and decoding: ``(x (N, P, P, K)
        normalised and padded, energies (N,) GeV or None)``."""
        labels = ops.cast(ops.reshape(ops.convert_to_tensor(labels), (-1,)), "int32")
        x = self.initial_noise(ops.shape(labels)[0], seed) if noise is None else noise
        if self.energy_conditioning:
            energies = self.draw_energies(labels, seed) if energies is None else ops.reshape(energies, (-1,))
            if self.multiplicity_conditioning and counts is None:
                counts = self.draw_counts(labels, energies)
            labels = (labels, self.event_condition(energies, counts))
        return self.integrate(x, labels, 1.0, 0.0, steps, guidance, eta, seed), energies

    # --- calibration -----------------------------------------------------------------------------------
    def set_calibration(self, tables, energy_edges=(), hit_counts=None, per_class=False) -> None:
        """Set (``None``: remove) the quantile map of generated energies: per bin of event energy
        (``len(energy_edges) + 1``, edges in GeV, increasing; with ``per_class`` those bins for quark, gluon and
        all events, class-major), per ring (``len(calibration_rings) + 1``) one
        ``[generated quantiles, real quantiles]`` table per energy cell channel
        (:mod:`hep_keras.models.quantile_calibration`). Formats of older models load as one energy bin: per
        ring (session 8 to 11) or one table per channel for the whole grid (before session 8).

        ``hit_counts`` (needs hurdle ``tables``): per energy bin one ``[generated soft hit counts, real hit
        counts]`` table per image channel, the map of each event's number of hits (:meth:`calibrate`)."""
        edges = [float(edge) for edge in energy_edges]
        if edges != sorted(set(edges)):
            raise ValueError(f"calibration energy edges must be strictly increasing, got {edges}")
        if tables is not None:
            rings = len(self.calibration_rings) + 1
            depth = np.ndim(tables[0][0][0])  # 0: [channel][side][q], 1: [ring][channel]…, 2: [bin][ring]…
            if depth == 0:
                tables = [[tables] * rings]
            elif depth == 1:
                tables = [tables]
            tables = [[[[[float(v) for v in side] for side in table] for table in ring] for ring in b] for b in tables]
            bins = (len(edges) + 1) * (len(CALIBRATION_CLASSES) if per_class else 1)
            if len(tables) != bins:
                what = "energy bin and class (quark, gluon, all)" if per_class else "energy bin"
                raise ValueError(f"calibration needs one set of tables per {what} ({bins}), got {len(tables)}")
            for energy_bin in tables:
                if len(energy_bin) != rings:
                    raise ValueError(f"calibration needs one set of tables per ring ({rings}), got {len(energy_bin)}")
                for ring in energy_bin:
                    check_quantile_map(ring, len(self.energy_channels))
            if len({len(side) for b in tables for ring in b for table in ring for side in table}) != 1:
                raise ValueError("all calibration tables need the same number of quantiles")
        if hit_counts is not None:
            if tables is None:
                raise ValueError("a hit-count calibration needs the per-cell calibration tables")
            hit_counts = [[[[float(v) for v in side] for side in table] for table in b] for b in hit_counts]
            if len(hit_counts) != len(tables):
                raise ValueError(f"hit-count calibration needs one set of tables per energy bin ({len(tables)}), "
                                 f"got {len(hit_counts)}")  # fmt: skip
            for energy_bin in hit_counts:
                check_quantile_map(energy_bin, self.channels)
            if len({len(side) for b in hit_counts for table in b for side in table}) != 1:
                raise ValueError("all hit-count calibration tables need the same number of quantiles")
        self.calibration, self.calibration_energy_edges, self.calibration_hit_counts = tables, edges, hit_counts
        self.calibration_per_class = bool(per_class)
        self._hit_boundary = None if hit_counts is None else self._cell_hit_boundary()  # computed outside any trace

    def _set_overflow(self, rates, fractions) -> None:
        """Set the overflow tables (both ``None``: decode the slots as they are); see the class docstring."""
        if (rates is None) != (fractions is None):
            raise ValueError("overflow_rates and overflow_fractions go together")
        self.overflow_rates = self.overflow_fractions = self._overflow_tables = None
        if rates is None:
            return
        rates, fractions = np.asarray(rates, "float32"), np.asarray(fractions, "float32")
        expected = (len(self.fine_channels), len(self.calibration_rings) + 1)
        if not self.slots or rates.shape != expected or fractions.shape[:2] != expected or fractions.ndim != 4:
            raise ValueError(
                f"overflow tables need hit slots and shapes {expected} and {expected} + (records, hits), got "
                f"{rates.shape} and {fractions.shape}"
            )
        self.overflow_rates, self.overflow_fractions = rates.tolist(), fractions.tolist()
        start = self.pad_before
        ring = self.ring_of_cell[start : start + self.grid_size, start : start + self.grid_size]  # (G, G)
        self._overflow_tables = (rates, fractions, ring)  # split_overflow's tables and each block's ring

    def set_position_counts(self, counts) -> None:
        """Set (``None``: remove) the counts behind the slot positions' prior (class docstring, ``position_counts``;
        :mod:`hep_keras.models.slot_positions`). Refit the calibration after a change: it belongs to the sampler."""
        self.position_counts = self._position_log_prior = None
        if counts is None:
            return
        counts = np.asarray(counts)
        expected = (self.slots, len(self.fine_channels), self.grid_size, self.grid_size, self.patch**2)
        if not self.slots or self.patch == 1 or counts.shape != expected:
            raise ValueError(f"position_counts need hit slots on patches > 1 and shape {expected}, got {counts.shape}")
        if (counts.dtype.kind not in "iu" and not np.array_equal(counts, np.round(counts))) or (counts < 0).any():
            raise ValueError("position_counts must be counts of hits (integers >= 0)")
        self.position_counts = counts.astype(int).tolist()
        start = self.pad_before
        ring = self.ring_of_cell[start : start + self.grid_size, start : start + self.grid_size]
        log_prior = position_log_prior(counts, ring, len(self.calibration_rings) + 1)  # (K, F, G, G, p²)
        log_prior = log_prior.transpose(2, 3, 0, 1, 4).reshape(*ring.shape, -1, self.patch**2)  # cell channel order
        pad = [(self.pad_before, self.pad_after), (self.pad_before, self.pad_after), (0, 0), (0, 0)]
        #: (P, P, slots · F, p²): the padding's is uniform (its x̂0 is held at -1 anyway, :meth:`denoise`)
        self._position_log_prior = np.pad(log_prior, pad, constant_values=-np.log(self.patch**2))

    def calibrate(self, y, energies=None, labels=None, counts=None):
        """Normalised, padded ``(N, P, P, K)`` → the same with every energy channel through the quantile map of
        its cell's ring and its event's energy bin (``energies`` (N,) GeV, the energy each event is generated
        for; needed only with energy bins) and, with :attr:`calibration_per_class`, its class (``labels`` (N,)
        0 quark, 1 gluon, 2 or ``None`` all events); positions unchanged; the identity without calibration.

        With :attr:`calibration_hit_counts` each event's number of hits per image channel then becomes the real
        count at the quantile its generated count has (:meth:`fit_calibration`): the event's generated values of
        that channel are offset by the one number that gives it this many hits under the per-cell map, and only
        the hit decision moves (cells whose hit decision changes get the map of their offset value: a hit, or a
        value below the hit decision, 0 GeV; all others the value without the count map). The channels of
        :attr:`calibration_drawn_counts` are aimed instead at the hit pixels ``counts`` (N, C) each event was
        conditioned on (``None``: drawn from ``labels`` and ``energies`` as :meth:`sample` draws them; then, with
        :attr:`multiplicity_cells`, the drawn training event's hit cells), in cells: a tower HCAL hit is
        ``patch²`` pixels, a slot or pixel hit one (given pixel ``counts``, a slot channel aims at as many slot
        hits, which the restored overflow hits then exceed)."""
        if self.calibration is None:
            return y
        energy_bin = self._calibration_bin(y, energies, labels)
        calibrated = self._calibrate_cells(y, energy_bin)
        if self.calibration_hit_counts is None:
            return calibrated
        drawn = None
        if self.calibration_drawn_counts:
            labels = ops.full((ops.shape(y)[0],), NULL_LABEL, "int32") if labels is None else labels
            if counts is None and self.multiplicity_cells is not None:
                drawn = self.draw_counts(labels, energies, cells=True)
            else:
                counts = self.draw_counts(labels, energies) if counts is None else counts
                per_cell = np.array([self.patch**2 if self.hcal_towers and c == self.channels - 1 else 1
                                     for c in range(self.channels)], "float32")  # fmt: skip
                drawn = ops.cast(counts, "float32") / per_cell
        shifted = self._calibrate_cells(self._shift_to_hit_counts(y, energy_bin, drawn), energy_bin)
        threshold = self.transform.hit_threshold
        return ops.where(ops.not_equal(calibrated >= threshold, shifted >= threshold), shifted, calibrated)

    def _calibration_bin(self, y, energies, labels):
        """``(N,)`` int32: the calibration bin of each event of ``y``: its energy bin, plus, per class, the
        number of energy bins times its class (0 quark, 1 gluon, 2 all events: label 2 or ``None``)."""
        energy_bin = self._energy_bin(y, energies)
        if not self.calibration_per_class:
            return energy_bin
        n = ops.shape(y)[0]
        group = ops.full((n,), NULL_LABEL, "int32") if labels is None else ops.cast(ops.reshape(labels, (-1,)), "int32")
        group = ops.where((group == 0) | (group == 1), group, NULL_LABEL)
        return energy_bin + (len(self.calibration_energy_edges) + 1) * group

    def _energy_bin(self, y, energies):
        """``(N,)`` int32: the calibration's energy bin of each event of ``y`` (``energies`` (N,) GeV)."""
        if not self.calibration_energy_edges:
            return ops.zeros((ops.shape(y)[0],), "int32")
        if energies is None:
            raise ValueError("this calibration has energy bins: calibrate needs each event's energy (N,) GeV")
        edges = ops.convert_to_tensor(self.calibration_energy_edges, "float32")
        energies = ops.reshape(ops.cast(energies, "float32"), (-1, 1))
        return ops.sum(ops.cast(energies >= edges[None], "int32"), axis=1)

    def _calibrate_cells(self, y, energy_bin):
        """``y`` through the per-cell maps of each event's energy bin ``(N,)``."""
        tables = ops.convert_to_tensor(self.calibration, "float32")  # (bins, rings, E, 2, K)
        if len(self.calibration) == 1:
            return self._calibrate_ring_by_ring(y, tables[0])
        energy_bin = ops.reshape(energy_bin, (-1, 1, 1, 1))
        calibrated = y
        for b in range(len(self.calibration)):  # every bin's map on the whole batch, kept where the bin is
            calibrated = ops.where(energy_bin == b, self._calibrate_ring_by_ring(y, tables[b]), calibrated)
        return calibrated

    def _calibrate_ring_by_ring(self, y, tables):
        """``y`` (N, P, P, K) through per-ring tables (rings, E, 2, K)."""
        tables = ops.take(tables, self.ring_of_cell, axis=0)  # (P, P, E, 2, K): one table per cell
        columns = [y[..., j] for j in range(self.cell_channels)]
        for e, j in enumerate(self.energy_channels):
            columns[j] = quantile_map(columns[j], tables[:, :, e, 0], tables[:, :, e, 1])
        return ops.stack(columns, axis=-1)

    def _hit_margins(self, y, energy_bin) -> list:
        """Per image channel ``(N, L)``: every generated energy value of the channel minus the value at which its
        cell's map (of the event's energy bin) makes it a hit (> 0: a hit; padding cells never)."""
        if self._hit_boundary is None:
            self._hit_boundary = self._cell_hit_boundary()
        boundary = ops.take(ops.convert_to_tensor(self._hit_boundary, "float32"), energy_bin, axis=0)
        margins = ops.take(y, self.energy_channels, axis=-1) - boundary  # (N, P, P, E)
        n, cells = ops.shape(y)[0], self.padded_size**2
        own = [np.flatnonzero(self._channel_of_energy == c) for c in range(self.channels)]
        return [ops.reshape(ops.take(margins, j, axis=-1), (n, cells * len(j))) for j in own]

    def _cell_hit_boundary(self) -> np.ndarray:
        """``(bins, P, P, E)``: the generated value at which each cell's hurdle map makes a hit (1e6 in the
        padding and where a ring has no hits: never)."""
        per_cell = np.take(self.calibration, self.ring_of_cell, axis=1)  # (bins, P, P, E, 2, K)
        boundary = hurdle_boundary(per_cell, self.transform.hit_threshold)
        inside = np.zeros((self.padded_size,) * 2, bool)
        start, stop = self.pad_before, self.pad_before + self.grid_size
        inside[start:stop, start:stop] = True
        return np.where(inside[None, :, :, None] & np.isfinite(boundary), boundary, 1e6).astype("float32")

    @staticmethod
    def _soft_hit_count(margins):
        """``(N,)`` the number of hits of margins ``(N, L)``, plus fractions within :data:`HIT_COUNT_SOFTNESS`."""
        return ops.sum(ops.sigmoid(margins / HIT_COUNT_SOFTNESS), axis=1)

    def _shift_to_hit_counts(self, y, energy_bin, drawn=None):
        """``y`` with each event's energy values of each channel offset so that its hit count becomes the mapped
        count (or, for the channels of :attr:`calibration_drawn_counts`, ``drawn`` (N, C) hit cells): the
        boundary moves halfway between the count-th and the next largest margin (at most ±4; values that tie
        there both become hits)."""
        counts = ops.take(ops.convert_to_tensor(self.calibration_hit_counts, "float32"), energy_bin, axis=0)
        shifts = []
        for c, margins in enumerate(self._hit_margins(y, energy_bin)):  # counts (N, C, 2, K)
            if drawn is not None and c in self.calibration_drawn_counts:
                target = ops.round(drawn[:, c])
            else:
                target = ops.round(quantile_map(self._soft_hit_count(margins), counts[:, c, 0], counts[:, c, 1]))
            ordered = -ops.sort(-margins, axis=1)  # largest first, then one step beyond either end
            ordered = ops.concatenate([ordered[:, :1] + 0.02, ordered, ordered[:, -1:] - 0.02], axis=1)
            k = ops.cast(ops.clip(target, 0.0, float(margins.shape[1])), "int32")[:, None]
            middle = (ops.take_along_axis(ordered, k, axis=1) + ops.take_along_axis(ordered, k + 1, axis=1)) / 2
            shifts.append(ops.clip(-middle[:, 0], -4.0, 4.0))
        placement = np.zeros((self.channels, self.cell_channels), "float32")  # channel c → its energy channels
        placement[self._channel_of_energy, self.energy_channels] = 1.0
        shift = ops.matmul(ops.stack(shifts, axis=1), ops.convert_to_tensor(placement))  # (N, K)
        return y + ops.reshape(shift, (-1, 1, 1, self.cell_channels))

    def fit_calibration(
        self, images, labels, steps=25, guidance=1.0, eta=0.0, seed=0, batch_size=50, progress=None, energy_bins=1,
        hit_counts=False, per_class=False,
    ):  # fmt: skip
        """Fit the quantile map on training events ``images (N, S, S, C)`` GeV with labels ``(N,)``: N events
        generated with the same labels (and this sampler) against the training events, per energy channel and
        ring over the cells of the grid, as a hurdle at the hit decision (``fit_quantile_map(empty_below=)``:
        the ring's training hit rate exactly, then its hit spectrum). Replaces any previous calibration.
        ``progress(done)`` after each batch. A ring without cells (small grids) gets the map of the whole grid
        (it is never used).

        ``energy_bins`` > 1 (energy-conditioned models only) fits separate maps per bin of event energy, with
        edges at the training events' energy quantiles: training events binned by their summed energy,
        generated ones by the energy they were generated for; a bin without events on either side gets the
        map of all events. How a jet's energy spreads out from its axis changes with its energy, and one map
        for all energies only gets the average right (measured: docs/diffusion.md).

        ``hit_counts`` also fits, per energy bin and image channel, the quantile map of each event's number of
        hits: the generated events' soft hit counts under the per-cell map onto the training events' hit counts
        (hits per event: the per-cell map matches each ring's hit rate, not how the hits spread over events;
        measured: generated ECAL counts too alike, docs/diffusion.md). Each bin's distribution of hit counts is
        then the training one by construction (not evidence of quality).

        ``per_class`` fits every map three times: on the quark events, on the gluon events and on all of them
        (:data:`CALIBRATION_CLASSES`; same generated events, no extra sampling); a (class, energy) bin without
        events on either side gets the map of all events of its energy bin, or else of all events."""
        if energy_bins > 1 and not self.energy_conditioning:
            raise ValueError("energy_bins > 1 needs an energy-conditioned model")
        sample = tf.function(lambda lab, s: self.sample_normalized(lab, steps, eta, guidance, s))
        labels = np.asarray(labels).reshape(-1).astype("int32")
        generated, generated_energy = [], []
        for start in range(0, len(labels), batch_size):
            x, energies = sample(tf.constant(labels[start : start + batch_size]), tf.constant(seed + start, tf.int64))
            generated.append(np.asarray(x))
            generated_energy.append(np.zeros(len(x)) if energies is None else np.asarray(energies))
            if progress is not None:
                progress(min(start + batch_size, len(labels)))
        real = self._energy_cells(images, batch_size)  # (N', G, G, E)
        generated = np.concatenate(generated)  # (N, P, P, K)
        generated_cells = np.asarray(self._cells(generated))[..., self.energy_channels]  # (N, G, G, E)
        real_energy = np.asarray(event_energy(images), np.float64)
        # equal quantiles (e.g. many events of one energy) merge their bins; no bin below the lowest energy
        quantiles = np.unique(np.quantile(real_energy, np.arange(1, energy_bins) / energy_bins))
        edges = [float(edge) for edge in quantiles if edge > real_energy.min()]
        generated_bin = np.digitize(np.concatenate(generated_energy), edges)
        real_bin = np.digitize(real_energy, edges)
        # per calibration bin (class-major): the generated and the real events it is fitted on
        groups = [labels == 0, labels == 1, np.ones(len(labels), bool)] if per_class else [np.ones(len(labels), bool)]
        fallback = (np.ones(len(labels), bool),) * 2
        events = []  # (generated, real) boolean masks per calibration bin
        for group in groups:
            for b in range(len(edges) + 1):
                own = (group & (generated_bin == b), group & (real_bin == b))
                energy_only = (generated_bin == b, real_bin == b)
                events.append(next(m for m in (own, energy_only, fallback) if m[0].any() and m[1].any()))
        tables = [self._fit_ring_tables(generated_cells[g], real[r]) for g, r in events]
        self.set_calibration(tables, edges, per_class=per_class)
        if not hit_counts:
            return
        counts = self._hit_cells_of(real)  # (N', C)
        count_tables = []
        for index, (g, r) in enumerate(events):  # soft counts under this bin's per-cell map
            margins = self._hit_margins(generated[g], np.full(int(g.sum()), index, "int32"))
            soft = np.stack([np.asarray(self._soft_hit_count(m)) for m in margins], axis=1)  # (n, C)
            count_tables.append(fit_quantile_map(soft, counts[r]))
        self.set_calibration(tables, edges, count_tables, per_class)

    def hit_cells(self, images, batch_size: int = 200) -> np.ndarray:
        """``(N, C)`` int: hit cells per image channel of GeV images ``(N, S, S, C)`` as the hit-count map counts
        them: occupied hit slots (a 5×5 block with 3 hits is 2 slot hits), HCAL towers, or pixels."""
        return self._hit_cells_of(self._energy_cells(images, batch_size))

    def _energy_cells(self, images, batch_size: int = 200) -> np.ndarray:
        """Normalised energy cells ``(N, G, G, E)`` of GeV images ``(N, S, S, C)``, in batches."""
        cells = [np.asarray(self._cells(self.normalize(images[i : i + batch_size])))
                 for i in range(0, len(images), batch_size)]  # fmt: skip
        return np.concatenate(cells)[..., self.energy_channels]

    def _hit_cells_of(self, cells: np.ndarray) -> np.ndarray:
        """``(N, C)`` hit cells per image channel of normalised energy cells ``(N, G, G, E)``."""
        hits = cells >= self.transform.hit_threshold
        return np.stack([hits[..., self._channel_of_energy == c].sum(axis=(1, 2, 3)) for c in range(self.channels)], 1)

    def set_multiplicity_cells(self, cells) -> None:
        """Set (``None``: remove) :attr:`multiplicity_cells`, the hit cells ``(3, R, C)`` of the rows of
        :attr:`multiplicities` (see the class docstring)."""
        if cells is not None:
            expected = None if self.multiplicities is None else np.shape(self.multiplicities)
            if np.shape(cells) != expected:
                raise ValueError(
                    f"multiplicity_cells needs the shape of multiplicities {expected}, got {np.shape(cells)}"
                )
            cells = [[[int(n) for n in row] for row in rows] for rows in cells]
        self.multiplicity_cells = cells

    def fit_multiplicity_cells(self, images, labels) -> None:
        """Fit :attr:`multiplicity_cells` on the training images ``(N, S, S, C)`` GeV and labels ``(N,)`` that
        :attr:`multiplicities` were fitted on (checked: ValueError if their hit pixels give another table)."""
        rows = len(self.multiplicities[0])
        if fit_multiplicities(images, labels, rows) != self.multiplicities:
            raise ValueError("fit_multiplicity_cells needs the events the model's multiplicities were fitted on")
        self.set_multiplicity_cells(fit_multiplicities(images, labels, rows, counts=self.hit_cells(images)))

    def _fit_ring_tables(self, generated, real) -> list:
        """Per-ring hurdle tables of generated and real cells ``(M, G, G, E)`` / ``(M', G, G, E)``."""
        rings = self._cells(self.ring_of_cell[None, :, :, None])[0, :, :, 0]  # (G, G)
        energy = len(self.energy_channels)
        tables = []
        for ring in range(len(self.calibration_rings) + 1):
            cells = rings == ring if np.any(rings == ring) else np.ones_like(rings, bool)
            values = generated[:, cells].reshape(-1, energy), real[:, cells].reshape(-1, energy)
            tables.append(fit_quantile_map(*values, empty_below=self.transform.hit_threshold))
        return tables

    def invert(self, images, steps: int = 50, labels=None, t_end: float = 1.0):
        """Deterministic DDIM inversion of GeV images ``(N, S, S, C)`` to the latent at ``t_end`` (normalised)."""
        x = self.normalize(images)
        return self.integrate(x, self._image_condition(images, labels, x), 0.0, t_end, steps, clip=False)

    def reconstruct(self, images, steps: int = 50, strength: float = 1.0, mode: str = "inversion", labels=None, seed=0):
        """Reconstruct GeV images ``(N, S, S, C)`` → GeV ``(N, S, S, C)``.

        ``mode="inversion"``: deterministic DDIM inversion up to ``t = strength`` and back (``steps`` each way
        for strength 1, proportionally fewer otherwise). ``mode="sdedit"``: seeded noise added at
        ``t = strength``, then DDIM denoising. Labels default to the null label (unconditional).
        """
        if mode not in ("inversion", "sdedit"):
            raise ValueError(f"mode must be 'inversion' or 'sdedit', got {mode!r}")
        x0 = self.normalize(images)
        labels = self._image_condition(images, labels, x0)
        n_steps = ops.maximum(ops.cast(ops.round(ops.cast(steps, "float32") * strength), "int32"), 1)
        if mode == "inversion":
            x = self.integrate(x0, labels, 0.0, strength, n_steps, clip=False)
        else:
            noise_rate, signal_rate = self.schedule_rates(strength)
            x = signal_rate * x0 + noise_rate * _stateless_normal(ops.shape(x0), seed, -2)
        x = self.integrate(x, labels, strength, 0.0, n_steps, clip=mode == "sdedit")
        return self.denormalize(x, event_energy(images), seed)

    def _image_condition(self, images, labels, x):
        """Labels (null by default) and, with energy conditioning, the energy of each GeV image (N, S, S, C)."""
        labels = self._labels_or_null(labels, x)
        if not self.energy_conditioning:
            return labels
        return labels, self.image_condition(images)

    @staticmethod
    def _labels_or_null(labels, x):
        if labels is None:
            return ops.full((ops.shape(x)[0],), NULL_LABEL, dtype="int32")
        return ops.cast(ops.reshape(ops.convert_to_tensor(labels), (-1,)), "int32")


# ---------------------------------------------------------------------------------------------------------
# compiled entry points (also the SavedModel endpoints)
# ---------------------------------------------------------------------------------------------------------
def batch_seed(seed: int, batch: int) -> int:
    """Seed of the ``batch``-th batch of a generation with ``seed`` (distinct for all seeds < 1e12)."""
    return int(seed) * 1_000_003 + int(batch)


def make_sample_fn(model: JetDiffusion):
    """Traced ``sample(n, label, steps, seed, guidance, eta) -> (n, S, S, C)`` GeV for one batch.

    ``n`` int32, ``label`` int32 (0 quark, 1 gluon, 2 unconditional), ``steps`` int32, ``seed`` int64,
    ``guidance`` float32 (1 = conditional), ``eta`` float32 (0 = DDIM, 1 = DDPM). Traced once, any values.
    """

    @tf.function(
        input_signature=[
            tf.TensorSpec((), tf.int32, name="n"),
            tf.TensorSpec((), tf.int32, name="label"),
            tf.TensorSpec((), tf.int32, name="steps"),
            tf.TensorSpec((), tf.int64, name="seed"),
            tf.TensorSpec((), tf.float32, name="guidance"),
            tf.TensorSpec((), tf.float32, name="eta"),
        ]
    )
    def sample(n, label, steps, seed, guidance, eta):
        labels = tf.fill([n], label)
        return model.sample(labels, steps=steps, eta=eta, guidance=guidance, seed=seed)

    return sample


def make_sample_labels_fn(model: JetDiffusion):
    """Traced ``sample_labels(labels (N,) int32, steps, seed, guidance, eta) -> (N, S, S, C)`` GeV."""

    @tf.function(
        input_signature=[
            tf.TensorSpec((None,), tf.int32, name="labels"),
            tf.TensorSpec((), tf.int32, name="steps"),
            tf.TensorSpec((), tf.int64, name="seed"),
            tf.TensorSpec((), tf.float32, name="guidance"),
            tf.TensorSpec((), tf.float32, name="eta"),
        ]
    )
    def sample_labels(labels, steps, seed, guidance, eta):
        return model.sample(labels, steps=steps, eta=eta, guidance=guidance, seed=seed)

    return sample_labels


def _central_window(images, size: int):
    """Offsets ``(top, left)`` of the central ``size × size`` window of ``(N, H, W, C)`` images."""
    shape = tf.shape(images)
    tf.debugging.assert_greater_equal(
        tf.minimum(shape[1], shape[2]), size, message=f"images must be at least {size}x{size} pixels"
    )
    return (shape[1] - size) // 2, (shape[2] - size) // 2


def _reconstruct_any_size(model: JetDiffusion, images, reconstruct):
    """Apply ``reconstruct`` (S×S → S×S) to the central S×S window of ``(N, H, W, C)`` GeV images
    (H, W ≥ S) and zero-pad the result back to H×W: the model represents only its window."""
    size = model.image_size
    images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    top, left = _central_window(images, size)
    window = tf.ensure_shape(images[:, top : top + size, left : left + size, :], [None, size, size, model.channels])
    out = reconstruct(window)
    paddings = [[0, 0], [top, shape[1] - size - top], [left, shape[2] - size - left], [0, 0]]
    return tf.pad(out, paddings)


def make_reconstruct_fn(model: JetDiffusion):
    """Traced ``reconstruct(images (N, H, W, C) GeV, steps int32) -> (N, H, W, C)`` GeV.

    Deterministic DDIM inversion with ``steps`` steps each way, unconditional. Images larger than the model's
    ``image_size`` S (e.g. full 125×125 events for a model trained on a 32×32 crop) are reconstructed in their
    central S×S window and the outside is returned as 0 GeV.
    """

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, None, None, model.channels), tf.float32, name="images"),
            tf.TensorSpec((), tf.int32, name="steps"),
        ]
    )
    def reconstruct(images, steps):
        return _reconstruct_any_size(model, images, lambda x: model.reconstruct(x, steps=steps))

    return reconstruct


def make_partial_reconstruct_fn(model: JetDiffusion):
    """Traced ``reconstruct_partial(images, steps, strength, seed) -> images`` (GeV; SDEdit: seeded noise at
    ``t = strength`` in (0, 1], then ``round(steps * strength)`` DDIM steps; same window rule as reconstruct)."""

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, None, None, model.channels), tf.float32, name="images"),
            tf.TensorSpec((), tf.int32, name="steps"),
            tf.TensorSpec((), tf.float32, name="strength"),
            tf.TensorSpec((), tf.int64, name="seed"),
        ]
    )
    def reconstruct_partial(images, steps, strength, seed):
        def run(x):
            return model.reconstruct(x, steps=steps, strength=strength, mode="sdedit", seed=seed)

        return _reconstruct_any_size(model, images, run)

    return reconstruct_partial


def fit_slot_overflow(
    images: np.ndarray, patch: int, slots: int, hcal_towers: bool, rings=DEFAULT_RINGS
) -> dict[str, list]:
    """``{"overflow_rates", "overflow_fractions"}`` of a :class:`JetDiffusion` with these ``patch``, ``slots``,
    ``hcal_towers`` and ``calibration_rings`` (its constructor's keyword arguments), fitted on training images
    ``(N, S, S, C)`` GeV: what the hit slots drop, per hit-slot channel and ring (:func:`fit_overflow`)."""
    size = images.shape[1]
    grid = -(-size // patch)
    fine = images[..., :-1] if hcal_towers else images
    rates, fractions = fit_overflow(fine, patch, slots, ring_of_cells(grid, grid, rings), len(rings) + 1)
    return {"overflow_rates": rates, "overflow_fractions": fractions}


def fit_slot_positions(images: np.ndarray, patch: int, slots: int, hcal_towers: bool) -> dict[str, list]:
    """``{"position_counts"}`` of a :class:`JetDiffusion` with these ``patch``, ``slots`` and ``hcal_towers``,
    fitted on training images ``(N, S, S, C)`` GeV (:func:`~hep_keras.models.slot_positions.fit_position_counts`
    of the hit-slot channels)."""
    fine = images[..., :-1] if hcal_towers else images
    return {"position_counts": fit_position_counts(fine, patch, slots).tolist()}


def representation_round_trip(model: JetDiffusion, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Real events ``(N, S, S, C)`` GeV through the model's representation and back (``normalize`` then
    ``denormalize`` with each event's own energy), no network: with hit slots, what the best generator of these
    events could hand in (a block's hits beyond the slots merged into its hottest slot; with ``overflow_rates``
    split off again at random with the training events' statistics, seeded by the batch's first index).
    Returns GeV numpy."""
    out = []
    for start in range(0, len(images), batch_size):
        x = np.asarray(images[start : start + batch_size], np.float32)
        out.append(np.asarray(model.denormalize(model.normalize(x), x.sum(axis=(1, 2, 3)), seed=start)))
    return np.concatenate(out) if out else np.zeros((0, *np.shape(images)[1:]), np.float32)


def sample_in_batches(
    sample_labels,
    labels: np.ndarray,
    steps: int,
    seed: int = 0,
    guidance: float = 1.0,
    eta: float = 0.0,
    batch_size: int = 256,
    progress=None,
) -> np.ndarray:
    """Generate one event per entry of ``labels`` with a traced ``sample_labels`` (:func:`make_sample_labels_fn`
    or the SavedModel's ``sample_labels``), batch ``b`` seeded with :func:`batch_seed`. Returns GeV numpy.
    ``progress(events_done)`` is called after every batch (e.g. ``keras.utils.Progbar.update``)."""
    labels = np.asarray(labels, dtype=np.int32).ravel()
    out = []
    for b, start in enumerate(range(0, len(labels), batch_size)):
        chunk = labels[start : start + batch_size]
        images = sample_labels(
            tf.constant(chunk),
            tf.constant(steps, tf.int32),
            tf.constant(batch_seed(seed, b), tf.int64),
            tf.constant(guidance, tf.float32),
            tf.constant(eta, tf.float32),
        )
        out.append(np.asarray(images))
        if progress is not None:
            progress(start + len(chunk))
    return np.concatenate(out) if out else np.zeros((0,), np.float32)
