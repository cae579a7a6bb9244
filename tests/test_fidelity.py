"""hep_keras.evaluation.fidelity: EMD, baselines, two-sample tests, outer ring, occupancy, q/g information."""

import numpy as np
import pytest

from hep_keras.evaluation import fidelity as F
from hep_keras.evaluation import fidelity_report as R
from hep_keras.physics import PIXEL_SIZE


def one_pixel(size=32, at=(16, 16), channel=1, energy=5.0, n=1):
    images = np.zeros((n, size, size, 3), np.float32)
    images[:, at[0], at[1], channel] = energy
    return images


def jets(n, size=32, width=2.0, seed=0, shift=0):
    """Sparse toy jets: a core at the centre (+ ``shift`` pixels in η) and Gaussian-spread deposits."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.float32)
    c = size // 2
    for i in range(n):
        for ch in range(3):
            k = rng.integers(5, 15)
            eta = np.clip(np.round(rng.normal(c + shift, width, k)), 0, size - 1).astype(int)
            phi = np.clip(np.round(rng.normal(c, width, k)), 0, size - 1).astype(int)
            np.add.at(images[i, ..., ch], (eta, phi), rng.exponential(2.0, k))
    return images


@pytest.mark.parametrize("k", [1, 3, 10])
def test_emd_of_one_pixel_moved_by_k_pixels_is_k_pixel_sizes(k):
    a = one_pixel(at=(16, 8))
    b = one_pixel(at=(16, 8 + k), energy=2.0)  # other energy: shapes are normalised
    emd = F.emd_per_event(a, b)
    assert emd["calo"][0] == pytest.approx(k * PIXEL_SIZE, rel=1e-9)
    assert emd["tracks"][0] == 0.0  # both empty
    tracks = F.emd_per_event(one_pixel(at=(4, 4), channel=0), one_pixel(at=(7, 8), channel=0))
    assert tracks["tracks"][0] == pytest.approx(5 * PIXEL_SIZE, rel=1e-9)  # 3-4-5 diagonal


def test_emd_splits_and_sums_ecal_with_hcal():
    a = one_pixel(at=(16, 16), channel=1, energy=4.0)
    b = np.zeros_like(a)
    b[0, 16, 16, 2] = 2.0  # half the energy stays (in HCAL), half moves 2 pixels
    b[0, 16, 18, 1] = 2.0
    assert F.emd_per_event(a, b)["calo"][0] == pytest.approx(0.5 * 2 * PIXEL_SIZE)
    assert F.emd_per_event(a, a)["calo"][0] == 0.0


def test_emd_of_an_empty_reconstruction_uses_the_image_centre():
    a = one_pixel(size=33, at=(16, 20))  # 4 pixels from the centre pixel (16, 16)
    assert F.emd_per_event(a, np.zeros_like(a))["calo"][0] == pytest.approx(4 * PIXEL_SIZE)
    with pytest.raises(ValueError, match="shape mismatch"):
        F.emd_per_event(a, a[:, :32])


def test_zero_suppress_keeps_energy_and_falls_back_to_hottest_pixel():
    x = np.zeros((2, 4, 4, 3), np.float32)
    x[0, 0, 0, 0], x[0, 1, 1, 0], x[0, 2, 2, 0] = 3.0, 0.5, -1.0  # 2.5 GeV after clipping the negative
    x[1, 0, 0, 1], x[1, 0, 1, 1] = 0.05, 0.02  # nothing passes 0.1: hottest pixel keeps everything
    out = F.zero_suppress(x, [1.0, 0.1, 0.1])
    assert out[0, 0, 0, 0] == pytest.approx(3.5) and out[0, 1, 1, 0] == 0 and out.min() == 0
    assert out[1, 0, 0, 1] == pytest.approx(0.07) and out[1, 0, 1, 1] == 0
    raw = F.zero_suppress(x, [1.0, 0.1, 0.1], keep_energy=False)
    assert raw[0, 0, 0, 0] == 3.0 and raw[1].sum() == 0


def test_mean_image_baseline_scales_to_each_events_channel_energies():
    train = jets(50, seed=1)
    test = jets(5, seed=2)
    reco = F.mean_image_reconstruction(F.mean_image(train), test)
    np.testing.assert_allclose(reco.sum(axis=(1, 2)), test.sum(axis=(1, 2)), rtol=1e-5)
    same = np.repeat(test[:1], 4, axis=0)  # every training image identical → the baseline is exact
    np.testing.assert_allclose(F.mean_image_reconstruction(F.mean_image(same), test[:1]), test[:1], atol=1e-5)
    suppressed = F.mean_image_reconstruction(F.mean_image(train), test, [0.5, 0.5, 0.5])
    assert suppressed[suppressed > 0].min() >= 0.5
    np.testing.assert_allclose(suppressed.sum(axis=(1, 2)), test.sum(axis=(1, 2)), rtol=1e-5)


def test_pca_baseline_is_exact_on_images_in_a_k_dimensional_subspace():
    rng = np.random.default_rng(0)
    basis = jets(3, size=12, seed=3)
    train = np.einsum("nk,khwc->nhwc", rng.uniform(0.5, 2, (40, 3)), basis).astype(np.float32)
    test = np.einsum("nk,khwc->nhwc", rng.uniform(0.5, 2, (5, 3)), basis).astype(np.float32)
    pca = F.PCABaseline(3, batch_size=16).fit(train)
    np.testing.assert_allclose(pca.reconstruct(test), test, atol=1e-3)
    assert F.PCABaseline(2).fit(train).reconstruct(test).min() >= 0.0
    with pytest.raises(ValueError, match="at least 3"):
        F.PCABaseline(3).fit(train[:2])


def test_image_summaries_on_a_known_image():
    x = np.zeros((1, 33, 33, 3), np.float32)
    x[0, 16, 16, 0] = 6.0  # Tracks: one 6 GeV pixel at the centre
    x[0, 16, 16, 1], x[0, 16, 26, 2] = 0.5, 1.5  # calo: 0.5 at ΔR 0, 1.5 at ΔR 10 pixels
    features, names = F.image_summaries(x, return_names=True)
    f = dict(zip(names, features[0], strict=True))
    assert f["log1p_occupancy_tracks_5GeV"] == pytest.approx(np.log(2))
    assert f["log1p_occupancy_ecal_1GeV"] == 0 and f["log1p_occupancy_hcal_1GeV"] == pytest.approx(np.log(2))
    assert f["log1p_hottest_hcal"] == pytest.approx(np.log1p(1.5))
    assert f["ring_calo_0_0.05"] == pytest.approx(0.25) and f["ring_calo_0.15_0.2"] == pytest.approx(0.75)
    assert f["mean_dr_calo"] == pytest.approx(0.75 * 10 * PIXEL_SIZE, rel=1e-5)


def test_two_sample_auc_is_half_for_one_set_and_one_for_a_shifted_copy():
    data = jets(300, seed=4)
    same = F.two_sample_auc_hl(data[:150], data[150:], folds=3)
    assert abs(same["auc"] - 0.5) < 0.12
    shifted = F.two_sample_auc_hl(data[:150], np.roll(data[150:], 4, axis=1), folds=3)
    assert shifted["auc"] > 0.95


def test_cnn_two_sample_auc_sees_a_shifted_copy():
    data = jets(160, size=24, seed=5)
    shifted = F.two_sample_auc_cnn(data[:80], np.roll(data[80:], 6, axis=1), epochs=8)
    assert shifted["auc"] > 0.9 and shifted["n"] == 160


def test_outer_ring_share_and_occupancy_ratio_on_known_images():
    x = np.zeros((2, 101, 101, 3), np.float32)
    x[0, 50, 50, 1] = 3.0  # centre
    x[1, 50, 100, 2] = 1.0  # ΔR = 50 pixels = 0.87 rad > 0.8
    assert F.outer_ring_share(x) == pytest.approx(0.25)
    y = x.copy()
    y[0, 50, 51, 1] = 0.2  # one more ECAL pixel above 0.1 GeV, one below
    y[0, 50, 52, 1] = 0.05
    assert F.occupancy_ratio(x, y) == {"tracks": pytest.approx(float("nan"), nan_ok=True), "ecal": 2.0, "hcal": 1.0}


def test_qg_information_drops_when_the_discriminating_input_is_destroyed():
    # quarks narrow, gluons wide; reconstruction "destroyed" = every event the same mean shape
    n = 300
    quarks, gluons = jets(n, width=1.0, seed=6), jets(n, width=3.0, seed=7)
    images = np.concatenate([quarks, gluons])
    labels = np.r_[np.zeros(n), np.ones(n)]
    order = np.random.default_rng(0).permutation(2 * n)
    images, labels = images[order], labels[order]
    train, test = slice(0, 400), slice(400, None)
    destroyed = F.mean_image_reconstruction(F.mean_image(images[train]), images[test])
    out = F.qg_information(
        images[train], labels[train], images[test], labels[test], {"identity": images[test], "mean": destroyed}
    )
    assert out["auc_original"] > 0.9
    assert out["identity"]["ratio"] == 1.0
    assert out["mean"]["ratio"] < 0.8


def fake_results(emd_model=0.04, hl=0.7, occupancy=1.0, outer=0.1, qg=0.95, exact=("channel energies",)):
    row = {
        "code_size": 36,
        "emd_calo_mean": emd_model,
        "emd_tracks_mean": emd_model,
        "hl_auc": hl,
        "cnn_auc": 0.8,
        "outer_ring_share": outer,
        "outer_ring_ratio": outer / 0.1,
        "occupancy_ratio": {"tracks": occupancy, "ecal": 1.0, "hcal": 1.0},
        "qg_auc": 0.8 * qg,
        "qg_ratio": qg,
        "energy_response": {"tracks": 1.0, "ecal": 1.0, "hcal": 1.0},
        "mass_response": 0.9,
        "exact_by_construction": list(exact),
    }
    base = {**row, "emd_calo_mean": 0.1, "emd_tracks_mean": 0.1, "exact_by_construction": []}
    pca = {**row, "emd_calo_mean": 0.09, "emd_tracks_mean": 0.09, "exact_by_construction": []}
    results = {"n_events": 400, "original": {"outer_ring_share": 0.1, "qg_auc": 0.8}, "models": {}}
    results["models"] = {"vae": row, R.MEAN_IMAGE: base, R.PCA: pca}
    for r in results["models"].values():
        for ref, key in ((base, "vs_mean_image"), (pca, "vs_pca")):
            r[f"emd_calo_{key}"] = r["emd_calo_mean"] / ref["emd_calo_mean"]
            r[f"emd_tracks_{key}"] = r["emd_tracks_mean"] / ref["emd_tracks_mean"]
    return results


def test_verdicts_in_words_follow_the_targets():
    good = R.verdicts(fake_results(), "vae")
    assert good[0].startswith("Per-event EMD 0.40× (calorimeter) and 0.40× (Tracks) the mean-image baseline: ")
    assert "reconstructions follow individual events" in good[0] and "(better than PCA)" in good[0]
    assert "target ≤ 0.75 met" in good[1]
    assert "within 0.7–1.4" in good[3] and "no spurious structure" in good[4] and "keeps the q/g" in good[5]
    assert good[-1] == "Exact by construction, so not evidence of quality: channel energies."
    bad = R.verdicts(fake_results(emd_model=0.098, hl=0.99, occupancy=2.1, outer=0.2, qg=0.8, exact=()), "vae")
    assert "the model has not learned individual events" in bad[0] and "NOT better than PCA" in bad[0]
    assert "trivially separable" in bad[1]
    assert "tracks smeared" in bad[3] and "spurious far-from-axis energy" in bad[4] and "loses the q/g" in bad[5]
    assert not any("Exact by construction" in s for s in bad)
    partial = R.verdicts(fake_results(emd_model=0.07, outer=0.05, occupancy=0.5), "vae")
    assert "only partly" in partial[0] and "tracks too sparse" in partial[3] and "is missing" in partial[4]
    few = fake_results()
    few["n_events"] = 30
    assert R.verdicts(few, "vae")[0] == "Only 30 test events: the numbers below are too noisy to judge the model."


def test_markdown_table_labels_exact_quantities():
    table = R.markdown_table(fake_results())
    lines = table.splitlines()
    assert lines[0] == "| " + " | ".join(R.COLUMNS) + " |"
    vae = next(line for line in lines if line.startswith("| vae "))
    assert "1.000 / 1.000 / 1.000 (exact by construction)" in vae and "| 0.40 |" in vae
    mean = next(line for line in lines if line.startswith("| mean image "))
    assert "(exact by construction)" not in mean


def test_emd_of_dense_maps_merges_blocks_at_their_centroids():
    dense = np.ones((1, 60, 60, 3), np.float32)  # 3600 occupied pixels > MAX_EMD_PIXELS
    assert F.emd_per_event(dense, dense)["calo"][0] == pytest.approx(0.0, abs=1e-9)
    point = one_pixel(size=60, at=(27, 27))  # 0.5 pixel from the centre of the 60x60 image in each axis
    emd = F.emd_per_event(point, dense)["calo"][0]
    eta = (np.arange(60) - 29.5) * PIXEL_SIZE
    exact = np.hypot(eta[:, None] - eta[27], eta[None, :] - eta[27]).mean()
    assert abs(emd - exact) < 0.05 * exact
