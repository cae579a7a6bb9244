"""Tests of the generation quality table (every measure beside its real-vs-real floor) and its benchmark script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from hep_keras.evaluation.generation import split_halves
from hep_keras.evaluation.generation_quality import (
    W1_OBSERVABLES,
    block_centre_share,
    bootstrap_w1,
    describe_block_centre_share,
    describe_edge_hits,
    edge_hits,
    feature_group_separation,
    feature_separation,
    format_table,
    hit_count_correlations,
    quality_feature_names,
    quality_features,
    quality_table,
    w1_floor,
)
from hep_keras.physics import image_observables

COLUMNS = {"measure", "value", "error", "floor", "floor_error", "ratio", "unit"}


def jets(n: int, size: int = 15, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = np.where(rng.random((n, size, size, 3)) < 0.1, rng.exponential(scale, (n, size, size, 3)), 0.0)
    images[:, size // 2, size // 2, :] += rng.exponential(20.0 * scale, (n, 3))
    return images.astype("float32")


def test_w1_of_a_shift_is_the_shift():
    a = np.random.default_rng(0).normal(size=500)
    value, error = bootstrap_w1(a + 2.0, a, n_boot=20)
    assert value == pytest.approx(2.0, abs=1e-9) and error < 0.3


def test_a_second_real_sample_sits_on_the_floor():
    """Generated = the real floor sample B: every classifier row equals its floor; each W1 is one split's value,
    within the spread of the floor averaged over re-splits, and its ratio is value / floor."""
    real_a, real_b = jets(24, seed=1), jets(24, seed=2)
    labels = np.arange(24) % 2
    rows = quality_table(real_a, real_b, real_b.copy(), labels, labels, cnn_epochs=1, n_boot=20)
    assert [r["measure"] for r in rows] == ["hl_auc", "cnn_auc", *(f"w1_{k}" for k in W1_OBSERVABLES), "qg_auc"]
    for row in rows:
        assert set(row) == COLUMNS | ({"ratio_error"} if row["measure"] == "qg_auc" else set())
        if row["measure"].startswith("w1_"):
            assert row["floor"] > 0 and abs(row["value"] - row["floor"]) < 3 * row["floor_error"], row["measure"]
            assert row["ratio"] == pytest.approx(row["value"] / row["floor"])
        else:
            assert row["value"] == pytest.approx(row["floor"]), row["measure"]
    assert rows[-1]["ratio"] == pytest.approx(0.0)  # quark/gluon AUC: generated - real


def test_w1_floor_is_the_mean_w1_of_two_real_samples_and_ignores_the_split():
    """The averaged floor of one pair of samples is the W1 that independent pairs of the same sizes give on
    average (Monte Carlo, N(0, 1), 400 + 600 values); it spreads like one pair's W1; the pooled values alone
    fix it (the same values split differently between a and b give the same floor)."""
    rng = np.random.default_rng(3)
    pairs = [wasserstein_distance(rng.normal(size=400), rng.normal(size=600)) for _ in range(300)]
    a, b = rng.normal(size=400), rng.normal(size=600)
    floor, spread = w1_floor(a, b, splits=200)
    assert floor == pytest.approx(np.mean(pairs), rel=0.1) and spread == pytest.approx(np.std(pairs), rel=0.25)
    pooled = rng.permutation(np.concatenate([a, b]))
    assert w1_floor(pooled[:400], pooled[400:], splits=200) == (floor, spread)


def test_quark_gluon_row_scores_the_extra_generated_events():
    """q/g row on ``qg_generated``: B repeated 4 times scores B's own AUC (difference 0) with a bootstrap error
    about half of B's (4x the events), and the difference's error is both errors in quadrature."""
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    real_a, real_b = jets(60, seed=1), jets(60, seed=2)
    real_a[labels == 1] *= 1.5  # gluons carry more energy: something to classify
    real_b[labels == 1] *= 1.5
    noise = rng.permutation(60)[:10]  # some B gluons look like quarks: AUC below 1
    real_b[noise] /= (1.5 ** labels[noise])[:, None, None, None]
    qg = (np.tile(real_b, (4, 1, 1, 1)), np.tile(labels, 4))
    rows = quality_table(real_a, real_b, real_b.copy(), labels, labels, cnn_epochs=1, n_boot=100, qg_generated=qg)
    row = rows[-1]
    assert row["measure"] == "qg_auc" and 0.6 < row["floor"] < 1.0
    assert row["value"] == pytest.approx(row["floor"]) and row["ratio"] == pytest.approx(0.0)
    assert 0.3 < row["error"] / row["floor_error"] < 0.75
    assert row["ratio_error"] == pytest.approx(np.hypot(row["error"], row["floor_error"]))
    assert f"{row['ratio']:+.3f} ± {row['ratio_error']:.3f}" in format_table(rows)


def test_different_energy_scale_is_detected():
    real_a, real_b = jets(40, seed=1), jets(40, seed=2)
    hot = jets(40, seed=3, scale=3.0)
    labels = np.arange(40) % 2
    rows = {r["measure"]: r for r in quality_table(real_a, real_b, hot, labels, labels, cnn_epochs=1, n_boot=20)}
    assert rows["hl_auc"]["value"] > 0.9 > rows["hl_auc"]["floor"]
    assert rows["w1_energy_ecal"]["ratio"] > 3.0
    assert "| hl_auc [AUC] |" in format_table(list(rows.values()))
    with pytest.raises(ValueError, match="as many generated"):
        quality_table(real_a, real_b, hot[:10], labels, labels)


def test_feature_separation_names_the_feature_that_differs():
    """Generated events with 4x the Tracks energy: the Tracks features separate most (AUC near 1, larger in
    generated), their real-vs-real values stay near 0.5; generated = B gives each feature its floor."""
    real_a, real_b = jets(60, seed=1), jets(60, seed=2)
    hot = real_b.copy()
    hot[..., 0] *= 4.0
    rows = feature_separation(real_a, real_b, hot)
    assert len(rows) == len(quality_feature_names())
    assert all(row["feature"].endswith("tracks") for row in rows[:4])  # hits, energy, hottest pixel of Tracks
    assert rows[0]["auc"] > 0.95 and abs(rows[0]["floor"] - 0.5) < 0.15
    for row in feature_separation(real_a, real_b, real_b.copy()):
        assert row["auc"] == pytest.approx(row["floor"])


def multiplicity_jets(n: int, seed: int, coupled: bool, size: int = 15) -> np.ndarray:
    """Events of 1 GeV hits on distinct pixels; each channel has m hits, m uniform in 5..60: one m per event for
    all channels (``coupled``, as real jets) or one per channel (same marginals, no correlation)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), "float32")
    for event in images:
        shared = rng.integers(5, 61)
        for c in range(3):
            m = shared if coupled else rng.integers(5, 61)
            event.reshape(-1, 3)[rng.choice(size * size, m, replace=False), c] = 1.0
    return images


