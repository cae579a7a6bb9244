"""The hit slots' positions denoised by their exact posterior mean (hep_keras.models.slot_positions)."""

import numpy as np
import pytest
from keras import ops

from hep_keras.models.diffusion import JetDiffusion, fit_intensity_transform, fit_slot_positions
from hep_keras.models.slot_positions import (
    PSEUDO_HITS,
    RING_SMOOTHING,
    fit_position_counts,
    position_levels,
    position_log_prior,
    posterior_mean_positions,
)


def test_fit_position_counts_known_answer():
    """Block (0, 0): the hottest hit on pixel (1, 2) in both events, the second on (4, 0) in event 0 only; block
    (0, 1) of channel 1: one hit on (0, 0) (pixel 0 of the block at image column 5) in event 1."""
    images = np.zeros((2, 10, 10, 2), "float32")
    images[:, 1, 2, 0] = 5.0
    images[0, 4, 0, 0] = 2.0
    images[1, 0, 5, 1] = 1.0
    counts = fit_position_counts(images, 5, 2, batch_size=1)
    assert counts.shape == (2, 2, 2, 2, 25) and counts.sum() == 4
    assert counts[0, 0, 0, 0, 1 * 5 + 2] == 2 and counts[1, 0, 0, 0, 4 * 5 + 0] == 1
    assert counts[0, 1, 0, 1, 0] == 1
    assert fit_slot_positions(images, 5, 2, hcal_towers=True)["position_counts"] == counts[:, :1].tolist()


def test_position_log_prior_shrinks_each_block_towards_its_ring():
    counts = np.zeros((1, 1, 1, 2, 4), np.int64)  # 2x2 patches: 4 pixels; one slot, one channel, blocks A and B
    counts[0, 0, 0, 0, 0] = 30  # block A: 30 hits on pixel 0
    counts[0, 0, 0, 1, 3] = 10  # block B: 10 hits on pixel 3; both in ring 0
    prior = np.exp(position_log_prior(counts, np.array([[0, 0]])))
    ring = np.array([30, 0, 0, 10]) + RING_SMOOTHING
    ring = ring / ring.sum()
    for block, own in ((0, [30, 0, 0, 0]), (1, [0, 0, 0, 10])):
        expected = np.array(own) + PSEUDO_HITS * ring
        np.testing.assert_allclose(prior[0, 0, 0, block], expected / expected.sum(), rtol=1e-5)


def test_posterior_mean_known_answers():
    rows, cols = position_levels(5)
    np.testing.assert_allclose(rows.reshape(5, 5)[:, 0], [-1, -0.5, 0, 0.5, 1])
    np.testing.assert_allclose(cols.reshape(5, 5)[0], [-1, -0.5, 0, 0.5, 1])
    uniform = np.zeros((1, 1, 1, 25), "float32")
    noisy_row = np.array([[[[0.44]]], [[[-0.9]]]], "float32")  # (2, 1, 1, 1)
    noisy_col = np.array([[[[0.1]]], [[[0.8]]]], "float32")
    # almost no noise: the nearest pixel (x_t / α rounded to a level)
    row, col = posterior_mean_positions(noisy_row, noisy_col, uniform, 0.999, 0.01, 5)
    np.testing.assert_allclose(np.asarray(row)[:, 0, 0, 0], [0.5, -1.0], atol=1e-4)
    np.testing.assert_allclose(np.asarray(col)[:, 0, 0, 0], [0.0, 1.0], atol=1e-4)
    # no signal: the prior's mean, here 3 / 4 on pixel (0, 4) and 1 / 4 on (4, 0)
    prior = np.full((1, 1, 1, 25), -np.inf, "float32")
    prior[..., 4], prior[..., 20] = np.log(0.75), np.log(0.25)
    row, col = posterior_mean_positions(noisy_row, noisy_col, prior, 0.0, 1.0, 5)
    np.testing.assert_allclose(np.asarray(row)[:, 0, 0, 0], [-0.5, -0.5], atol=1e-6)
    np.testing.assert_allclose(np.asarray(col)[:, 0, 0, 0], [0.5, 0.5], atol=1e-6)
    # in between: the Gaussian likelihood of each of the two pixels weighs the prior (closed form)
    alpha, sigma = 0.6, 0.8
    row, _ = posterior_mean_positions(noisy_row, noisy_col, prior, alpha, sigma, 5)
    for n, (x_row, x_col) in enumerate([(0.44, 0.1), (-0.9, 0.8)]):
        log_w = [
            np.log(p) - ((x_row - alpha * r) ** 2 + (x_col - alpha * c) ** 2) / (2 * sigma**2)
            for p, r, c in ((0.75, -1, 1), (0.25, 1, -1))
        ]
        w = np.exp(log_w - np.max(log_w))
        assert np.asarray(row)[n, 0, 0, 0] == pytest.approx((w @ [-1, 1]) / w.sum(), abs=1e-5)


def _tiny_slot_model(position_counts=None) -> JetDiffusion:
    images = np.zeros((4, 20, 20, 3), "float32")
    images[:, ::3, ::4] = 1.0
    kwargs = dict(image_size=20, widths=[8, 8], embed_dim=8, attention=False, patch=5, slots=2, seed=3)
    return JetDiffusion(**kwargs, **fit_intensity_transform(images), position_counts=position_counts)


