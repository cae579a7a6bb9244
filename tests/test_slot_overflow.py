"""The hits the hit slots drop, restored at decoding (hep_keras.models.hit_slots.fit_overflow / split_overflow)."""

import numpy as np
import pytest

from hep_keras.models.diffusion import JetDiffusion, fit_intensity_transform, fit_slot_overflow
from hep_keras.models.hit_slots import fit_overflow, from_slots, to_slots


def test_fit_overflow_known_rates_and_shares():
    """Ring 0 (block (0, 0)): 4 events with both slots full, 2 of them with a third hit of 1 GeV beside 4 and 2 GeV
    (the first slot holds 4 + 1, so the share is 1/5); an event with one hit does not count. Ring 1: always two
    hits, never a third: rate 0."""
    images = np.zeros((5, 10, 10, 1))
    for event in range(4):
        images[event, 0, 0, 0], images[event, 1, 1, 0] = 4.0, 2.0
        images[event, 5, 5, 0], images[event, 6, 6, 0] = 3.0, 1.0  # block (1, 1), ring 1
    images[:2, 2, 2, 0] = 1.0  # the third hit of block (0, 0) in events 0 and 1
    images[4, 0, 0, 0] = 7.0  # one hit only
    rings = np.array([[0, 1], [1, 1]])
    rates, shares = fit_overflow(images, 5, 2, rings, records=3)
    np.testing.assert_allclose(rates, [[0.5, 0.0]])
    assert np.shape(shares) == (1, 2, 3, 4)  # (channels, rings, records, at most 4 further hits)
    np.testing.assert_allclose(np.asarray(shares)[0, 0], [[0.2, 0, 0, 0]] * 3)
    assert not np.any(shares[0][1])


def _blocks_with_two_hits():
    """A 10x10 one-channel image: block (0, 0) hits 4 GeV at (0, 0) and 1 GeV at (2, 2); block (0, 1) one hit."""
    image = np.zeros((1, 10, 10, 1), "float32")
    image[0, 0, 0, 0], image[0, 2, 2, 0], image[0, 1, 7, 0] = 4.0, 1.0, 3.0
    return image


def _overflow(rate: float, seed: int):
    from hep_keras.models.base import stateless_uniform

    rates = np.full((1, 2), rate, "float32")  # one channel, two rings
    shares = np.zeros((1, 2, 5, 4), "float32")
    shares[..., 0] = 0.25  # every record: one further hit with a quarter of the first slot's energy
    rings = np.array([[0, 1], [1, 1]])
    return rates, shares, rings, stateless_uniform((1, 2, 2, 1, 27), (seed, 0))


def test_split_overflow_moves_the_share_to_an_empty_pixel_of_the_block():
    image = _blocks_with_two_hits()
    slots = to_slots(image, 5, 2)
    np.testing.assert_array_equal(np.asarray(from_slots(*slots, 5, 10, _overflow(0.0, 1))), image)  # rate 0: as is
    placed = set()
    for seed in range(12):
        out = np.asarray(from_slots(*slots, 5, 10, _overflow(1.0, seed)))[0, ..., 0]
        assert out.sum() == pytest.approx(image.sum())  # energy conserved
        block = out[:5, :5]
        assert block[0, 0] == pytest.approx(3.0) and block[2, 2] == pytest.approx(1.0)  # 4 - 0.25 * 4, untouched
        (row,), (col,) = np.nonzero(np.isclose(block, 1.0) & (np.arange(25).reshape(5, 5) != 12))
        placed.add((row, col))
        np.testing.assert_array_equal(out[:5, 5:], image[0, :5, 5:, 0])  # one hit: never split
    assert len(placed) >= 6  # a random empty pixel of the block


def _events_with_third_hits(n: int, seed: int) -> np.ndarray:
    """(n, 20, 20, 3) GeV: every 5x5 block of every channel holds 2 hits, and a third with probability 0.3."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 4, 4, 3, 25), "float32")
    for index in np.ndindex(n, 4, 4, 3):
        hits = 3 if rng.random() < 0.3 else 2
        pixels = rng.choice(25, hits, replace=False)
        images[index][pixels] = np.sort(rng.uniform(1.0, 5.0, hits))[::-1]
    return images.reshape(n, 4, 4, 3, 5, 5).transpose(0, 1, 4, 2, 5, 3).reshape(n, 20, 20, 3)


def test_model_restores_the_dropped_hits_and_round_trips_its_config():
    train, held_out = _events_with_third_hits(100, 0), _events_with_third_hits(100, 1)
    kwargs = dict(image_size=20, widths=[8, 8], embed_dim=8, attention=False, patch=5, hcal_towers=False, slots=2)
    kwargs |= {**fit_intensity_transform(train), "thresholds": [0.0, 0.0, 0.0]}
    plain = JetDiffusion(**kwargs)
    model = JetDiffusion(**kwargs, **fit_slot_overflow(train, 5, 2, hcal_towers=False))
    rates = np.asarray(model.overflow_rates)  # a 4x4 grid: its blocks are in rings 1 and 2 of the default edges
    np.testing.assert_allclose(rates[:, 1:3], 0.3, atol=0.05)
    assert not rates[:, [0, 3, 4, 5, 6]].any()  # rings without blocks
    real_hits = (held_out > 0).sum()
    y = model.normalize(held_out)
    assert (np.asarray(plain.denormalize(y)) > 0).sum() == 2 * 100 * 16 * 3  # the slots alone: two per block
    restored = np.asarray(model.denormalize(y, seed=5))
    assert (restored > 0).sum() == pytest.approx(real_hits, rel=0.03)
    np.testing.assert_allclose(restored.sum(axis=(1, 2)), held_out.sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(restored, np.asarray(model.denormalize(y, seed=5)))  # seeded
    assert not np.array_equal(restored, np.asarray(model.denormalize(y, seed=6)))
    clone = JetDiffusion.from_config(model.get_config())
    assert clone.overflow_rates == model.overflow_rates and clone.overflow_fractions == model.overflow_fractions
    np.testing.assert_array_equal(np.asarray(clone.denormalize(y, seed=5)), restored)
    with pytest.raises(ValueError, match="overflow tables need hit slots and shapes"):
        JetDiffusion(**kwargs, overflow_rates=[[0.3]], overflow_fractions=[[[[0.1]]]])