def test_hit_counts_right_per_channel_but_uncorrelated_are_seen_by_their_group_not_one_by_one():
    real_a, real_b = multiplicity_jets(200, 1, True), multiplicity_jets(200, 2, True)
    generated = multiplicity_jets(200, 3, False)
    np.testing.assert_allclose(hit_count_correlations(real_b), 1.0)  # every channel has the event's m hits
    assert np.all(np.abs(hit_count_correlations(generated)) < 0.25)
    singles = {row["feature"]: row["auc"] for row in feature_separation(real_a, real_b, generated)}
    assert all(abs(singles[f"log hits > 0 GeV {c}"] - 0.5) < 0.1 for c in ("tracks", "ecal", "hcal"))
    groups = {row["group"]: row for row in feature_group_separation(real_a, real_b, generated)}
    assert set(groups) == {"channel energies", "hit counts", "radial profile", "jet mass and pT", "hottest pixels"}
    assert groups["hit counts"]["alone"] > 0.8 and abs(groups["hit counts"]["floor"] - 0.5) < 0.1
    assert groups["hottest pixels"]["alone"] == pytest.approx(0.5, abs=0.1)  # every hit is 1 GeV
    same = feature_group_separation(real_a, real_b, real_b.copy())
    assert all(row["alone"] == pytest.approx(row["floor"]) for row in same)


