"""Quantile calibration: the map itself (known answers) and the diffusion model's use of it."""

from __future__ import annotations

import numpy as np
import pytest

from hep_keras.models.diffusion import HIT_COUNT_SOFTNESS, JetDiffusion, fit_intensity_transform
from hep_keras.models.quantile_calibration import (
    DEFAULT_PROBABILITIES,
    check_quantile_map,
    fit_quantile_map,
    hurdle_boundary,
    quantile_map,
    ring_of_cells,
)


def test_quantile_map_is_numpy_interp_with_constant_ends():
    source, target = np.array([-1.0, 0.0, 0.5, 2.0]), np.array([-1.0, -1.0, 0.25, 3.0])
    x = np.linspace(-3.0, 4.0, 57).reshape(3, 19)
    np.testing.assert_allclose(np.asarray(quantile_map(x, source, target)), np.interp(x, source, target), atol=1e-6)


def test_quantile_map_with_one_table_per_value():
    """Tables (P, P, K) broadcast against values (N, P, P): each value goes through its own cell's table."""
    rng = np.random.default_rng(3)
    source = np.sort(rng.normal(size=(2, 3, 5)), axis=-1) + np.arange(5) * 1e-3
    target = np.sort(rng.normal(size=(2, 3, 5)), axis=-1)
    x = rng.normal(size=(4, 2, 3)) * 1.5
    mapped = np.asarray(quantile_map(x, source, target))
    expected = np.array([[[np.interp(x[n, i, j], source[i, j], target[i, j]) for j in range(3)] for i in range(2)]
                         for n in range(4)])  # fmt: skip
    np.testing.assert_allclose(mapped, expected, atol=1e-5)


def test_rings_of_the_cell_grid():
    """Known answers: the centre cell of an odd grid is ring 0, its 8 neighbours ring 1 (distance 1 and √2),
    distance 2 ring 2, the grid's corners (√8) ring 3; padding cells lie further out. An even grid has no
    centre cell, so no ring 0."""
    rings = ring_of_cells(5, 8, (0.5, 1.5, 2.5, 4.0))  # grid cells 1..5 of the padded 8, centre (3, 3)
    assert rings[3, 3] == 0
    assert {int(rings[3 + di, 3 + dj]) for di in (-1, 0, 1) for dj in (-1, 0, 1) if di or dj} == {1}
    assert rings[3, 5] == rings[1, 3] == 2 and rings[1, 1] == rings[5, 5] == 3
    assert rings[0, 0] == 4 and rings[7, 7] == 4  # padding: distance √18 and √32
    even = ring_of_cells(4, 4, (0.5, 1.5, 2.5))
    np.testing.assert_array_equal(even, [[2, 2, 2, 2], [2, 1, 1, 2], [2, 1, 1, 2], [2, 2, 2, 2]])
    with pytest.raises(ValueError, match="must be increasing"):
        ring_of_cells(5, 8, (1.5, 0.5))


def test_fitted_map_turns_one_distribution_into_the_other():
    """generated ~ N(0, 1), real = 2 z + 1: the fitted map is 2 x + 1 inside the sample's range; the real
    sample's quantiles come out of the generated sample."""
    rng = np.random.default_rng(0)
    generated, real = rng.normal(size=(20000, 1)), 2 * rng.normal(size=(20000, 1)) + 1
    (source, target),  = fit_quantile_map(generated, real, probabilities=np.linspace(0, 1, 201))  # fmt: skip
    x = np.linspace(-1.5, 1.5, 7)
    np.testing.assert_allclose(np.asarray(quantile_map(x, source, target)), 2 * x + 1, atol=0.1)
    mapped = np.asarray(quantile_map(generated[:, 0], source, target))
    np.testing.assert_allclose(np.percentile(mapped, [10, 50, 90]), np.percentile(real, [10, 50, 90]), atol=0.05)


