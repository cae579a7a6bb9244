"""Every SavedModel endpoint takes float32 or float64 inputs of any batch size and compiles under XLA.

``tf.function(jit_compile=True)`` around the *loaded* endpoint must give the numbers of the plain call (what a
GPU/TPU server does). One test per model; tiny untrained models (the graph, not the training, is tested).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

SIZE = 16


def images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((n, size, size, 3)) < 0.1, rng.exponential(1.0, (n, size, size, 3)), 0.0)
    x[:, size // 2, size // 2, :] += 10.0
    return x.astype(np.float32)


def check_endpoint(endpoint, data: np.ndarray, *rest, rtol=1e-5, atol=1e-5) -> np.ndarray:
    """float32 and float64 data give the same float32 result; XLA around the endpoint gives it too."""
    out32 = endpoint(tf.constant(data.astype(np.float32)), *rest)
    out64 = endpoint(tf.constant(data.astype(np.float64)), *rest)
    assert out32.dtype == tf.float32 and out64.dtype == tf.float32
    np.testing.assert_allclose(out64.numpy(), out32.numpy(), rtol=rtol, atol=atol)
    xla = tf.function(lambda x: endpoint(x, *rest), jit_compile=True)
    np.testing.assert_allclose(xla(tf.constant(data)).numpy(), out32.numpy(), rtol=rtol, atol=atol)
    return out32.numpy()


@pytest.mark.parametrize("variational", [True, False])
def test_image_autoencoder_endpoints(variational, tmp_path):
    from hep_keras.models import JetImageAE, JetImageVAE
    from hep_keras.training.recipes import vae as recipe

    kwargs = {
        "image_size": SIZE,
        "widths": [8, 8],
        "latent_dim": 2,
        "zero_thresholds": [0.05, 0.05, 0.05],
        "hcal_tower": 4,
    }
    model = JetImageVAE(**kwargs) if variational else JetImageAE(**kwargs)
    norm = {"scales": [1.0] * 3, "norms": [1.0] * 3, "energy_scales": [1.0] * 3, "mass_scale": 1.0}
    data = recipe.ImageData(None, None, {"image_shape": [SIZE, SIZE, 3]}, normalization=norm)
    recipe.export(model, {}, data, tmp_path)
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    for n in (1, 5):
        x = images(n)
        recon = check_endpoint(loaded.reconstruct, x)
        np.testing.assert_allclose(recon, np.asarray(model(x)), rtol=1e-4, atol=1e-5)
        code = check_endpoint(loaded.encode, x)
        assert code.shape == (n, model.code_dim)
        check_endpoint(loaded.decode, code)


def test_compressor_endpoints(tmp_path):
    from test_compressor import toy_table

    from hep_keras.models import JetCompressor
    from hep_keras.training.recipes import compressor as recipe

    model = JetCompressor(widths=[16, 8])
    recipe.export(model, {}, recipe.JetData(None, None, {}), tmp_path)
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    jets = toy_table(7).four_vectors(np.float64)  # float64 is what a physicist's table holds
    for n in (1, 7):
        z = check_endpoint(loaded.encode, jets[:n])
        np.testing.assert_allclose(z, np.asarray(model.encode(jets[:n].astype(np.float32))), rtol=1e-5, atol=1e-6)
        check_endpoint(loaded.decode, z.astype(np.float64))


@pytest.mark.parametrize("energy", [False, True], ids=["label-only", "energy-fractions"])
def test_diffusion_endpoints(tmp_path, energy):
    """Every endpoint runs on any batch size, and sampling gives the same events under XLA (with the energy
    conditioning of the recipe's default, whose energy draws must be seeded identically with and without XLA,
    and its calibration)."""
    from hep_keras.models.diffusion import JetDiffusion
    from hep_keras.training.config import COMMON_DEFAULTS
    from hep_keras.training.recipes import diffusion as recipe

    x = images(5, size=8)
    config = {**COMMON_DEFAULTS, **recipe.DEFAULTS, "energy_conditioning": energy, "energy_fractions": energy}
    transform, conditions = recipe.fit_model_constants(config, x, np.array([0, 1, 0, 1, 0]))
    model = JetDiffusion(
        image_size=8, widths=[8, 8], embed_dim=8, attention=False, **transform, **conditions,
        energy_fractions=energy,
    )  # fmt: skip
    if energy:  # as fit leaves it: with the quantile calibration of generated energies and hit counts
        model.fit_calibration(x, np.array([0, 1, 0, 1, 0]), steps=2, hit_counts=True)
    data = recipe.DiffusionData(None, None, {}, image_size=8, crop=8, transform=transform, conditions=conditions)
    recipe.export(model, {}, data, tmp_path)
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    steps, seed = tf.constant(3, tf.int32), tf.constant(4, tf.int64)
    for n in (1, 5):
        assert check_endpoint(loaded.reconstruct, x[:n], steps, atol=1e-4).shape == (n, 8, 8, 3)
    check_endpoint(loaded.reconstruct_partial, x[:3], steps, tf.constant(0.5), seed, atol=1e-4)
    labels = tf.constant([0, 1, 2], tf.int32)
    args = (steps, seed, tf.constant(1.0), tf.constant(0.0))
    generated = loaded.sample_labels(labels, *args)
    assert generated.shape == (3, 8, 8, 3)
    xla = tf.function(lambda: loaded.sample_labels(labels, *args), jit_compile=True)
    np.testing.assert_allclose(xla().numpy(), generated.numpy(), rtol=1e-5, atol=1e-4)
    # sample(n, ...): under XLA the event count must be a constant (sample_labels takes any labels tensor)
    sample = tf.function(lambda: loaded.sample(tf.constant(2), tf.constant(1), *args), jit_compile=True)
    expected = loaded.sample(tf.constant(2), tf.constant(1), *args).numpy()
    np.testing.assert_allclose(sample().numpy(), expected, rtol=1e-5, atol=1e-4)
