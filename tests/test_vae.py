"""JetImageVAE / JetImageAE: losses, training, trackers, normalisation, save/export round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hep_keras.data.normalization import ChannelLogScale, fit_image_normalization
from hep_keras.export import export_image_autoencoder
from hep_keras.models import JetImageAE, JetImageVAE
from hep_keras.physics import PIXEL_SIZE

SIZE = 16


def sparse_images(n=32, size=SIZE, seed=0):
    rng = np.random.default_rng(seed)
    images = np.where(rng.random((n, size, size, 3)) < 0.08, rng.exponential(2.0, (n, size, size, 3)), 0.0)
    images[:, size // 2, size // 2, :] += rng.uniform(5, 20, (n, 3))  # a jet core
    return images.astype("float32")


def tiny(cls=JetImageVAE, **kwargs):
    defaults = dict(
        image_size=SIZE,
        latent_dim=4,
        widths=[8, 8],
        seed=3,
        n_deposits=8,
        truth_deposits=16,
        hidden_units=32,
        sinkhorn_iterations=20,
        hcal_tower=4,
        **fit_image_normalization([sparse_images()]),
    )
    model = cls(**{**defaults, **kwargs})
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    return model


def test_normalization_inverse_exact_and_config_round_trip():
    layer = ChannelLogScale([0.5, 0.2, 0.05], [6.0, 7.0, 8.0])
    x = sparse_images(4)
    y = layer(x)
    assert float(tf.reduce_max(y)) < 1.5 and float(tf.reduce_min(y)) == 0.0
    np.testing.assert_allclose(layer.inverse(y), x, rtol=2e-6, atol=1e-6)
    clone = ChannelLogScale.from_config(layer.get_config())
    np.testing.assert_array_equal(clone(x), y)
    with pytest.raises(ValueError, match="positive"):
        ChannelLogScale([1.0, -1.0, 1.0], [1.0, 1.0, 1.0])


def test_fit_image_normalization_on_known_values():
    images = np.zeros((2, 4, 4, 3), np.float32)
    images[0, 0, 0, 0], images[1, 0, 0, 0], images[0, 1, 1, 0] = 1.0, 2.0, 3.0
    images[..., 1] = 0.5
    images[0, 0, 0, 2] = 4.0
    fitted = fit_image_normalization([images[:1], images[1:]])
    assert fitted["scales"] == [2.0, 0.5, 4.0]
    assert fitted["zero_thresholds"][1] == pytest.approx(0.5)
    assert fitted["zero_thresholds"][0] == pytest.approx(1.0, abs=0.01)
    assert fitted["norms"][2] == pytest.approx(np.log1p(1.0))
    assert fitted["energy_scales"] == pytest.approx([3.0, 8.0, 2.0])
    from hep_keras.physics import image_observables

    assert fitted["mass_scale"] == pytest.approx(image_observables(images)["mass"].mean())
    assert fit_image_normalization([np.zeros((2, 4, 4, 3), np.float32)])["mass_scale"] == 1.0  # blank: 1 GeV


def test_pad_crop_keeps_native_size_and_outputs_gev():
    model = tiny(image_size=13, hcal_tower=1)  # odd size: padded to 16 inside, cropped back
    out = model(sparse_images(2, size=13))
    assert out.shape == (2, 13, 13, 3)
    assert float(tf.reduce_min(out)) >= 0.0
    assert model.encode(sparse_images(2, size=13)).shape == (2, 4 + 4)  # z (4) + 3 energies + mass


def test_reconstruction_keeps_channel_energies_and_respects_thresholds():
    model = tiny(zero_thresholds=[0.3, 0.3, 0.3])
    x = sparse_images(5)
    images = model(x).numpy()
    np.testing.assert_allclose(images.sum(axis=(1, 2)), x.sum(axis=(1, 2)), rtol=1e-4)
    for event in range(5):
        for channel in range(3):
            positive = images[event, ..., channel][images[event, ..., channel] > 0]
            # every pixel passes the threshold, or the channel collapsed onto its hottest pixel
            assert positive.size == 1 or positive.min() >= 0.3 - 1e-6


def test_physics_summary_matches_numpy_observables_and_inverts():
    from hep_keras.physics import image_observables

    model = tiny(mass_scale=10.0)
    x = sparse_images(6)
    summary = model.physics_summary(x).numpy()
    obs = image_observables(x)
    np.testing.assert_allclose(np.expm1(summary[:, 3]) * 10.0, obs["mass"], rtol=1e-3)
    np.testing.assert_allclose(model.summary_energies(summary), x.sum(axis=(1, 2)), rtol=1e-4)
    code = model.encode(x)
    np.testing.assert_allclose(code[:, 4:], summary, rtol=1e-6)


def test_sinkhorn_emd_matches_known_distances():
    model = tiny(sinkhorn_epsilon=0.002, sinkhorn_iterations=60)
    pixel = PIXEL_SIZE
    x = np.array([[[0.0, 0.0], [0.0, 0.0]]], "float32")  # two deposits at the origin, weights 0.5 / 0.5
    a = np.array([[0.5, 0.5]], "float32")
    y = np.array([[[0.0, 3 * pixel], [4 * pixel, 0.0], [9.0, 9.0]]], "float32")  # last target has weight 0
    b = np.array([[0.5, 0.5, 0.0]], "float32")
    assert float(model.sinkhorn_emd(x, a, y, b)[0]) == pytest.approx(3.5 * pixel, rel=0.02)
    far = np.array([[[10 * pixel, 0.0], [10 * pixel, 0.0]]], "float32")
    assert float(model.sinkhorn_emd(far, a, far, a)[0]) == pytest.approx(0.0, abs=0.1 * pixel)


def test_render_puts_deposits_in_their_pixel_and_hcal_in_its_tower():
    model = tiny(zero_thresholds=None)
    centre = (SIZE - 1) / 2
    positions = np.zeros((1, 3, 8, 2), "float32")
    positions[0, :, :, 0] = (5 - centre) * PIXEL_SIZE  # row 5
    positions[0, :, :, 1] = (9 - centre) * PIXEL_SIZE  # column 9
    fractions = np.full((1, 3, 8), 1 / 8, "float32")
    images = model.render(positions, fractions, np.array([[8.0, 4.0, 16.0]], "float32")).numpy()[0]
    assert images[5, 9, 0] == pytest.approx(8.0) and images[5, 9, 1] == pytest.approx(4.0)
    np.testing.assert_allclose(images[4:8, 8:12, 2], 1.0)  # the 4x4 tower holding pixel (5, 9), 16 GeV / 16
    assert images[..., 2].sum() == pytest.approx(16.0)


def test_train_step_reduces_loss_and_trackers_reset_each_epoch():
    keras.utils.set_random_seed(0)
    x = sparse_images(64)
    model = tiny()
    before = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)
    history = model.fit(x, batch_size=16, epochs=12, verbose=0)
    after = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)
    assert after["loss"] < 0.85 * before["loss"]
    assert set(history.history) == {"loss", "emd_loss", "kl_loss"}
    # per-epoch values are epoch means, not running totals: the trackers restart every epoch
    losses = history.history["emd_loss"]
    assert losses[-1] < losses[0]
    again = model.evaluate(x, batch_size=32, verbose=0, return_dict=True)
    assert again["loss"] == pytest.approx(after["loss"], rel=1e-6)


def test_kl_warmup_ramps_linearly():
    model = tiny(beta=2.0, kl_warmup_steps=10)
    model.optimizer.build(model.trainable_variables)
    assert float(model.kl_weight()) == 0.0
    model.optimizer.iterations.assign(5)
    assert float(model.kl_weight()) == pytest.approx(1.0)
    model.optimizer.iterations.assign(50)
    assert float(model.kl_weight()) == pytest.approx(2.0)


def test_ae_is_deterministic_in_training_where_the_vae_samples():
    x = sparse_images(4)
    ae, vae = tiny(JetImageAE), tiny(JetImageVAE)
    assert not ae.variational and vae.variational
    assert [m.name for m in ae.metrics] == ["loss", "emd_loss"]
    assert "beta" not in ae.get_config()
    # the training-mode loss draws a latent sample in the VAE only; the AE's equals its inference-mode loss
    ae_losses = [float(ae.compute_losses(x, training=mode)["emd_loss"]) for mode in (True, False)]
    vae_losses = [float(vae.compute_losses(x, training=mode)["emd_loss"]) for mode in (True, False)]
    assert ae_losses[0] == pytest.approx(ae_losses[1], rel=1e-6)
    assert vae_losses[0] != pytest.approx(vae_losses[1], rel=1e-6)


@pytest.mark.parametrize("cls", [JetImageVAE, JetImageAE])
def test_keras_file_round_trip_reproduces_outputs(tmp_path, cls):
    x = sparse_images(8)
    model = tiny(cls)
    model.fit(x, batch_size=8, epochs=1, verbose=0)  # trained only through train_step, never called
    expected = model.predict(x, verbose=0)
    model.save(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(reloaded) is cls
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert reloaded.get_config() == model.get_config()


def test_saved_model_endpoints_match_keras_model(tmp_path):
    x = sparse_images(8)
    model = tiny()
    model.fit(x, batch_size=8, epochs=1, verbose=0)
    export_image_autoencoder(model, tmp_path / "sm")
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    np.testing.assert_allclose(loaded.reconstruct(x), model(x), rtol=1e-5, atol=1e-6)
    code = loaded.encode(x)
    np.testing.assert_allclose(code, model.encode(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.decode(code), model.decode(code), rtol=1e-5, atol=1e-6)


def test_trained_tiny_model_keeps_far_from_axis_energy_share():
    """The check that would have caught the spurious second blob: after training, the share of calorimeter
    energy far from the axis in the reconstructions of held-out events stays within tolerance of the data's."""
    from hep_keras.evaluation.fidelity import outer_ring_share

    size, rng = 32, np.random.default_rng(1)
    x = np.zeros((96, size, size, 3), "float32")
    x[:, 15:17, 15:17, :] = rng.uniform(2, 4, (96, 1, 1, 3))  # core
    for i in range(96):  # one deposit far from the axis, at one of two places
        row, col = ((3, 15), (28, 16))[rng.integers(2)]
        x[i, row, col, 1:] += rng.uniform(4, 8)
    keras.utils.set_random_seed(0)
    model = tiny(image_size=size, zero_thresholds=[0.2, 0.2, 0.01], hcal_tower=1)
    model.fit(x[:64], batch_size=16, epochs=40, verbose=0)
    radius = 9 * PIXEL_SIZE
    data_share = outer_ring_share(x[64:], radius)
    assert data_share == pytest.approx(0.34, abs=0.02)
    assert outer_ring_share(model.predict(x[64:], verbose=0), radius) == pytest.approx(data_share, rel=0.2)