def test_block_centre_share_counts_hits_on_the_centre_pixel_of_their_block():
    images = np.zeros((2, 12, 12, 3), "float32")
    images[0, 2, 2, 0] = images[0, 7, 7, 0] = images[1, 12 - 1, 7, 0] = 1.0  # 2 of 3 Tracks hits on centres
    images[0, 0, 0, 1] = images[1, 7, 8, 1] = 5.0  # ECAL: none on a centre (7, 8 is beside (7, 7))
    share = block_centre_share(images, patch=5)
    np.testing.assert_allclose(share[:2], [2 / 3, 0.0])
    assert np.isnan(share[2])  # no HCAL hit
    line = describe_block_centre_share(share, block_centre_share(np.ones_like(images), patch=5), patch=5)
    assert "(Tracks / ECAL): generated 66.7 % / 0.0 %, real 2.8 % / 2.8 % (uniform: 4 %)" in line  # 4 of 144
    towers = np.repeat(np.repeat(np.random.default_rng(0).random((3, 5, 5, 1)) > 0.5, 5, 1), 5, 2)
    assert block_centre_share(towers.astype("float32"))[0] == pytest.approx(1 / 25)  # uniform towers: 1/p²


def test_the_run_reports_w1_ratios_use_the_same_averaged_floor():
    """``w1_with_floor`` (the fit report's generation W1s) divides by the same averaged floor as the quality table."""
    from hep_keras.evaluation.generation import w1_with_floor

    rng = np.random.default_rng(4)
    a, b, g = ({"mass": rng.normal(size=300)} for _ in range(3))
    out = w1_with_floor(a, b, g)
    assert out["w1_floor"]["mass"] == w1_floor(a["mass"], b["mass"])[0]
    assert out["w1_over_floor"]["mass"] == pytest.approx(
        wasserstein_distance(a["mass"], g["mass"]) / w1_floor(a["mass"], b["mass"])[0]
    )


def test_edge_hits_count_hits_on_each_border_per_event():
    """Hits in the outer pixels per side, averaged over events; a corner pixel is on two sides; the line shows
    generated / real per channel in the order left / right / top / bottom."""
    images = np.zeros((2, 12, 12, 3), "float32")
    images[0, 6, 0, 0] = images[0, 6, 1, 0] = images[1, 5, 1, 0] = 1.0  # Tracks: 3 hits in the left 2 columns
    images[0, 0, 11, 1] = 2.0  # ECAL: the top-right corner, on the right and top borders
    images[:, 6, 6, 2] = 3.0  # HCAL: centre only, on no border
    np.testing.assert_allclose(edge_hits(images, width=2), [[1.5, 0, 0], [0, 0.5, 0], [0, 0.5, 0], [0, 0, 0]])
    real = np.ones((1, 12, 12, 3), "float32")  # 24 hits on every border of width 2
    line = describe_edge_hits(edge_hits(images, 2), edge_hits(real, 2), width=2)
    assert line == (
        "Hits in the outer 2 pixels of each side (left / right / top / bottom), generated / real: "
        "Tracks 0.06 / 0.00 / 0.00 / 0.00, ECAL 0.00 / 0.02 / 0.02 / 0.00, HCAL 0.00 / 0.00 / 0.00 / 0.00."
    )


def test_quality_features_shape_and_hottest_pixel():
    images = jets(3)
    feats = quality_features(images)
    assert feats.shape == (3, len(quality_feature_names())) == (3, 3 + 9 + 8 + 2 + 3)
    np.testing.assert_allclose(feats[:, -3:], np.log1p(images.max(axis=(1, 2))), rtol=1e-6)