def _slot_counts(*pixel_counts: dict[int, int]) -> np.ndarray:
    """Counts (2 slots, 3 channels, 4 x 4 blocks, 25 pixels): in every block and channel slot ``s`` hit pixel
    ``k`` ``pixel_counts[s][k]`` times (so many that the ring's share is negligible)."""
    counts = np.zeros((2, 3, 4, 4, 25), np.int64)
    for slot, hits in enumerate(pixel_counts):
        for pixel, n in hits.items():
            counts[slot, ..., pixel] = n
    return counts


def test_denoise_takes_the_positions_from_the_prior_and_keeps_the_rest():
    plain, model = _tiny_slot_model(), _tiny_slot_model(_slot_counts({7: 10**6}, {13: 10**6}))
    model.set_weights(plain.get_weights())
    noisy = ops.convert_to_tensor(np.random.default_rng(0).normal(size=(2, 4, 4, 18)).astype("float32"))
    labels = ops.convert_to_tensor(np.array([0, 1], "int32"))
    eps_plain, x0_plain = (np.asarray(v) for v in plain.denoise(noisy, 0.5, labels, clip=True))
    eps, x0 = (np.asarray(v) for v in model.denoise(noisy, 0.5, labels, clip=True))
    position = model._is_position
    rows, cols = x0[..., position][..., 0::2], x0[..., position][..., 1::2]  # 2 slots x 3 channels, slot-major
    np.testing.assert_allclose(rows[..., :3], -0.5, atol=1e-4)  # slot 0: pixel 7 = row 1, column 2
    np.testing.assert_allclose(cols[..., :3], 0.0, atol=1e-4)
    np.testing.assert_allclose(rows[..., 3:], 0.0, atol=1e-4)  # slot 1: pixel 13 = row 2, column 3
    np.testing.assert_allclose(cols[..., 3:], 0.5, atol=1e-4)
    np.testing.assert_array_equal(x0[..., ~position], x0_plain[..., ~position])  # energies: the network's
    np.testing.assert_array_equal(eps[..., ~position], eps_plain[..., ~position])
    sigma, alpha = (float(v) for v in model.schedule_rates(0.5))
    np.testing.assert_allclose(alpha * x0 + sigma * eps, np.asarray(noisy), atol=1e-5)  # ε̂ is the noise x_t holds


def _sampled_pixels(model: JetDiffusion, events: int = 64) -> np.ndarray:
    """Pixel (0..24) of every slot of ``events`` sampled events, ``(events, 4, 4, 2 slots, 3 channels)``; -1 off
    the pixel grid (more than 0.1 from a level)."""
    x, _ = model.sample_normalized(np.zeros(events, "int32"), steps=25, seed=1)
    x = np.asarray(x)[..., model._is_position]
    rows, cols = x[..., 0::2], x[..., 1::2]
    row, col = np.rint((rows + 1) * 2), np.rint((cols + 1) * 2)  # on 0..4
    on_grid = (np.abs(rows - (row / 2 - 1)) < 0.1) & (np.abs(cols - (col / 2 - 1)) < 0.1)
    return np.where(on_grid, row * 5 + col, -1).reshape(events, 4, 4, 2, 3)


def test_sampling_draws_the_positions_from_the_prior():
    """The probability-flow ODE with the exact posterior mean turns N(0, 1) into the prior, whatever the
    (untrained) network does with the energies: the hottest slot on pixel 0 of its block in 70 % of the blocks and
    on pixel 24 in 30 %, the second on pixels 6 and 18 half and half."""
    pixels = _sampled_pixels(_tiny_slot_model(_slot_counts({0: 7 * 10**5, 24: 3 * 10**5}, {6: 10**6, 18: 10**6})))
    first, second = pixels[..., 0, :], pixels[..., 1, :]  # 3072 slots each: standard errors 0.008 and 0.009
    assert np.isin(first, [0, 24]).mean() > 0.98 and np.isin(second, [6, 18]).mean() > 0.98
    assert (first == 0).mean() == pytest.approx(0.7, abs=0.04)
    assert (second == 6).mean() == pytest.approx(0.5, abs=0.04)


def test_two_slots_of_a_block_never_land_on_one_pixel():
    """Both slots' priors: pixels 0 and 24 half and half. Independent, half of the blocks would put both hits on
    one pixel; a block's second hit avoids the first's pixel. (Where it would have gone to the first's, it takes
    the nearest pixel left: 88 % of the blocks hold one hit on each of 0 and 24, the rest a second hit on a pixel
    the prior gives almost nothing, an artefact of so sharp a prior.)"""
    pixels = _sampled_pixels(_tiny_slot_model(_slot_counts({0: 10**6, 24: 10**6}, {0: 10**6, 24: 10**6})))
    first, second = pixels[..., 0, :], pixels[..., 1, :]
    assert np.isin(first, [0, 24]).all() and (first == 0).mean() == pytest.approx(0.5, abs=0.05)
    assert (first == second).mean() < 0.005  # 3072 blocks
    assert (first + second == 24).mean() > 0.8


def test_position_counts_round_trip_and_bad_counts():
    counts = _slot_counts({0: 3, 24: 1}, {4: 2})
    model = _tiny_slot_model(counts)
    clone = JetDiffusion.from_config(model.get_config())
    assert clone.position_counts == counts.tolist()
    np.testing.assert_array_equal(clone._position_log_prior, model._position_log_prior)
    model.set_position_counts(None)
    assert model.get_config()["position_counts"] is None and model._position_log_prior is None
    with pytest.raises(ValueError, match=r"position_counts need hit slots on patches > 1 and shape \(2, 3, 4, 4, 25\)"):
        _tiny_slot_model(counts[:1])
    with pytest.raises(ValueError, match=r"position_counts must be counts of hits \(integers >= 0\)"):
        _tiny_slot_model(counts - 2)
