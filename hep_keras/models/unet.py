"""Conditional U-Net used as the denoiser of :class:`hep_keras.models.diffusion.JetDiffusion`.

:func:`build_unet` returns a functional ``keras.Model`` (like the keras.io DDIM example), so it is built at
construction and round-trips through ``.keras`` files without custom ``build`` code:

``inputs``  ``[noisy (N, H, W, C) float32, times (N,) float32 in [0, 1], labels (N,) int32]`` and, with
            ``energy_conditioning``, ``energies (N,) float32`` (the standardised log event energy)
``output``  ``(N, H, W, C)`` float32: the predicted noise ε or velocity v (see ``JetDiffusion.prediction``)

Architecture: a 3×3 stem convolution, then per resolution level ``blocks_per_level`` residual blocks
(GroupNorm → swish → conv, twice, with the time+label embedding added in between, or with ``scale_shift``
scaling and shifting the second GroupNorm's output), a strided-convolution
downsample between levels, a middle block (residual, optional self-attention at the lowest resolution,
residual), and the mirrored upsampling path (nearest-neighbour ×2 + conv) with skip concatenations. The time
is embedded sinusoidally; the label is embedded with ``num_classes + 1`` rows, the last one being the "null"
label used for classifier-free guidance; an energy condition goes through a two-layer MLP and is added to the
same embedding. H and W must be divisible by ``2 ** (len(widths) - 1)``; the
diffusion model pads its images to satisfy this.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="hep_keras")
class SinusoidalEmbedding(layers.Layer):
    """Transformer-style sinusoidal embedding of a scalar per example.

    ``call(t)``: ``t`` (N,) or (N, 1) float → (N, dim) float32 with ``sin`` in the first half and ``cos`` in
    the second; frequencies are geometric between 1 and ``1 / max_period`` and ``t`` is multiplied by
    ``scale`` first (times in [0, 1] are scaled to [0, 1000], as for a discrete 1000-step schedule).
    """

    def __init__(self, dim: int = 64, scale: float = 1000.0, max_period: float = 10000.0, **kwargs):
        super().__init__(**kwargs)
        if dim % 2:
            raise ValueError(f"SinusoidalEmbedding dim must be even, got {dim}")
        self.dim = int(dim)
        self.scale = float(scale)
        self.max_period = float(max_period)

    def call(self, t):
        t = ops.reshape(ops.cast(t, "float32"), (-1, 1)) * self.scale
        half = self.dim // 2
        freqs = ops.exp(-math.log(self.max_period) * ops.arange(half, dtype="float32") / half)
        angles = t * ops.expand_dims(freqs, 0)
        return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "scale": self.scale, "max_period": self.max_period}


def _groups(width: int, max_groups: int = 8) -> int:
    """Largest number of GroupNorm groups ≤ ``max_groups`` that divides ``width``."""
    return next(g for g in range(min(max_groups, width), 0, -1) if width % g == 0)


def residual_block(x, emb, width: int, name: str, dropout: float = 0.0, scale_shift: bool = False):
    """GroupNorm-swish-conv ×2 with the embedding entering after the first conv; 1×1 conv on the skip if needed.

    ``x`` (N, H, W, C_in), ``emb`` (N, E) → (N, H, W, width). The embedding is added to the features before the
    second GroupNorm, or with ``scale_shift`` (FiLM, "adaptive GroupNorm" of Dhariwal & Nichol's ADM) scales and
    shifts them after it: ``norm(h) · (1 + s) + b`` with ``s, b`` two dense maps of the embedding (``s`` starts at
    0), so the condition can switch features on and off instead of only biasing them before a norm that removes
    most of a bias.
    """
    skip = x if x.shape[-1] == width else layers.Conv2D(width, 1, name=f"{name}_skip")(x)
    h = layers.GroupNormalization(_groups(x.shape[-1]), name=f"{name}_norm1")(x)
    h = layers.Activation("swish", name=f"{name}_act1")(h)
    h = layers.Conv2D(width, 3, padding="same", name=f"{name}_conv1")(h)
    e = layers.Dense(width, name=f"{name}_emb")(emb)
    e = layers.Reshape((1, 1, width), name=f"{name}_emb_reshape")(e)
    if scale_shift:
        s = layers.Dense(width, kernel_initializer="zeros", name=f"{name}_emb_scale")(emb)
        s = layers.Reshape((1, 1, width), name=f"{name}_emb_scale_reshape")(s)
        h = layers.GroupNormalization(_groups(width), name=f"{name}_norm2")(h)
        h = layers.Add(name=f"{name}_scale")([h, layers.Multiply(name=f"{name}_times_scale")([h, s])])
        h = layers.Add(name=f"{name}_add_emb")([h, e])
    else:
        h = layers.Add(name=f"{name}_add_emb")([h, e])
        h = layers.GroupNormalization(_groups(width), name=f"{name}_norm2")(h)
    h = layers.Activation("swish", name=f"{name}_act2")(h)
    if dropout:
        h = layers.Dropout(dropout, name=f"{name}_dropout")(h)
    h = layers.Conv2D(width, 3, padding="same", kernel_initializer="zeros", name=f"{name}_conv2")(h)
    return layers.Add(name=f"{name}_out")([skip, h])


def attention_block(x, name: str, heads: int = 4):
    """Pre-norm multi-head self-attention over the H·W positions with a residual connection."""
    _, height, width, channels = x.shape
    h = layers.GroupNormalization(_groups(channels), name=f"{name}_norm")(x)
    h = layers.Reshape((height * width, channels), name=f"{name}_flatten")(h)
    h = layers.MultiHeadAttention(heads, max(channels // heads, 1), name=f"{name}_mha")(h, h)
    h = layers.Reshape((height, width, channels), name=f"{name}_unflatten")(h)
    return layers.Add(name=f"{name}_out")([x, h])


def build_unet(
    image_shape: tuple[int, int, int],
    widths: tuple[int, ...] = (16, 32, 64),
    blocks_per_level: int = 1,
    attention: bool = True,
    embed_dim: int = 64,
    num_classes: int = 2,
    dropout: float = 0.0,
    head_width: int = 0,
    energy_conditioning: bool = False,
    condition_size: int = 1,
    scale_shift: bool = False,
    name: str = "unet",
) -> keras.Model:
    """Build the conditional U-Net (functional ``keras.Model``, see the module docstring).

    Args:
        image_shape: ``(H, W, C)``; H and W divisible by ``2 ** (len(widths) - 1)``.
        widths: channels per resolution level (one downsampling between consecutive levels).
        blocks_per_level: residual blocks per level on the way down (one more on the way up).
        attention: self-attention in the middle block (lowest resolution).
        embed_dim: size of the sinusoidal time embedding; the joint time+label embedding has 4× this.
        num_classes: number of real labels; label ``num_classes`` is the "null" label (unconditional).
        dropout: dropout rate inside the residual blocks.
        head_width: width of the per-cell head (0 = none): two 1×1 convolutions over the last features, the
            noisy input itself and the time+label embedding, whose output joins the last features before the
            output convolution. Without it every output channel of a cell is a function of ``widths[0]``
            features; a patch grid has more channels per cell than that (51 for 5×5 patches with HCAL towers),
            so the network cannot even pass each folded pixel's own noise through (see docs/diffusion.md).
        energy_conditioning: a fourth input, one float per event (the standardised log of its energy), embedded
            by a two-layer MLP and added to the time+label embedding.
        condition_size: numbers in that input per event: 1 (shape ``(N,)``) or more (shape ``(N, condition_size)``,
            e.g. the energy and each channel's hit count).
        scale_shift: the embedding scales and shifts each residual block's normalised features (FiLM, see
            :func:`residual_block`) instead of being added before the norm.
    """
    height, width, channels = image_shape
    factor = 2 ** (len(widths) - 1)
    if height % factor or width % factor:
        raise ValueError(f"image size {height}x{width} is not divisible by {factor} (= 2**(len(widths)-1))")
    noisy = keras.Input(shape=(height, width, channels), name="noisy_images")
    times = keras.Input(shape=(), name="times")
    labels = keras.Input(shape=(), dtype="int32", name="labels")

    emb = SinusoidalEmbedding(embed_dim, name="time_sinusoid")(times)
    emb = layers.Dense(4 * embed_dim, activation="swish", name="time_dense1")(emb)
    emb = layers.Dense(4 * embed_dim, name="time_dense2")(emb)
    label_emb = layers.Embedding(num_classes + 1, 4 * embed_dim, name="label_embedding")(labels)
    emb = layers.Add(name="time_label_embedding")([emb, label_emb])
    inputs = [noisy, times, labels]
    if energy_conditioning:
        energies = keras.Input(shape=() if condition_size == 1 else (condition_size,), name="energies")
        e = layers.Reshape((condition_size,), name="energy_reshape")(energies)
        e = layers.Dense(4 * embed_dim, activation="swish", name="energy_dense1")(e)
        e = layers.Dense(4 * embed_dim, name="energy_dense2")(e)
        emb = layers.Add(name="time_label_energy_embedding")([emb, e])
        inputs.append(energies)

    x = layers.Conv2D(widths[0], 3, padding="same", name="stem")(noisy)
    skips = [x]
    for level, w in enumerate(widths):
        for block in range(blocks_per_level):
            x = residual_block(x, emb, w, f"down{level}_{block}", dropout, scale_shift)
            skips.append(x)
        if level < len(widths) - 1:
            x = layers.Conv2D(w, 3, strides=2, padding="same", name=f"down{level}_pool")(x)
            skips.append(x)

    x = residual_block(x, emb, widths[-1], "mid_0", dropout, scale_shift)
    if attention:
        x = attention_block(x, "mid_attention")
    x = residual_block(x, emb, widths[-1], "mid_1", dropout, scale_shift)

    for level in reversed(range(len(widths))):
        for block in range(blocks_per_level + 1):
            x = layers.Concatenate(name=f"up{level}_{block}_concat")([x, skips.pop()])
            x = residual_block(x, emb, widths[level], f"up{level}_{block}", dropout, scale_shift)
        if level > 0:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"up{level}_upsample")(x)
            x = layers.Conv2D(widths[level - 1], 3, padding="same", name=f"up{level}_upconv")(x)

    x = layers.GroupNormalization(_groups(widths[0]), name="out_norm")(x)
    x = layers.Activation("swish", name="out_act")(x)
    if head_width:
        h = layers.Concatenate(name="head_concat")([x, noisy])
        h = layers.Conv2D(head_width, 1, name="head_conv1")(h)
        e = layers.Dense(head_width, name="head_emb")(emb)
        h = layers.Add(name="head_add_emb")([h, layers.Reshape((1, 1, head_width), name="head_emb_reshape")(e)])
        h = layers.Activation("swish", name="head_act1")(h)
        h = layers.Conv2D(head_width, 1, activation="swish", name="head_conv2")(h)
        x = layers.Concatenate(name="head_out")([x, h])
    # float32 output under mixed precision (the loss and the sampler work in float32)
    out = layers.Conv2D(channels, 3, padding="same", kernel_initializer="zeros", dtype="float32", name="out_conv")(x)
    return keras.Model(inputs, out, name=name)
