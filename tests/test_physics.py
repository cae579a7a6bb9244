"""Image observables and reconstruction metrics against known answers."""

import numpy as np
import pytest

from hep_keras.evaluation.metrics import distribution_distances, reconstruction_metrics, response
from hep_keras.physics import PIXEL_SIZE, image_observables, pixel_coordinates, radial_profile, wrap_phi


def _blank(n=1, size=33):
    return np.zeros((n, size, size, 3), np.float32)


def test_pixel_coordinates_centred():
    eta, phi = pixel_coordinates(5, 5)
    assert eta[2, 2] == 0 and phi[2, 2] == 0
    assert eta[4, 0] == pytest.approx(2 * PIXEL_SIZE) and phi[0, 4] == pytest.approx(2 * PIXEL_SIZE)


def test_single_central_deposit_is_massless_with_pt_equal_energy():
    images = _blank()
    images[0, 16, 16, 1] = 50.0
    obs = image_observables(images)
    assert obs["pt"][0] == pytest.approx(50.0)
    assert obs["mass"][0] == pytest.approx(0.0, abs=1e-6)
    assert obs["energy_ecal"][0] == 50.0 and obs["occupancy_ecal"][0] == 1 and obs["occupancy_tracks"][0] == 0


def test_two_deposits_mass_closed_form():
    # two massless deposits of pT E at phi = +-a (eta = 0): m = 2 E sin(a), pT = 2 E cos(a)
    images = _blank()
    k, energy = 10, 20.0
    images[0, 16, 16 - k, 1] = energy
    images[0, 16, 16 + k, 2] = energy
    a = k * PIXEL_SIZE
    obs = image_observables(images)
    assert obs["mass"][0] == pytest.approx(2 * energy * np.sin(a), rel=1e-6)
    assert obs["pt"][0] == pytest.approx(2 * energy * np.cos(a), rel=1e-6)
    assert obs["energy_total"][0] == pytest.approx(2 * energy)


def test_tracks_do_not_enter_calorimeter_mass():
    images = _blank()
    images[0, 0, 0, 0] = 100.0
    assert image_observables(images)["mass"][0] == 0.0


def test_response_of_scaled_images():
    rng = np.random.default_rng(0)
    original = np.where(rng.random((20, 33, 33, 3)) < 0.05, rng.exponential(1.0, (20, 33, 33, 3)), 0).astype("f4")
    metrics = reconstruction_metrics(original, 1.1 * original)
    for key in ("energy_ecal", "energy_total", "mass", "pt"):
        assert metrics["response"][key]["mean"] == pytest.approx(1.1, rel=1e-5)
        assert metrics["response"][key]["std"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["occupancy_ratio"]["hcal"] == 1.0
    assert metrics["pixel"]["mae_gev"] == pytest.approx(0.1 * np.abs(original).mean(), rel=1e-4)
    same = reconstruction_metrics(original, original)
    assert all(v == 0 for v in same["wasserstein1"].values())
    assert same["secondary"]["ssim"] == pytest.approx(1.0)


def test_response_ignores_empty_originals_and_blank_output_reads_zero():
    stats = response(np.array([0.0, 2.0, 4.0]), np.array([5.0, 1.0, 2.0]))
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    original = np.where(rng.random((8, 33, 33, 3)) < 0.05, 1.0, 0).astype("f4")
    blank = reconstruction_metrics(original, np.zeros_like(original))
    assert blank["response"]["energy_total"]["mean"] == 0.0
    assert blank["occupancy_ratio"]["ecal"] == 0.0


def test_distribution_distances_shift():
    a = {"x": np.arange(100.0)}
    b = {"x": np.arange(100.0) + 3.0}
    assert distribution_distances(a, b)["x"] == pytest.approx(3.0)


def test_radial_profile_puts_central_energy_in_first_ring():
    images = _blank()
    images[0, 16, 16, 1] = 10.0
    edges, profile = radial_profile(images, n_bins=4, max_radius=0.4)
    assert edges[0] == 0 and profile[0, 0] == pytest.approx(1.0) and profile[0, 1:].sum() == 0


def test_wrap_phi_at_pi():
    np.testing.assert_allclose(wrap_phi([np.pi, -np.pi, 3 * np.pi, 0.5 - 2 * np.pi]), [np.pi, np.pi, np.pi, 0.5])
