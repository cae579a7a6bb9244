"""The physics vocabulary every layer shares: the pixel grid, the channels, jet kinematics and observables.

Images are ``(N, H, W, 3)`` arrays in GeV per pixel with channels (Tracks, ECAL, HCAL), centred on the jet
axis, pixels of ``PIXEL_SIZE`` in η and φ (one ECAL crystal). Every function here takes numpy arrays, never
models or files. This module is the ground floor of the package: it imports nothing of hep_keras.
"""

from __future__ import annotations

import numpy as np

#: Δη = Δφ of one pixel (one CMS ECAL barrel crystal)
PIXEL_SIZE = 0.0174
#: channel names of ``X_jets[..., c]``, as in the CMS dataset
CHANNELS = ("Tracks", "ECAL", "HCAL")
#: the same in lower case, for keys such as ``energy_ecal``
CHANNEL_KEYS = tuple(name.lower() for name in CHANNELS)

OBSERVABLE_UNITS = {
    "energy_tracks": "GeV",
    "energy_ecal": "GeV",
    "energy_hcal": "GeV",
    "energy_total": "GeV",
    "mass": "GeV",
    "pt": "GeV",
    "occupancy_tracks": "pixels",
    "occupancy_ecal": "pixels",
    "occupancy_hcal": "pixels",
}


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Map angles or angle differences [rad] into (-π, π] (float64 array of the same shape)."""
    phi = np.asarray(phi, dtype=np.float64)
    wrapped = np.mod(phi + np.pi, 2 * np.pi) - np.pi
    return np.where(wrapped == -np.pi, np.pi, wrapped)


def pixel_coordinates(height: int, width: int, pixel_size: float = PIXEL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(Δη, Δφ) of pixel centres relative to the image centre, each ``(H, W)`` in units of η/radians."""
    eta = (np.arange(height) - (height - 1) / 2.0) * pixel_size
    phi = (np.arange(width) - (width - 1) / 2.0) * pixel_size
    return np.meshgrid(eta, phi, indexing="ij")


def image_jet_kinematics(calo: np.ndarray, pixel_size: float = PIXEL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Image jet pT and mass (GeV) from calorimeter images ``(N, H, W)`` (GeV per pixel).

    Each pixel is a massless deposit of transverse energy equal to its value at (η, φ) = (Δη, Δφ): the jet
    axis is put at η = 0, which leaves the mass unchanged (it is invariant under boosts along the beam) and
    treats pixel energies as transverse energies (a few-% approximation for central jets).
    """
    calo = np.asarray(calo, dtype=np.float64)
    eta, phi = pixel_coordinates(calo.shape[1], calo.shape[2], pixel_size)
    px = np.einsum("nhw,hw->n", calo, np.cos(phi))
    py = np.einsum("nhw,hw->n", calo, np.sin(phi))
    pz = np.einsum("nhw,hw->n", calo, np.sinh(eta))
    energy = np.einsum("nhw,hw->n", calo, np.cosh(eta))
    pt = np.hypot(px, py)
    mass = np.sqrt(np.clip(energy**2 - px**2 - py**2 - pz**2, 0.0, None))
    return pt, mass


def image_observables(images: np.ndarray, threshold: float = 0.0) -> dict[str, np.ndarray]:
    """Per-event observables of ``(N, H, W, 3)`` images in GeV.

    Returns a dict of ``(N,)`` float64 arrays: ``energy_<channel>`` (sum of pixel values, GeV),
    ``energy_total`` (ECAL + HCAL, GeV; tracks measure the charged part again), ``pt`` and ``mass`` of the
    image jet from ECAL + HCAL (GeV, see :func:`image_jet_kinematics`), and ``occupancy_<channel>`` (number of
    pixels above ``threshold`` GeV).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected images of shape (N, H, W, 3), got {images.shape}")
    out: dict[str, np.ndarray] = {}
    sums = images.sum(axis=(1, 2), dtype=np.float64)
    for c, name in enumerate(CHANNEL_KEYS):
        out[f"energy_{name}"] = sums[:, c]
    out["energy_total"] = sums[:, 1] + sums[:, 2]
    out["pt"], out["mass"] = image_jet_kinematics(images[..., 1] + images[..., 2])
    counts = (images > threshold).sum(axis=(1, 2))
    for c, name in enumerate(CHANNEL_KEYS):
        out[f"occupancy_{name}"] = counts[:, c].astype(np.float64)
    return out


def radial_profile(images: np.ndarray, n_bins: int = 20, max_radius: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Mean fraction of the calorimeter energy (ECAL+HCAL) in rings of ΔR around the centre.

    Returns ``(bin_edges (n_bins+1,), profile (N, n_bins))``; ``profile`` rows sum to the fraction of the
    energy inside ``max_radius``.
    """
    calo = np.asarray(images[..., 1] + images[..., 2], dtype=np.float64)
    eta, phi = pixel_coordinates(calo.shape[1], calo.shape[2])
    radius = np.hypot(eta, phi)
    edges = np.linspace(0.0, max_radius, n_bins + 1)
    ring = np.digitize(radius, edges) - 1  # (H, W) ring index, -1/n_bins outside
    onehot = np.stack([(ring == k) for k in range(n_bins)], axis=-1).astype(np.float64)  # (H, W, B)
    per_ring = np.einsum("nhw,hwb->nb", calo, onehot)
    total = calo.sum(axis=(1, 2))[:, None]
    return edges, np.divide(per_ring, total, out=np.zeros_like(per_ring), where=total > 0)
