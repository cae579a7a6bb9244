"""The detector model: visible particles -> Tracks/ECAL/HCAL image (pixel binning, HCAL towers, smearing).

The pure deposit functions (:func:`deposit_image`, :func:`bin_pixels`, :func:`bin_towers`,
:func:`spread_towers`) and the response (:func:`smear_cells`, :func:`event_image`) need only numpy. The
approximation itself is described in :mod:`hep_keras.simulation` and ``docs/simulation.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hep_keras.physics import PIXEL_SIZE, wrap_phi
from hep_keras.simulation.config import (
    IMAGE_PIXELS,
    INVISIBLE_PIDS,
    MUON_PID,
    TOWER_PIXELS,
    DetectorConfig,
)


def pixel_indices(deta: np.ndarray, dphi: np.ndarray, n_pixels: int = IMAGE_PIXELS, pixel: float = PIXEL_SIZE):
    """Pixel row (eta) and column (phi) of positions relative to the jet axis, and an inside-window mask.

    Pixel ``n_pixels // 2`` (62) is centred on the axis: it covers ``[-pixel/2, +pixel/2)``.

    Args:
        deta, dphi: (P,) offsets from the jet axis (dphi already wrapped).
    Returns:
        ``(row, col, inside)``: int64 (P,), int64 (P,), bool (P,).
    """
    row = np.floor(np.asarray(deta) / pixel + n_pixels / 2).astype(np.int64)
    col = np.floor(np.asarray(dphi) / pixel + n_pixels / 2).astype(np.int64)
    inside = (row >= 0) & (row < n_pixels) & (col >= 0) & (col < n_pixels)
    return row, col, inside


def bin_pixels(deta: np.ndarray, dphi: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Sum ``weight`` (GeV, (P,)) into the 125 x 125 pixel grid; returns float64 (125, 125), outside dropped."""
    row, col, inside = pixel_indices(deta, dphi)
    flat = row[inside] * IMAGE_PIXELS + col[inside]
    sums = np.bincount(flat, weights=np.asarray(weight, dtype=np.float64)[inside], minlength=IMAGE_PIXELS**2)
    return sums.reshape(IMAGE_PIXELS, IMAGE_PIXELS)


def bin_towers(deta: np.ndarray, dphi: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Sum ``weight`` (GeV, (P,)) into the 25 x 25 HCAL towers of 5 x 5 pixels; float64 (25, 25)."""
    n_towers = IMAGE_PIXELS // TOWER_PIXELS
    row, col, inside = pixel_indices(deta, dphi)
    flat = (row[inside] // TOWER_PIXELS) * n_towers + col[inside] // TOWER_PIXELS
    sums = np.bincount(flat, weights=np.asarray(weight, dtype=np.float64)[inside], minlength=n_towers**2)
    return sums.reshape(n_towers, n_towers)


def spread_towers(towers: np.ndarray) -> np.ndarray:
    """Spread each tower energy (GeV, (25, 25)) uniformly over its 5 x 5 pixels; returns (125, 125).

    The sum over a tower's 25 pixels equals the tower energy.
    """
    per_pixel = np.asarray(towers) / TOWER_PIXELS**2
    return np.repeat(np.repeat(per_pixel, TOWER_PIXELS, axis=0), TOWER_PIXELS, axis=1)


def deposit_image(
    deta: np.ndarray, dphi: np.ndarray, track_pt: np.ndarray, ecal_e: np.ndarray, hcal_e: np.ndarray
) -> np.ndarray:
    """Ideal (no resolution, no threshold) image of particles at offsets ``(deta, dphi)`` from the jet axis.

    Args:
        deta, dphi: (P,) position of each particle relative to the image centre (dphi wrapped to [-pi, pi)).
        track_pt: (P,) GeV put in the Tracks channel (0 for particles without a track).
        ecal_e: (P,) GeV put in the ECAL channel (one pixel).
        hcal_e: (P,) GeV put in the HCAL channel (its 0.087 x 0.087 tower, spread over 5 x 5 pixels).
    Returns:
        float32 (125, 125, 3), channels (Tracks, ECAL, HCAL). Each channel sums to the energy that fell inside
        the window.
    """
    tracks = bin_pixels(deta, dphi, track_pt)
    ecal = bin_pixels(deta, dphi, ecal_e)
    hcal = spread_towers(bin_towers(deta, dphi, hcal_e))
    return np.stack([tracks, ecal, hcal], axis=-1).astype(np.float32)


def smear_cells(
    cells: np.ndarray,
    rng: np.random.Generator,
    stochastic: float,
    constant: float,
    noise: float,
    threshold: float,
) -> np.ndarray:
    """Gaussian calorimeter response applied to the non-empty cells of ``cells`` (GeV, any shape).

    sigma(E) = sqrt(stochastic^2 E + (constant E)^2 + noise^2); results are clipped at 0 and cells below
    ``threshold`` set to 0. Empty cells stay exactly 0 (no pure-noise hits). Draws one normal per non-empty
    cell in C order, so the result is deterministic for a given ``rng`` state.
    """
    out = np.array(cells, dtype=np.float64, copy=True)
    hit = out > 0
    energy = out[hit]
    sigma = np.sqrt(stochastic**2 * energy + (constant * energy) ** 2 + noise**2)
    smeared = np.maximum(energy + sigma * rng.standard_normal(energy.shape), 0.0)
    smeared[smeared < threshold] = 0.0
    out[hit] = smeared
    return out


@dataclass(frozen=True)
class Particles:
    """Final-state visible particles of one event (all arrays (P,)): GeV, pseudorapidity, radians, PDG id."""

    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    e: np.ndarray
    pid: np.ndarray
    charge: np.ndarray


def event_image(
    particles: Particles, jet_eta: float, jet_phi: float, detector: DetectorConfig, rng: np.random.Generator
) -> np.ndarray:
    """Detector image (float32 (125, 125, 3), GeV per pixel) of one event centred on ``(jet_eta, jet_phi)``.

    Muons leave only a track; photons and electrons ECAL energy (electrons also a track); every other visible
    particle is a hadron: HCAL energy (and a track when charged). See :mod:`hep_keras.simulation` for the response.
    """
    deta = particles.eta - jet_eta
    dphi = wrap_phi(particles.phi - jet_phi)
    apid = np.abs(particles.pid)
    keep_track = rng.random(apid.shape) < detector.track_efficiency
    is_track = (
        (particles.charge != 0)
        & (particles.pt > detector.track_pt_min)
        & (np.abs(particles.eta) < detector.track_eta_max)
        & keep_track
    )
    is_em = (apid == 22) | (apid == 11)
    is_hadron = ~is_em & (apid != MUON_PID) & ~np.isin(apid, INVISIBLE_PIDS)
    tracks = bin_pixels(deta, dphi, np.where(is_track, particles.pt, 0.0))
    ecal = smear_cells(
        bin_pixels(deta, dphi, np.where(is_em, particles.e, 0.0)),
        rng,
        detector.ecal_stochastic,
        detector.ecal_constant,
        detector.ecal_noise,
        detector.ecal_threshold,
    )
    towers = smear_cells(
        bin_towers(deta, dphi, np.where(is_hadron, particles.e, 0.0)),
        rng,
        detector.hcal_stochastic,
        detector.hcal_constant,
        detector.hcal_noise,
        detector.hcal_threshold,
    )
    return np.stack([tracks, ecal, spread_towers(towers)], axis=-1).astype(np.float32)
