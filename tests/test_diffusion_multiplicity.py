"""Multiplicity conditioning of the diffusion model: the fitted table, the drawn counts, and a model that uses them."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from hep_keras.models.diffusion import (
    JetDiffusion,
    fit_energy_quantiles,
    fit_intensity_transform,
    fit_multiplicities,
    hit_pixel_counts,
)

SIZE = 8


def hit_images(counts: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """(N, 8, 8, 3) GeV: event i has ``counts[i]`` (<= 48) Tracks hits sharing ``energies[i]`` GeV on the first
    pixels of rows 2-7 (row by row), one ECAL hit of 1 GeV and no HCAL."""
    images = np.zeros((len(counts), SIZE, SIZE, 3), "float32")
    for image, n, energy in zip(images, counts, energies, strict=True):
        pixels = 2 * SIZE + np.arange(int(n))
        image[pixels // SIZE, pixels % SIZE, 0] = energy / n
        image[SIZE // 2, SIZE // 2, 1] = 1.0
    return images


def test_fit_multiplicities_known_answer():
    """Rows are the hit counts of the events at evenly spaced ranks of total energy, per class and pooled."""
    counts = np.array([7, 3, 5, 1, 2])
    energies = np.array([40.0, 10.0, 20.0, 50.0, 30.0])  # energy order: events 1, 2, 4, 0, 3
    images = hit_images(counts, energies - 1.0)  # + the 1 GeV ECAL hit
    quark, gluon, pooled = fit_multiplicities(images, np.zeros(5), rows=3)
    assert quark == [[3, 1, 0], [2, 1, 0], [1, 1, 0]]  # lowest energy, median (event 4), highest
    assert gluon == pooled == quark  # no gluons: the pooled rows
    quark, gluon, _ = fit_multiplicities(images, np.array([0, 0, 1, 1, 1]), rows=2)
    assert quark == [[3, 1, 0], [7, 1, 0]] and gluon == [[5, 1, 0], [1, 1, 0]]
    quark, gluon, pooled = fit_multiplicities(images, np.array([0, 0, 1, 1, 1]))  # rows: the larger class, 3
    assert gluon == [[5, 1, 0], [2, 1, 0], [1, 1, 0]]  # every gluon event, in energy order
    assert quark == [[3, 1, 0], [3, 1, 0], [7, 1, 0]] and len(pooled) == 3  # both quarks appear
    np.testing.assert_array_equal(np.asarray(hit_pixel_counts(images)), np.stack([counts, [1] * 5, [0] * 5], 1))
    with pytest.raises(ValueError, match="at least one event"):
        fit_multiplicities(images[:0], np.zeros(0))


def count_model(multiplicities, quantiles, **kwargs) -> JetDiffusion:
    images = hit_images(np.arange(1, 17), np.geomspace(2.0, 200.0, 16))
    return JetDiffusion(
        image_size=SIZE, widths=[8, 16], embed_dim=8, attention=False, ema=0.9, energy_quantiles=quantiles,
        multiplicities=multiplicities, **fit_intensity_transform(images), **kwargs,
    )  # fmt: skip


def test_drawn_counts_are_the_training_events_at_the_energy_rank():
    """Quarks of 10-20 GeV, gluons of 100-200 GeV: the counts drawn for an energy are those of the row at its rank
    in the class's spectrum (lowest, middle, highest), label 2 uses the pooled rows; sampling draws them with
    its energies, and the condition the network sees holds both."""
    quantiles = [np.log(np.linspace(10.0, 20.0, 33)).tolist(), np.log(np.linspace(100.0, 200.0, 33)).tolist()]
    rows = np.arange(5)[:, None] * np.array([1, 10, 100])  # row r: (r, 10 r, 100 r) hits
    model = count_model([rows.tolist(), (rows + 1000).tolist(), (rows + 5000).tolist()], quantiles)
    labels = tf.constant([0, 0, 0, 1, 1, 2], tf.int32)
    energies = tf.constant([10.0, 15.0, 20.0, 100.0, 151.0, 300.0])
    drawn = np.asarray(model.draw_counts(labels, energies))
    expected = np.array([rows[0], rows[2], rows[4], rows[0] + 1000, rows[2] + 1000, rows[4] + 5000])
    np.testing.assert_allclose(drawn, expected, rtol=1e-5)
    condition = np.asarray(model.event_condition(energies, drawn))
    assert condition.shape == (6, 4) and model.condition_size == 4
    np.testing.assert_allclose(condition[:, 0], np.asarray(model.energy_condition(energies)))
    np.testing.assert_allclose(condition[:, 1:], (np.log1p(drawn) - model._count_centre) / model._count_width, 1e-5)


def test_bad_multiplicities_are_rejected():
    quantiles = [[0.0, 1.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="quark, gluon and pooled rows of 3 hit counts"):
        count_model([[[1, 2, 3]] * 2] * 2, quantiles)
    with pytest.raises(ValueError, match="hit counts >= 0"):
        count_model([[[1, 2, -3]] * 2] * 3, quantiles)
    with pytest.raises(ValueError, match="multiplicities need energy conditioning"):
        count_model([[[1, 2, 3]] * 2] * 3, None)
    from hep_keras.errors import ConfigError
    from hep_keras.training.config import COMMON_DEFAULTS
    from hep_keras.training.recipes import diffusion as recipe

    config = {**COMMON_DEFAULTS, **recipe.DEFAULTS, "energy_conditioning": False, "energy_fractions": False}
    with pytest.raises(ConfigError, match="'multiplicity_conditioning' needs 'energy_conditioning'"):
        recipe.validate(config)
    config = {**COMMON_DEFAULTS, **recipe.DEFAULTS, "calibration_drawn_counts": ["muons"]}
    with pytest.raises(ConfigError, match="'calibration_drawn_counts' must be a list of tracks, ecal, hcal"):
        recipe.validate(config)
    # the default aims HCAL; nothing to aim without the multiplicity condition or the hit-count map
    assert recipe.drawn_count_channels({**COMMON_DEFAULTS, **recipe.DEFAULTS}) == ["HCAL"]
    assert recipe.drawn_count_channels({**COMMON_DEFAULTS, **recipe.DEFAULTS, "multiplicity_conditioning": False}) == []
    assert recipe.drawn_count_channels({**COMMON_DEFAULTS, **recipe.DEFAULTS, "calibration_hit_counts": False}) == []


@pytest.fixture(scope="module")
def trained_count_model():
    """A tiny model trained on events whose number of Tracks hits (1-12, filling rows from the left) is independent
    of their energy."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 13, 512)
    energies = np.exp(rng.uniform(np.log(5.0), np.log(50.0), 512))
    images, labels = hit_images(counts, energies), (np.arange(512) % 2).astype("float32")
    model = count_model(fit_multiplicities(images, labels, 64), fit_energy_quantiles(images, labels, 17))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), jit_compile=False)
    model.fit(images, labels, batch_size=32, epochs=60, verbose=0)
    return model


