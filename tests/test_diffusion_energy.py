"""Energy conditioning of the diffusion model: the fitted spectrum, seeded draws, and a model that uses it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from hep_keras.models.diffusion import JetDiffusion, fit_energy_quantiles, fit_intensity_transform

SIZE = 8


def one_hit_images(energies: np.ndarray) -> np.ndarray:
    """(N, 8, 8, 3) GeV images whose only hit is the Tracks centre pixel with the given energies."""
    images = np.zeros((len(energies), SIZE, SIZE, 3), "float32")
    images[:, SIZE // 2, SIZE // 2, 0] = energies
    return images


def test_fit_energy_quantiles_known_answer():
    """Quantiles of log(total energy) per class, at evenly spaced probabilities including 0 and 1."""
    totals = np.array([10.0, 20.0, 40.0, 100.0, 200.0, 400.0, 800.0])
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    images = one_hit_images(totals / 2)
    images[:, 0, 0, 2] = totals / 2  # the total sums all pixels and channels
    quark, gluon = fit_energy_quantiles(images, labels, n_quantiles=3)
    np.testing.assert_allclose(quark, np.log([10.0, 20.0, 40.0]), rtol=1e-6)
    np.testing.assert_allclose(gluon, np.log([100.0, np.sqrt(200.0 * 400.0), 800.0]), rtol=1e-6)  # median in log E
    only_quarks = fit_energy_quantiles(images[:3], labels[:3], n_quantiles=3)
    assert only_quarks[0] == only_quarks[1]  # a class without events takes the other's spectrum


def energy_model(quantiles, **kwargs) -> JetDiffusion:
    images = one_hit_images(np.geomspace(2.0, 200.0, 16))
    return JetDiffusion(
        image_size=SIZE, widths=[8, 16], embed_dim=8, attention=False, ema=0.9, energy_quantiles=quantiles,
        **fit_intensity_transform(images), **kwargs,
    )  # fmt: skip


def test_drawn_energies_follow_each_class_spectrum_and_are_seeded():
    """Quark and gluon totals are drawn from their own spectra (here disjoint: 10-20 GeV and 100-200 GeV),
    label 2 from the equal mixture; the same seed gives the same energies."""
    quark, gluon = np.log(np.linspace(10.0, 20.0, 33)), np.log(np.linspace(100.0, 200.0, 33))
    model = energy_model([quark.tolist(), gluon.tolist()])
    labels = tf.constant(np.repeat([0, 1, 2], 4000), tf.int32)
    drawn = np.asarray(model.draw_energies(labels, 7)).reshape(3, 4000)
    assert 10.0 <= drawn[0].min() and drawn[0].max() <= 20.0 and 100.0 <= drawn[1].min() and drawn[1].max() <= 200.0
    # linearly spaced quantiles in E: the draws are uniform on [10, 20] and [100, 200] GeV
    np.testing.assert_allclose(np.median(drawn[0]), 15.0, rtol=0.02)
    np.testing.assert_allclose(np.median(drawn[1]), 150.0, rtol=0.02)
    np.testing.assert_allclose(np.mean(drawn[2] < 50.0), 0.5, atol=0.03)  # pooled: half quark-like, half gluon-like
    np.testing.assert_array_equal(drawn, np.asarray(model.draw_energies(labels, 7)).reshape(3, 4000))
    assert not np.array_equal(drawn, np.asarray(model.draw_energies(labels, 8)).reshape(3, 4000))


def test_bad_energy_quantiles_are_rejected():
    with pytest.raises(ValueError, match="increasing"):
        energy_model([[3.0, 2.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="equally long"):
        energy_model([[1.0, 2.0], [1.0, 2.0, 3.0]])


@pytest.fixture(scope="module")
def trained_energy_model():
    """A tiny energy-conditioned model trained on one-hit events whose energy spans 2-200 GeV."""
    keras.utils.set_random_seed(0)
    energies = np.exp(np.random.default_rng(0).uniform(np.log(2.0), np.log(200.0), 256)).astype("float32")
    images, labels = one_hit_images(energies), (np.arange(256) % 2).astype("float32")
    model = energy_model(fit_energy_quantiles(images, labels, 17))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
    model.fit(images, labels, batch_size=32, epochs=60, verbose=0)
    return model


def test_generated_events_carry_the_requested_energy(trained_energy_model):
    """The only thing that sets a one-hit event's energy is the condition: asking for 5 GeV and for 100 GeV
    gives events whose hits differ by about that factor (the condition reaches the denoiser and is used)."""
    model = trained_energy_model
    labels = np.zeros(32, "int32")
    soft = np.asarray(model.sample(labels, steps=10, seed=3, energies=np.full(32, 5.0, "float32")))
    hard = np.asarray(model.sample(labels, steps=10, seed=3, energies=np.full(32, 100.0, "float32")))
    soft_total, hard_total = np.median(soft.sum(axis=(1, 2, 3))), np.median(hard.sum(axis=(1, 2, 3)))
    # an unconditioned model would give both the same spectrum (ratio 1); measured here: 5.5 and 53 GeV
    assert 2.0 < soft_total < 12.0 and hard_total > 4 * soft_total, (soft_total, hard_total)


def test_energy_conditioned_model_round_trips_through_a_keras_file(trained_energy_model, tmp_path):
    model = trained_energy_model
    path = tmp_path / "energy.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.energy_conditioning and loaded.energy_quantiles == model.energy_quantiles
    labels = np.array([0, 1, 2], "int32")
    np.testing.assert_allclose(
        np.asarray(loaded.sample(labels, steps=3, seed=5)), np.asarray(model.sample(labels, steps=3, seed=5)), atol=1e-5
    )
    images = one_hit_images(np.array([3.0, 30.0, 150.0], "float32"))
    np.testing.assert_allclose(  # reconstruction conditions on the energy of the image it reconstructs
        np.asarray(loaded.reconstruct(images, steps=8)), np.asarray(model.reconstruct(images, steps=8)), atol=1e-4
    )


def fraction_model(thresholds=(0.0, 0.0, 0.0)) -> JetDiffusion:
    """A tiny untrained 8x8 model that diffuses energy fractions (transform fitted on fractions)."""
    rng = np.random.default_rng(0)
    images = np.where(rng.random((16, SIZE, SIZE, 3)) < 0.2, rng.exponential(5.0, (16, SIZE, SIZE, 3)), 0.0)
    images = images.astype("float32")
    totals = images.sum(axis=(1, 2, 3), keepdims=True)
    transform = {**fit_intensity_transform(images / totals), "thresholds": list(thresholds)}
    quantiles = fit_energy_quantiles(images, np.arange(16) % 2, 9)
    return JetDiffusion(
        image_size=SIZE, widths=[8, 16], embed_dim=8, attention=False, energy_quantiles=quantiles,
        energy_fractions=True, **transform,
    ), images  # fmt: skip


def test_energy_fractions_round_trip_and_generated_totals_equal_the_condition():
    """normalize -> denormalize with the events' energies is exact; generated and reconstructed events add up
    to their energy condition (by construction: that is what energy_fractions does), and every hit is raised
    to its channel's GeV threshold after the scaling."""
    model, images = fraction_model()
    totals = images.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(model.denormalize(model.normalize(images), totals)), images, atol=1e-4)
    with pytest.raises(ValueError, match="energies"):
        model.denormalize(model.normalize(images))
    requested = np.array([40.0, 400.0, 1000.0], "float32")
    generated = np.asarray(model.sample(np.array([0, 1, 2]), steps=3, seed=2, energies=requested))
    np.testing.assert_allclose(generated.sum(axis=(1, 2, 3)), requested, rtol=1e-4)
    reconstructed = np.asarray(model.reconstruct(images[:4], steps=3))
    np.testing.assert_allclose(reconstructed.sum(axis=(1, 2, 3)), totals[:4], rtol=1e-4)
    thresholded, _ = fraction_model(thresholds=(1.0, 2.0, 3.0))
    generated = np.asarray(thresholded.sample(np.array([0, 1]), steps=3, seed=2, energies=requested[:2]))
    for c, threshold in enumerate((1.0, 2.0, 3.0)):
        hits = generated[..., c][generated[..., c] > 0]
        assert hits.size and hits.min() >= threshold - 1e-5


def test_energy_fractions_need_energy_conditioning():
    from hep_keras.errors import ConfigError
    from hep_keras.training.config import COMMON_DEFAULTS
    from hep_keras.training.recipes import diffusion as recipe

    with pytest.raises(ValueError, match="energy_fractions needs energy conditioning"):
        JetDiffusion(image_size=SIZE, widths=[8, 16], embed_dim=8, energy_fractions=True)
    config = {**COMMON_DEFAULTS, **recipe.DEFAULTS, "energy_conditioning": False, "energy_fractions": True}
    with pytest.raises(ConfigError, match="'energy_fractions' needs 'energy_conditioning'"):
        recipe.validate(config)