def sparse_values(n: int, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real: a share ``rate`` of hits uniform in [-0.5, 1], the rest empty at -1; generated: twice as many hits,
    too low (uniform in [-0.7, 0.6]), and the empties smeared around -1 (the hit decision is -0.75)."""
    rng = np.random.default_rng(seed)
    real = np.where(rng.random(n) < rate, rng.uniform(-0.5, 1.0, n), -1.0)
    generated = np.where(rng.random(n) < 2 * rate, rng.uniform(-0.7, 0.6, n), rng.normal(-1.0, 0.05, n))
    return generated, real


def test_hurdle_map_gives_the_exact_hit_rate_where_a_plain_map_misses_it():
    """With ``empty_below`` the share of values above the hit decision is the real one (to 1e-4), nothing is
    left in the gap and the hits' quartiles are the real ones (-0.125, 0.25, 0.625). The plain quantile map of
    the same values (the baseline) gives 24 % too many hits: its 1 % probability step at the hit/empty
    boundary is half the hit rate."""
    generated, real = sparse_values(200000, 0.02, seed=1)
    real_rate = np.mean(real >= -0.75)
    (source, target),  = fit_quantile_map(generated[:, None], real[:, None], empty_below=-0.75)  # fmt: skip
    assert len(source) == len(target) == len(DEFAULT_PROBABILITIES) + 2
    mapped = np.asarray(quantile_map(generated, source, target))
    assert np.mean(mapped >= -0.75) == pytest.approx(real_rate, abs=1e-4)
    assert np.mean((mapped > -0.75) & (mapped < -0.5)) < 1e-4
    np.testing.assert_allclose(np.percentile(mapped[mapped > -0.75], [25, 50, 75]), [-0.125, 0.25, 0.625], atol=0.03)
    np.testing.assert_array_equal(np.unique(mapped[mapped < -0.75]), [-1.0])  # empties go to the real empty value
    (source, target),  = fit_quantile_map(generated[:, None], real[:, None])  # fmt: skip
    plain = np.asarray(quantile_map(generated, source, target))
    assert np.mean(plain >= -0.75) / real_rate > 1.15  # measured 1.24


def test_hurdle_map_without_real_hits_or_without_real_empties():
    """No real hit: every generated value becomes the real empty value. Only hits: every generated value is a
    hit, ranked onto the real hits."""
    generated, real = sparse_values(5000, 0.05, seed=2)
    (source, target),  = fit_quantile_map(generated[:, None], np.full((300, 1), -1.0), empty_below=-0.75)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(quantile_map(generated, source, target)), -1.0)
    hits = np.linspace(-0.5, 1.0, 301)[:, None]
    (source, target),  = fit_quantile_map(generated[:, None], hits, empty_below=-0.75)  # fmt: skip
    mapped = np.asarray(quantile_map(generated, source, target))
    assert mapped.min() == pytest.approx(-0.5, abs=1e-6) and mapped.max() == pytest.approx(1.0, abs=1e-6)
    assert np.all(np.diff(mapped[np.argsort(generated)]) >= -1e-6)  # monotone: the ranks are kept


def test_bad_tables_are_rejected():
    good = [[0.0, 1.0], [0.0, 2.0]]
    check_quantile_map([good], 1)
    with pytest.raises(ValueError, match="one table per energy channel"):
        check_quantile_map([good], 2)
    with pytest.raises(ValueError, match="strictly"):
        check_quantile_map([[[0.0, 0.0], [0.0, 1.0]]], 1)
    with pytest.raises(ValueError, match="finite"):
        check_quantile_map([[[0.0, np.nan], [0.0, 1.0]]], 1)
    with pytest.raises(ValueError, match="same E"):
        fit_quantile_map(np.zeros((4, 2)), np.zeros((4, 3)))


def slot_model(**kwargs) -> JetDiffusion:
    rng = np.random.default_rng(0)
    images = np.zeros((8, 20, 20, 3), "float32")
    images[rng.random(images.shape) < 0.05] = 2.0
    return JetDiffusion(
        image_size=20, widths=[8, 8], embed_dim=8, attention=False, patch=5, hcal_towers=False, slots=2,
        **fit_intensity_transform(images), **kwargs,
    )  # fmt: skip


def test_model_calibration_maps_energies_only_per_ring_and_round_trips():
    """Each cell's energies go through the table of its ring (known shifts), positions stay bit-identical,
    the identity table changes nothing, from_config keeps the calibration."""
    model = slot_model(calibration_rings=[1.0])  # grid 4 x 4: the inner 2 x 2 cells ring 0, the rest ring 1
    labels = np.array([0, 1, 1])
    plain = np.asarray(model.sample(labels, steps=2, seed=3))
    raw, _ = model.sample_normalized(labels, steps=2, seed=3)
    # (energy, row, col) per slot and fine channel: 2 slots x 3 channels x 3 numbers, no tower
    assert model.energy_channels == list(range(0, 18, 3))
    identity = [[[-2.0, 2.0], [-2.0, 2.0]]] * 6
    model.set_calibration([identity, identity])
    np.testing.assert_allclose(np.asarray(model.sample(labels, steps=2, seed=3)), plain, atol=1e-6)
    inner, outer = [[[-2.0, 2.0], [-1.5, 2.5]]] * 6, [[[-2.0, 2.0], [-1.8, 2.2]]] * 6  # energies +0.5 / +0.2
    model.set_calibration([inner, outer])
    calibrated, raw = np.asarray(model._cells(model.calibrate(raw))), np.asarray(model._cells(raw))
    shift = np.full((4, 4), 0.2)
    shift[1:3, 1:3] = 0.5
    energies = model.energy_channels
    np.testing.assert_allclose(calibrated[..., energies], raw[..., energies] + shift[None, :, :, None], atol=1e-5)
    positions = [j for j in range(18) if j not in energies]
    np.testing.assert_array_equal(calibrated[..., positions], raw[..., positions])
    clone = JetDiffusion.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(
        np.asarray(clone.sample(labels, steps=2, seed=3)), np.asarray(model.sample(labels, steps=2, seed=3)), atol=1e-6
    )
    with pytest.raises(ValueError, match="one table per energy channel"):
        model.set_calibration([inner[:5], outer])
    with pytest.raises(ValueError, match=r"one set of tables per ring \(2\)"):
        model.set_calibration([inner])
    model.set_calibration(outer)  # one table per channel (saved before rings): the same map in every ring
    assert model.calibration == [[outer, outer]]  # one energy bin
    model.set_calibration([inner, outer])  # per ring (saved before energy bins): one energy bin
    assert model.calibration == [[inner, outer]] and model.calibration_energy_edges == []


def test_energy_bins_give_each_event_the_map_of_its_energy():
    """Known shifts per energy bin: an event goes through the maps of the bin its energy (GeV) falls in (an
    energy on an edge belongs to the bin above, as ``numpy.digitize``); the edges round-trip through the config;
    a binned calibration refuses to guess an event's energy."""
    model = slot_model(calibration_rings=[1.0])
    raw, _ = model.sample_normalized(np.array([0, 1, 1, 0]), steps=2, seed=3)
    low, high = [[[-2.0, 2.0], [-1.5, 2.5]]] * 6, [[[-2.0, 2.0], [-1.9, 2.1]]] * 6  # energies +0.5 / +0.1
    model.set_calibration([[low, low], [high, high]], energy_edges=[50.0])
    energies = np.array([10.0, 50.0, 49.9, 300.0])
    calibrated = np.asarray(model._cells(model.calibrate(raw, energies)))[..., model.energy_channels]
    shift = np.array([0.5, 0.1, 0.5, 0.1])[:, None, None, None]
    np.testing.assert_allclose(calibrated, np.asarray(model._cells(raw))[..., model.energy_channels] + shift, atol=1e-5)
    clone = JetDiffusion.from_config(model.get_config())
    assert clone.calibration_energy_edges == [50.0] and clone.calibration == model.calibration
    with pytest.raises(ValueError, match="calibrate needs each event's energy"):
        model.calibrate(raw)
    with pytest.raises(ValueError, match=r"one set of tables per energy bin \(3\), got 2"):
        model.set_calibration([[low, low], [high, high]], energy_edges=[50.0, 80.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        model.set_calibration([[low, low], [high, high], [high, high]], energy_edges=[80.0, 50.0])


def test_fit_calibration_per_energy_bin_gives_each_bin_its_hit_rate():
    """Training events whose hit rate grows with their energy (2 % below, 20 % above the median): with two
    energy bins each bin of generated events (binned by the energy they are generated for) gets its bin's
    training hit rate (by construction, to within one value per ring); one map for all energies gives both
    bins the average rate (baseline)."""
    from hep_keras.models.diffusion import fit_energy_quantiles

    rng = np.random.default_rng(4)
    rate = np.where(np.arange(32) < 16, 0.02, 0.2)[:, None, None, None]
    images = np.where(rng.random((32, 20, 20, 3)) < rate, rng.exponential(3.0, (32, 20, 20, 3)), 0.0)
    images = images.astype("float32")
    labels = np.arange(32) % 2
    real_energy = images.sum(axis=(1, 2, 3))
    for bins, matches in ((2, True), (1, False)):
        model = slot_model(calibration_rings=[], energy_quantiles=fit_energy_quantiles(images, labels))
        model.fit_calibration(images, labels, steps=2, seed=5, batch_size=16, energy_bins=bins)
        assert len(model.calibration) == bins
        batches = [model.sample_normalized(labels[i : i + 16], steps=2, seed=5 + i) for i in (0, 16)]
        raw = np.concatenate([np.asarray(x) for x, _ in batches])
        energies = np.concatenate([np.asarray(e) for _, e in batches])
        hits = np.asarray(model._cells(model.calibrate(raw, energies)))[..., model.energy_channels] >= -0.75
        real = np.asarray(model._cells(model.normalize(images)))[..., model.energy_channels] >= -0.75
        median = float(np.median(real_energy))
        for generated_bin, real_bin in (
            (energies < median, real_energy < median),
            (energies >= median, real_energy >= median),
        ):
            assert generated_bin.sum() >= 8  # both bins get generated events
            share, real_share = hits[generated_bin].mean(axis=(0, 1, 2)), real[real_bin].mean(axis=(0, 1, 2))
            if matches:
                np.testing.assert_allclose(share, real_share, atol=1.0 / (generated_bin.sum() * 16))
            else:
                assert np.all(np.abs(share - real_share) > 0.04)  # the pooled rate, ~0.11, in both bins
    same = np.repeat(images[16:17], 8, axis=0)  # every event the same energy: the bins' edges coincide, one bin
    model.fit_calibration(same, labels[:8], steps=2, seed=5, batch_size=8, energy_bins=3)
    assert model.calibration_energy_edges == [] and len(model.calibration) == 1


def test_per_class_calibration_gives_each_event_the_map_of_its_class_and_energy():
    """Known shifts per (class, energy bin), class-major: quark, gluon and all events; label 2 (unconditional)
    and no labels take the maps of all events; sampling applies the class of each label; the flag and tables
    round-trip through the config; a table count that does not fit is refused."""
    model = slot_model(calibration_rings=[1.0])
    labels = np.array([0, 1, 2, 0, 1])
    raw, _ = model.sample_normalized(labels, steps=2, seed=3)

    def shifted(value):  # every energy value + value, the same in both rings
        table = [[[-2.0, 2.0], [-2.0 + value, 2.0 + value]]] * 6
        return [table, table]

    shifts = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # quark low/high energy, gluon low/high, all low/high
    model.set_calibration([shifted(v) for v in shifts], energy_edges=[50.0], per_class=True)
    energies = np.array([10.0, 10.0, 10.0, 60.0, 60.0])
    cells = np.asarray(model._cells(raw))[..., model.energy_channels]
    for given, expected in ((labels, [0.1, 0.3, 0.5, 0.2, 0.4]), (None, [0.5, 0.5, 0.5, 0.6, 0.6])):
        calibrated = np.asarray(model._cells(model.calibrate(raw, energies, given)))[..., model.energy_channels]
        np.testing.assert_allclose(calibrated, cells + np.array(expected)[:, None, None, None], atol=1e-5)
    clone = JetDiffusion.from_config(model.get_config())
    assert clone.calibration_per_class and clone.calibration == model.calibration
    with pytest.raises(ValueError, match=r"per energy bin and class \(quark, gluon, all\) \(6\), got 2"):
        model.set_calibration([shifted(0.1), shifted(0.2)], energy_edges=[50.0], per_class=True)


def test_fit_calibration_per_class_gives_each_class_its_hit_rate():
    """Quark training events with a 2 % hit rate, gluon events with 20 %: fitted per class, the generated quark
    and gluon events the map was fitted on get their own class's training hit rate (by construction, to within
    one value per ring) and the unconditional label gets the rate of all events; one map for both classes
    (baseline) gives both classes the average rate. With hit counts, one count map per class and energy bin."""
    rng = np.random.default_rng(4)
    labels = np.arange(32) % 2
    rate = np.where(labels == 0, 0.02, 0.2)[:, None, None, None]
    images = np.where(rng.random((32, 20, 20, 3)) < rate, rng.exponential(3.0, (32, 20, 20, 3)), 0.0)
    images = images.astype("float32")
    for per_class in (True, False):
        model = slot_model(calibration_rings=[])
        model.fit_calibration(images, labels, steps=2, seed=5, batch_size=16, per_class=per_class)
        assert len(model.calibration) == (3 if per_class else 1)
        real = np.asarray(model._cells(model.normalize(images)))[..., model.energy_channels] >= -0.75
        batches = [model.sample_normalized(labels[i : i + 16], steps=2, seed=5 + i)[0] for i in (0, 16)]
        raw = np.concatenate([np.asarray(x) for x in batches])
        for given in (labels, np.full(32, 2)):
            hits = np.asarray(model._cells(model.calibrate(raw, None, given)))[..., model.energy_channels] >= -0.75
            for c in (0, 1):
                share, real_share = hits[labels == c].mean(), real[labels == c].mean()
                if per_class and given is labels:
                    np.testing.assert_allclose(share, real_share, atol=1.0 / (16 * 16))
                else:  # the rate of all events, ~0.11, for both classes
                    assert abs(share - real_share) > 0.04
            if given is not labels or not per_class:
                np.testing.assert_allclose(hits.mean(), real.mean(), atol=1.0 / (32 * 16))
    model.fit_calibration(images, labels, steps=2, seed=5, batch_size=16, per_class=True, hit_counts=True)
    assert np.shape(model.calibration_hit_counts) == (3, 3, 2, len(DEFAULT_PROBABILITIES))


def test_fit_calibration_gives_each_ring_the_training_hit_rate():
    """By construction: per ring, the fitted map takes the generated energies onto the training events' hit
    rate. The training hits crowd the centre while the untrained network's noise is uniform, so one map for
    the whole grid (``calibration_rings=[]``) gives the centre too few hits and the edge too many."""
    rng = np.random.default_rng(2)
    rate = np.full((20, 20, 1), 0.01)
    rate[5:15, 5:15] = 0.15  # the 2 x 2 central cells
    images = np.where(rng.random((24, 20, 20, 3)) < rate, rng.exponential(3.0, (24, 20, 20, 3)), 0.0)
    labels = np.arange(24) % 2
    centre = np.zeros((4, 4), bool)
    centre[1:3, 1:3] = True
    for rings, matches in (([1.0], True), ([], False)):
        model = slot_model(calibration_rings=rings)
        model.fit_calibration(images.astype("float32"), labels, steps=2, seed=5, batch_size=8)
        # the generated events the map was fitted on (batch b of 8 is seeded seed + 8 b)
        raw = np.concatenate([np.asarray(model.sample_normalized(labels[i : i + 8], steps=2, seed=5 + i)[0])
                              for i in (0, 8, 16)])  # fmt: skip
        real = np.asarray(model._cells(model.normalize(images)))[..., model.energy_channels] >= -0.75
        hits = np.asarray(model._cells(model.calibrate(raw)))[..., model.energy_channels] >= -0.75
        for cells in (centre, ~centre):
            share, real_share = hits[:, cells].mean(axis=(0, 1)), real[:, cells].mean(axis=(0, 1))
            if matches:  # the hurdle: exact on the generated sample the map was fitted on
                np.testing.assert_allclose(share, real_share, atol=1e-9)
            else:
                assert np.all(np.abs(share - real_share) > 0.1)  # measured: centre -0.5 .. -0.7, edge +0.2
    assert np.mean(np.asarray(model._cells(raw))[..., model.energy_channels] >= -0.75) > 0.2  # untrained: noise


def test_hurdle_boundary_is_where_the_map_makes_a_hit():
    """The boundary of hurdle tables is the value the map takes to the hit threshold (known answer: linear
    between the highest empty point and the lowest hit); a table without hits has none."""
    table = [[-3.0, 0.35, 0.45, 3.0], [-1.0, -1.0, -0.7, 1.0]]
    boundary = hurdle_boundary(table, -0.75)
    assert boundary == pytest.approx(0.35 + 0.25 / 0.3 * 0.1)
    assert float(quantile_map(np.float32(boundary), *table)) == pytest.approx(-0.75, abs=1e-6)
    assert np.isinf(hurdle_boundary([[-3.0, 0.0, 1.0], [-1.0, -1.0, -1.0]], -0.75))
    rng = np.random.default_rng(1)
    generated, real = sparse_values(4000, 0.3, 2)[0], sparse_values(4000, 0.1, 3)[1]
    fitted = np.asarray(fit_quantile_map(generated[:, None], real[:, None], empty_below=-0.75))  # (1, 2, K)
    values = rng.uniform(-1, 1, 2000).astype("float32")
    for table, boundary in zip(fitted, hurdle_boundary(fitted, -0.75), strict=True):
        hits = np.asarray(quantile_map(values, *table)) >= -0.75
        np.testing.assert_array_equal(hits, values >= boundary)


def test_hit_count_map_moves_only_the_hit_decision():
    """Known answer: count maps that double and halve every event's (soft) hit count. Each event then has
    round(2 × soft count) hits per channel (round(soft count / 2); one more where two values tie); the hits it
    keeps keep their values bit for bit, positions never move; new hits are its highest values that were not
    hits (one map everywhere), mapped in their order; the hits it loses are its lowest."""
    model = slot_model(calibration_rings=[])
    raw, _ = model.sample_normalized(np.array([0, 1, 1, 0]), steps=2, seed=3)
    table = [[-3.0, 0.35, 0.45, 3.0], [-1.0, -1.0, -0.7, 1.0]]  # hits above raw 0.433 (about a quarter here)
    model.set_calibration([table] * 6)
    plain = np.asarray(model._cells(model.calibrate(raw)))
    values = np.asarray(model._cells(raw))
    soft = 1.0 / (1.0 + np.exp(-(values - hurdle_boundary(table, -0.75)) / HIT_COUNT_SOFTNESS))
    energy = np.array(model.energy_channels)
    for factor in (2.0, 0.5):
        model.set_calibration([table] * 6, hit_counts=[[[[0.0, 1000.0], [0.0, 1000.0 * factor]]] * 3])
        mapped = np.asarray(model._cells(model.calibrate(raw)))
        positions = [j for j in range(18) if j not in energy]
        np.testing.assert_array_equal(mapped[..., positions], plain[..., positions])
        for channel in range(3):
            own = energy[[(j // 3) % 3 == channel for j in energy]]  # its slot energies
            before, after = plain[..., own] >= -0.75, mapped[..., own] >= -0.75
            target = np.round(factor * soft[..., own].sum(axis=(1, 2, 3))).astype(int)
            assert before.sum(axis=(1, 2, 3)).min() >= 3 and 0 < target.min() and target.max() < 32  # counts move
            v = values[..., own]
            kth = -np.sort(-v.reshape(4, -1), axis=1)[np.arange(4), target - 1]  # the target-th highest value
            expected = (v >= kth[:, None, None, None]).sum(axis=(1, 2, 3))  # the target, more where values tie
            np.testing.assert_array_equal(after.sum(axis=(1, 2, 3)), expected)
            assert np.all(expected - target <= 1)  # ties are rare: one here
            kept = before & after
            np.testing.assert_array_equal(mapped[..., own][kept], plain[..., own][kept])
            for event in range(4):
                if factor > 1:
                    new = after[event] & ~before[event]
                    assert not np.any(before[event] & ~after[event]) and new.sum() > 0
                    assert v[event][new].min() > v[event][~after[event]].max()
                    order = np.argsort(v[event][new])  # the map of their offset values: in the order of their values
                    assert np.all(np.diff(mapped[..., own][event][new][order]) >= 0)
                else:
                    gone = before[event] & ~after[event]
                    assert not np.any(after[event] & ~before[event]) and gone.sum() > 0
                    assert v[event][gone].max() < v[event][after[event]].min()
    clone = JetDiffusion.from_config(model.get_config())
    assert clone.calibration_hit_counts == model.calibration_hit_counts
    np.testing.assert_array_equal(np.asarray(clone._cells(clone.calibrate(raw))), mapped)
    with pytest.raises(ValueError, match="needs the per-cell calibration tables"):
        model.set_calibration(None, hit_counts=[[[[0.0, 1.0], [0.0, 1.0]]] * 3])
    with pytest.raises(ValueError, match=r"one set of tables per energy bin \(1\), got 2"):
        model.set_calibration([table] * 6, hit_counts=[[[[0.0, 1.0], [0.0, 1.0]]] * 3] * 2)
    with pytest.raises(ValueError, match=r"one table per energy channel \(3\)"):
        model.set_calibration([table] * 6, hit_counts=[[[[0.0, 1.0], [0.0, 1.0]]] * 2])


def test_fit_calibration_with_hit_counts_gives_each_energy_bin_the_training_counts():
    """Training events whose hit rate differs from event to event (0.5-5 %) where the untrained network's
    events are all alike: with ``hit_counts`` the generated events the map was fitted on get, per energy bin and
    channel, the training events' hit counts (by construction, at every eighth to within one hit); the per-cell
    map alone (baseline) gets the rate of each ring, not how the hits spread over the events."""
    from hep_keras.models.diffusion import fit_energy_quantiles

    rng = np.random.default_rng(4)
    rate = rng.uniform(0.005, 0.05, (32, 1, 1, 1))
    images = np.where(rng.random((32, 20, 20, 3)) < rate, rng.exponential(3.0, (32, 20, 20, 3)), 0.0)
    images = images.astype("float32")
    labels = np.arange(32) % 2
    model = slot_model(calibration_rings=[1.0], energy_quantiles=fit_energy_quantiles(images, labels))
    model.fit_calibration(images, labels, steps=2, seed=5, batch_size=16, energy_bins=2, hit_counts=True)
    assert np.shape(model.calibration_hit_counts) == (2, 3, 2, len(DEFAULT_PROBABILITIES))
    batches = [model.sample_normalized(labels[i : i + 16], steps=2, seed=5 + i) for i in (0, 16)]
    raw = np.concatenate([np.asarray(x) for x, _ in batches])
    energies = np.concatenate([np.asarray(e) for _, e in batches])
    real = np.asarray(model._cells(model.normalize(images)))[..., model.energy_channels] >= -0.75
    generated_bin = np.digitize(energies, model.calibration_energy_edges)
    real_bin = np.digitize(images.sum(axis=(1, 2, 3)), model.calibration_energy_edges)
    for hit_counts in (model.calibration_hit_counts, None):
        model.set_calibration(model.calibration, model.calibration_energy_edges, hit_counts)
        worst = []  # per channel and bin: the largest difference of the counts at quantiles 0, 1/8 … 1
        hits = np.asarray(model._cells(model.calibrate(raw, energies)))[..., model.energy_channels] >= -0.75
        for channel in range(3):
            own = np.array([(j // 3) % 3 == channel for j in model.energy_channels])
            count, real_count = hits[..., own].sum(axis=(1, 2, 3)), real[..., own].sum(axis=(1, 2, 3))
            for b in (0, 1):
                assert (generated_bin == b).sum() >= 8
                quantiles = np.linspace(0, 1, 9)
                g, r = (np.quantile(c, quantiles) for c in (count[generated_bin == b], real_count[real_bin == b]))
                worst.append(np.abs(g - r).max())
        if hit_counts is not None:
            assert max(worst) <= 1.0
        else:  # measured: 1.5 to 6 hits, 3 in the median
            assert max(worst) >= 4 and np.median(worst) >= 2.5


def test_calibration_events_config():
    """calibration_events: an integer >= 0, calibration_energy_bins: >= 1 (one error line otherwise; a float is
    refused by the config's type check); calibration_events 0 leaves the model uncalibrated."""
    from hep_keras.errors import ConfigError
    from hep_keras.training.config import COMMON_DEFAULTS
    from hep_keras.training.recipes import diffusion as recipe

    for bad in (-1, 2.5):
        with pytest.raises(ConfigError, match="'calibration_events' must be an integer >= 0"):
            recipe.validate({**COMMON_DEFAULTS, **recipe.DEFAULTS, "calibration_events": bad})
    for bad in (0, None):
        with pytest.raises(ConfigError, match="'calibration_energy_bins' must be > 0"):
            recipe.validate({**COMMON_DEFAULTS, **recipe.DEFAULTS, "calibration_energy_bins": bad})
    model = slot_model()
    recipe.after_training(model, {**recipe.DEFAULTS, "calibration_events": 0}, data=None)
    assert model.calibration is None and model.get_config()["calibration"] is None