def test_generated_events_carry_the_requested_hit_counts(trained_count_model):
    """Only the condition tells the network how many Tracks hits an event has (their number is independent of
    the energy): asking for 2 and for 10 hits at the same energy gives events with about that many."""
    model = trained_count_model
    labels, energies = np.zeros(32, "int32"), np.full(32, 20.0, "float32")
    few, many = (
        np.asarray(model.sample(labels, steps=10, seed=3, energies=energies, counts=np.tile([n, 1, 0], (32, 1))))
        for n in (2, 10)
    )
    few_hits, many_hits = (np.median((images[..., 0] > 0).sum(axis=(1, 2))) for images in (few, many))
    # an unconditioned model gives both the same count; measured: 5 and 11 after 40 epochs, 3 and 10 after 80
    assert few_hits <= 4 and many_hits >= 9, (few_hits, many_hits)


def test_count_conditioned_model_round_trips_through_a_keras_file(trained_count_model, tmp_path):
    model = trained_count_model
    model.save(tmp_path / "counts.keras")
    loaded = keras.saving.load_model(tmp_path / "counts.keras")
    assert loaded.multiplicities == model.multiplicities and loaded.condition_size == 4
    labels = np.array([0, 1, 2], "int32")
    np.testing.assert_allclose(
        np.asarray(loaded.sample(labels, steps=3, seed=5)), np.asarray(model.sample(labels, steps=3, seed=5)), atol=1e-5
    )


def test_drawn_count_calibration_gives_every_event_its_requested_hits(trained_count_model, tmp_path):
    """``calibration_drawn_counts``: the hit-count map aims each event of the listed channels at the hits it was
    conditioned on (here Tracks, 3 or 7 pixels), exactly; the other channels keep the quantile map; the setting
    survives a ``.keras`` file; without multiplicity conditioning it is refused."""
    model = trained_count_model
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 13, 64)
    images = hit_images(counts, np.exp(rng.uniform(np.log(5.0), np.log(50.0), 64)))
    labels = (np.arange(64) % 2).astype("int32")
    model.fit_calibration(images, labels, steps=4, seed=2, hit_counts=True)
    aimed = JetDiffusion.from_config({**model.get_config(), "calibration_drawn_counts": [0]})
    aimed.set_weights(model.get_weights())
    labels, energies = np.zeros(16, "int32"), np.full(16, 20.0, "float32")
    for n in (3, 7):
        requested = np.tile([n, 1, 0], (16, 1))
        events = np.asarray(aimed.sample(labels, steps=4, seed=3, energies=energies, counts=requested))
        np.testing.assert_array_equal((events[..., 0] > 0).sum(axis=(1, 2)), n)
        plain = np.asarray(model.sample(labels, steps=4, seed=3, energies=energies, counts=requested))
        np.testing.assert_array_equal(events[..., 1] > 0, plain[..., 1] > 0)  # ECAL: the quantile map as before
    aimed.save(tmp_path / "aimed.keras")
    assert keras.saving.load_model(tmp_path / "aimed.keras").calibration_drawn_counts == [0]
    model.set_calibration(None)
    with pytest.raises(ValueError, match="calibration_drawn_counts needs multiplicity conditioning"):
        count_model(None, None, calibration_drawn_counts=[0])