def benchmark_module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "generation_quality.py"
    spec = importlib.util.spec_from_file_location("generation_quality_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_reference_draws_training_events_with_the_requested_labels():
    """The perfect-generator reference: one training-split event per label, that label, none twice, seeded."""
    from hep_keras.data import read_events, split_indices
    from hep_keras.data.sample import SAMPLE_PATH

    module = benchmark_module()
    config, n_events = {"fractions": [0.8, 0.1, 0.1], "seed": 0}, 4000
    labels = np.array([1, 0, 0, 1, 1, 0, 1, 1], np.int32)
    images = module.training_reference(str(SAMPLE_PATH), n_events, config, labels, seed=3, crop=None)
    assert images.shape == (8, 125, 125, 3)
    np.testing.assert_array_equal(
        images, module.training_reference(str(SAMPLE_PATH), n_events, config, labels, 3, None)
    )

    def fingerprints(split):  # (total energy, Tracks energy, label) of every event of a split
        idx = np.sort(split_indices(n_events, split, config["fractions"], config["seed"]))
        ev = read_events(str(SAMPLE_PATH), idx, fields=("X_jets", "y"))
        return {
            (round(float(x.sum()), 3), round(float(x[..., 0].sum()), 3)): int(y)
            for x, y in zip(ev["X_jets"], ev["y"], strict=True)
        }

    train, test = fingerprints("train"), fingerprints("test")
    keys = [(round(float(x.sum()), 3), round(float(x[..., 0].sum()), 3)) for x in images]
    assert len(set(keys)) == 8 and not set(keys) & set(test)  # 8 different events, none of the test split
    assert [train[k] for k in keys] == labels.tolist()  # training events, each with its requested label
    with pytest.raises(ValueError, match="the training split has .* events of label 1, 4000 needed"):
        module.training_reference(str(SAMPLE_PATH), n_events, config, np.ones(4000, np.int32), 3, None)


def test_benchmark_tiny_mode_prints_the_table_with_floors(capsys):
    module = benchmark_module()
    assert module.main(["--tiny", "--events", "24", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "| measure | generated | real-vs-real floor |" in out and "speed-up vs DDPM" in out
    assert "Hits in the outer 5 pixels of each side (left / right / top / bottom), generated / real: Tracks " in out
    features, groups = out.split("| high-level feature (alone) |")[1].split("| feature group |")
    assert features.count("| log ") + features.count("| radial profile ") == 6  # the 6 most separating features
    groups = groups.split("Hits per event, rank correlation between channels")
    assert groups[0].count("\n| ") == 5 and "| hit counts | " in groups[0]  # one row per feature group
    correlations = groups[1].split("\n")[0].split("): ")[1]
    assert correlations.count(" / ") == 4 and "generated" in correlations and "real B" in correlations
    centre = next(line for line in out.splitlines() if line.startswith("Hits on their 5x5 block's centre pixel"))
    assert centre.count("%") == 5 and "uniform: 4 %" in centre
    seeds = [line.split("|")[1:6] for line in out.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert [int(row[0]) for row in seeds] == [1, 2]
    hl = [float(row[1]) for row in seeds]
    mean = next(line for line in out.splitlines() if line.startswith("| mean ± sd over 2 seeds"))
    assert float(mean.split("|")[2].split("±")[0]) == pytest.approx(np.mean(hl), abs=1e-3)
    table = out.split("| measure |")[1]
    assert f"| hl_auc [AUC] | {hl[0]:.3f}" in table  # the first seed is the main table's
    reference = out.split("Reference (not a model output)")[1].split("| measure |")[1]
    assert reference.count("| w1_") == 8 and "| qg_auc [AUC] |" in reference
    lines = {line.split(" |")[0].strip("| "): line for line in out.splitlines() if line.startswith("| w1_mass")}
    floor = float(lines["w1_mass [GeV]"].split("|")[3].split("±")[0])
    assert floor > 0  # the real-vs-real floor was computed
    assert "| network evaluations per event (guidance 1, eta 0) | 2 (target <= 50) |" in out  # the sampler used


def copy_sample_events(path: Path, indices: np.ndarray) -> Path:
    """A file in the dataset schema holding the given events of the shipped sample, in that order."""
    import h5py

    from hep_keras.data import read_events
    from hep_keras.data.sample import SAMPLE_PATH

    events = read_events(SAMPLE_PATH, indices)
    with h5py.File(path, "w") as handle:
        for key, values in events.items():
            handle.create_dataset(key, data=values)
    return path


def test_independent_events_come_from_the_given_file_and_never_from_the_training_file(tmp_path, make_jet_file):
    """--test-data: a seeded choice of the independent file's events (images with their labels); the training file
    itself and images of another shape are one error line naming the file."""
    from hep_keras.data.sample import SAMPLE_PATH
    from hep_keras.errors import DataError

    module = benchmark_module()
    trained_on = {"path": str(SAMPLE_PATH), "image_shape": [125, 125, 3], "crop": None}
    rows = np.arange(100, 130)
    path = copy_sample_events(tmp_path / "heldout.h5", rows)
    images, labels = module.independent_events(str(path), 20, trained_on)
    assert images.shape == (20, 125, 125, 3) and labels.dtype == np.int32
    again, _ = module.independent_events(str(path), 20, trained_on)
    np.testing.assert_array_equal(images, again)  # the same events every time
    from hep_keras.data import read_events

    stored = read_events(path, np.arange(30))
    totals = {round(float(x.sum()), 3): int(y) for x, y in zip(stored["X_jets"], stored["y"], strict=True)}
    picked = [round(float(x.sum()), 3) for x in images]
    assert len(set(picked)) == 20 and [totals[t] for t in picked] == labels.tolist()  # 20 of its events, own labels
    cropped, _ = module.independent_events(str(path), 5, dict(trained_on, crop=32))
    assert cropped.shape == (5, 32, 32, 3)  # the export's crop applies alike
    with pytest.raises(DataError, match="qg_sample.h5: is the file the export was trained on"):
        module.independent_events(str(SAMPLE_PATH), 20, trained_on)
    with pytest.raises(DataError, match=r"small.h5: images are \(16, 16, 3\), the export was trained on \(125, 125, 3"):
        module.independent_events(str(make_jet_file("small.h5", size=16)), 20, trained_on)


def test_benchmark_takes_held_out_events_from_an_independent_file(tmp_path, make_jet_file, capsys):
    module = benchmark_module()
    path = copy_sample_events(tmp_path / "heldout.h5", np.arange(200, 240))
    assert module.main(["--tiny", "--events", "24", "--test-data", str(path), "--ceiling"]) == 0
    out = capsys.readouterr().out
    assert f"24 held-out events of the independent file {path} (125x125x3), A = 12, B = generated = 12" in out
    ceiling = out.split("Representation ceiling (not a model output)")[1].split("| measure |")[1].split("\n\n")[0]
    rows = {line.split(" |")[0].strip("| "): line.split("|") for line in ceiling.splitlines() if line.startswith("| ")}
    assert len(rows) == 11  # the quality table's measures
    from hep_keras.data.sample import SAMPLE_PATH

    trained_on = {"path": str(SAMPLE_PATH), "image_shape": [125, 125, 3], "crop": None}
    real, _ = module.independent_events(str(path), 24, trained_on)
    a, b = split_halves(len(real), 1)  # the benchmark's A and B (seed 1)
    observables = [image_observables(real[a]), image_observables(real[b])]
    for channel in ("tracks", "ecal", "hcal"):  # every channel's energy is kept by the hit slots: W1(B, A)
        key = f"energy_{channel}"
        expected = wasserstein_distance(observables[1][key], observables[0][key])
        assert float(rows[f"w1_{key} [GeV]"][2].split("±")[0]) == pytest.approx(expected, abs=1e-3)
    assert module.main(["--tiny", "--test-data", str(make_jet_file("small.h5", size=16))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "small.h5: images are (16, 16, 3)" in err[0]


def test_benchmark_saves_the_events_it_scored(tmp_path, capsys):
    """--save-generated: B's generated events with B's labels, in the dataset schema; an existing file is one error
    line before any work and stays as it was."""
    import h5py

    from hep_keras.data import inspect_jet_file

    module = benchmark_module()
    out = tmp_path / "generated.h5"
    assert module.main(["--tiny", "--events", "24", "--save-generated", str(out)]) == 0
    table = capsys.readouterr().out
    info = inspect_jet_file(out)
    assert info.n_events == 12 and tuple(info.image_shape) == (125, 125, 3)  # B = half of the 24 held-out events
    with h5py.File(out) as handle:
        energies = handle["X_jets"][:].sum(axis=(1, 2))  # (12, 3) GeV per channel
        labels = handle["y"][:]
    from hep_keras.evaluation.generation import split_halves

    _, real, real_labels, _, _ = module.tiny_setup(24, None)
    _, b_idx = split_halves(len(real), 1)  # the benchmark's default seed
    assert "B = generated = 12" in next(row for row in table.splitlines() if row.startswith("# "))
    np.testing.assert_array_equal(labels, real_labels[b_idx])  # each generated event with the label it was made for
    assert np.isfinite(energies).all() and energies.sum() > 0
    before = out.read_bytes()
    assert module.main(["--tiny", "--events", "24", "--save-generated", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {out}: already exists (pass --overwrite to replace it)"]
    assert out.read_bytes() == before
    assert module.main(["--tiny", "--events", "24", "--save-generated", str(out), "--overwrite"]) == 0
    with h5py.File(out) as handle:
        np.testing.assert_array_equal(handle["y"][:], labels)  # replaced on request, same seed: same labels