def towered_slot_images(n: int, seed: int) -> np.ndarray:
    """(n, 20, 20, 3) GeV: sparse Tracks and ECAL hits (1-40 per event), HCAL on whole 5x5 towers."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 20, 20, 3), "float32")
    for image in images:
        for channel in (0, 1):
            image[..., channel].flat[rng.choice(400, rng.integers(1, 40), replace=False)] = rng.exponential(2.0) + 0.5
        for tower in rng.choice(16, rng.integers(1, 6), replace=False):
            image[5 * (tower // 4) : 5 * (tower // 4) + 5, 5 * (tower % 4) : 5 * (tower % 4) + 5, 2] = (
                rng.exponential(2.0) + 1.0
            )
    return images


def towered_slot_model(images, labels, **kwargs) -> JetDiffusion:
    return JetDiffusion(
        image_size=20, widths=[8, 8], embed_dim=8, attention=False, patch=5, hcal_towers=True, slots=2,
        energy_quantiles=fit_energy_quantiles(images, labels, 9), multiplicities=fit_multiplicities(images, labels),
        **fit_intensity_transform(images), **kwargs,
    )  # fmt: skip


def test_hit_cells_count_occupied_slots_towers_and_pixels():
    """A 5x5 block with 3 Tracks hits is 2 slot hits (slots = 2), a whole HCAL tower one cell; hit pixels for
    comparison."""
    images = np.zeros((2, 20, 20, 3), "float32")
    images[0, 0, 0:3, 0] = [3.0, 2.0, 1.0]  # 3 hits in block (0, 0)
    images[0, 12, 12, 0] = 1.0  # 1 hit in block (2, 2)
    images[0, 7, 8, 1] = 4.0
    images[0, 5:10, 0:5, 2] = 2.0  # one tower
    images[1, 0:5, 0:5, 1] = 1.0  # a full ECAL block: 2 slot hits of 25 pixels
    model = towered_slot_model(towered_slot_images(16, 0), np.arange(16) % 2)
    np.testing.assert_array_equal(model.hit_cells(images), [[3, 1, 1], [0, 2, 0]])
    np.testing.assert_array_equal(np.asarray(hit_pixel_counts(images)), [[4, 1, 25], [0, 25, 0]])


def test_drawn_slot_channels_aim_at_the_drawn_events_hit_cells(tmp_path):
    """With ``multiplicity_cells`` (the hit cells of the multiplicities' training events, same rows) a sampled
    event of the drawn channels gets exactly the hit cells of the training event it was conditioned on, slot
    channels included (drawn pixels would ask the slots for the hits beyond the 2nd of a block too, which the
    overflow restoration adds again); the table survives a ``.keras`` file; it needs the events the
    multiplicities were fitted on."""
    images, labels = towered_slot_images(48, 1), np.arange(48) % 2
    model = towered_slot_model(images, labels, calibration_drawn_counts=[0, 1, 2])
    model.fit_calibration(images, labels, steps=2, seed=5, batch_size=24, hit_counts=True)
    assert model.multiplicity_cells is None
    model.fit_multiplicity_cells(images, labels)
    cells = np.asarray(model.multiplicity_cells)
    assert cells.shape == np.shape(model.multiplicities)
    assert np.all(cells[..., 2] * 25 == np.asarray(model.multiplicities)[..., 2])  # a tower is 25 pixels
    assert np.all(cells[..., :2] <= np.asarray(model.multiplicities)[..., :2]) and np.any(
        cells[..., :2] < np.asarray(model.multiplicities)[..., :2]
    )  # fmt: skip
    sample_labels = np.array([0, 1, 0, 1, 2, 2, 0, 1], "int32")
    raw, energies = model.sample_normalized(sample_labels, steps=2, seed=7)
    calibrated = np.asarray(model._cells(model.calibrate(raw, energies, sample_labels)))[..., model.energy_channels]
    drawn = np.asarray(model.draw_counts(sample_labels, energies, cells=True))
    np.testing.assert_array_equal(model._hit_cells_of(calibrated), drawn)
    model.save(tmp_path / "cells.keras")
    assert keras.saving.load_model(tmp_path / "cells.keras").multiplicity_cells == model.multiplicity_cells
    with pytest.raises(ValueError, match="the events the model's multiplicities were fitted on"):
        model.fit_multiplicity_cells(images[::-1], labels)
    with pytest.raises(ValueError, match=r"the shape of multiplicities \(3, 24, 3\)"):
        model.set_multiplicity_cells(cells[:, :5])
