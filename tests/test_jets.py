"""Jet 4-vector readers and conversions (:mod:`hep_keras.data.jets`); no TensorFlow needed."""

from __future__ import annotations

import awkward as ak
import h5py
import numpy as np
import pandas as pd
import pytest
import uproot

from hep_keras.data.jets import (
    cartesian_from_ptetaphim,
    energy_from_ptetam,
    mass_from_ptetae,
    parse_columns,
    ptetaphim_from_cartesian,
    read_jets,
)
from hep_keras.errors import DataError


def toy(n: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """Random jets: pt 20-500 GeV, |eta| < 2.5, phi uniform, m = 2-20 % of pt."""
    rng = np.random.default_rng(seed)
    pt = rng.uniform(20, 500, n)
    eta, phi = rng.uniform(-2.5, 2.5, n), rng.uniform(-np.pi, np.pi, n)
    m = pt * rng.uniform(0.02, 0.2, n)
    return {"pt": pt, "eta": eta, "phi": phi, "m": m, "E": energy_from_ptetam(pt, eta, m)}


def check_same(table, jets, rtol=1e-9):
    for key in ("pt", "eta", "phi", "m", "E"):
        np.testing.assert_allclose(getattr(table, key), jets[key], rtol=rtol, atol=1e-9, err_msg=key)


# --- conversions ------------------------------------------------------------------------------------------------


def test_known_four_vectors():
    pt, eta, phi, m = ptetaphim_from_cartesian([3.0, 0.0], [4.0, 2.0], [0.0, 0.0], [13.0, 2.0])
    np.testing.assert_allclose(pt, [5, 2])
    np.testing.assert_allclose(eta, [0, 0], atol=1e-15)
    np.testing.assert_allclose(phi, [np.arctan2(4, 3), np.pi / 2])
    np.testing.assert_allclose(m, [12, 0])
    px, py, pz, E = cartesian_from_ptetaphim([10.0], [np.arcsinh(0.75)], [np.pi], [0.0])
    np.testing.assert_allclose([px[0], py[0], pz[0], E[0]], [-10, 0, 7.5, 12.5], atol=1e-12)


def test_negative_mass_squared_is_clipped():
    # a massless 4-vector whose E was rounded down: m^2 < 0 -> m = 0, never NaN
    px, py, pz = np.float32(30.1), np.float32(-40.3), np.float32(120.7)
    E = np.float32(np.sqrt(np.float64(px) ** 2 + np.float64(py) ** 2 + np.float64(pz) ** 2)) * np.float32(0.9999999)
    assert ptetaphim_from_cartesian([px], [py], [pz], [E])[3][0] == 0.0
    assert mass_from_ptetae([10.0], [1.0], [10.0 * np.cosh(1.0) - 1e-9])[0] == 0.0


def test_round_trip_conversions():
    jets = toy(200)
    back = ptetaphim_from_cartesian(*cartesian_from_ptetaphim(jets["pt"], jets["eta"], jets["phi"], jets["m"]))
    for key, values in zip(("pt", "eta", "phi", "m"), back, strict=True):
        np.testing.assert_allclose(values, jets[key], rtol=1e-7, atol=1e-9, err_msg=key)
    np.testing.assert_allclose(mass_from_ptetae(jets["pt"], jets["eta"], jets["E"]), jets["m"], rtol=1e-6)


# --- readers ----------------------------------------------------------------------------------------------------


def test_hdf5_jets_group_and_plain_columns(tmp_path):
    jets = toy()
    path = tmp_path / "sim.h5"
    with h5py.File(path, "w") as handle:  # simulator layout: images + jets/ group
        handle["X_jets"] = np.zeros((3, 4, 4, 3), np.float32)
        handle["pt"], handle["m0"] = np.ones(3), np.ones(3)
        for key, values in jets.items():
            handle[f"jets/{key}"] = values
        handle["jets/event"] = np.arange(50) // 3
    table = read_jets(path)
    check_same(table, jets)
    np.testing.assert_array_equal(table.event, np.arange(50) // 3)
    plain = tmp_path / "plain.hdf5"
    with h5py.File(plain, "w") as handle:
        for key in ("pt", "eta", "phi", "m"):
            handle[key] = jets[key].astype(np.float32)
    table = read_jets(plain)
    assert table.pt.dtype == np.float64 and len(table) == 50
    np.testing.assert_allclose(table.E, jets["E"], rtol=1e-5)


def test_npz_parquet_csv(tmp_path):
    jets = toy()
    np.savez(tmp_path / "j.npz", **{f"jet_{k}": v for k, v in jets.items()})
    check_same(read_jets(tmp_path / "j.npz"), jets)
    pd.DataFrame({"Jet_pt": jets["pt"], "Jet_eta": jets["eta"], "Jet_phi": jets["phi"], "Jet_E": jets["E"]}).to_parquet(
        tmp_path / "j.parquet"
    )
    check_same(read_jets(tmp_path / "j.parquet"), jets, rtol=1e-6)
    px, py, pz, E = cartesian_from_ptetaphim(jets["pt"], jets["eta"], jets["phi"], jets["m"])
    pd.DataFrame({"px": px, "py": py, "pz": pz, "E": E}).to_csv(tmp_path / "j.csv", index=False)
    check_same(read_jets(tmp_path / "j.csv"), jets, rtol=1e-6)


def write_root(path, jets, counts, branches):
    """TTree ``Events`` with jagged branches ``{name: key}`` (key in jets) and a flat ``event`` number."""
    arrays = {name: ak.unflatten(jets[key], counts) for name, key in branches.items()}
    with uproot.recreate(path) as handle:
        handle.mktree("Events", {**{n: "var * float64" for n in arrays}, "event": np.int64})
        handle["Events"].extend({**arrays, "event": np.arange(len(counts)) + 1000})


@pytest.fixture
def root_jets(tmp_path):
    jets = toy(60)
    counts = np.array([3, 0, 5, 2, 10, 40])
    px, py, pz, E = cartesian_from_ptetaphim(jets["pt"], jets["eta"], jets["phi"], jets["m"])
    jets.update(px=px, py=py, pz=pz)
    polar = tmp_path / "polar.root"
    write_root(polar, jets, counts, {"Jet_pt": "pt", "Jet_eta": "eta", "Jet_phi": "phi", "Jet_mass": "m"})
    cart = tmp_path / "cart.root"
    write_root(cart, jets, counts, {"AK4Jet_px": "px", "AK4Jet_py": "py", "AK4Jet_pz": "pz", "AK4Jet_E": "E"})
    return jets, counts, polar, cart


def test_root_jagged_polar_and_cartesian(root_jets):
    jets, counts, polar, cart = root_jets
    table = read_jets(polar)
    check_same(table, jets, rtol=1e-9)
    np.testing.assert_array_equal(table.event, np.repeat(np.arange(6) + 1000, counts))
    table = read_jets(f"{cart}:Events")
    check_same(table, jets, rtol=1e-7)
    explicit = read_jets(cart, columns="px=AK4Jet_px,py=AK4Jet_py,pz=AK4Jet_pz,E=AK4Jet_E")
    np.testing.assert_allclose(explicit.m, jets["m"], rtol=1e-6)


def test_min_pt(root_jets):
    jets, _, polar, _ = root_jets
    table = read_jets(polar, min_pt=200.0)
    assert len(table) == int((jets["pt"] >= 200).sum()) and table.pt.min() >= 200


def test_pickle_only_with_flag(tmp_path):
    jets = toy()
    path = tmp_path / "j.pkl"
    pd.DataFrame({k: jets[k] for k in ("pt", "eta", "phi", "m")}).to_pickle(path)
    with pytest.raises(DataError, match="--allow-pickle") as err:
        read_jets(path)
    assert "\n" not in str(err.value)
    check_same(read_jets(path, allow_pickle=True), jets)


# --- errors -----------------------------------------------------------------------------------------------------


def one_line_error(path, match, **kwargs):
    with pytest.raises(DataError, match=match) as err:
        read_jets(path, **kwargs)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_bad_inputs(tmp_path, root_jets):
    _, _, polar, _ = root_jets
    assert str(polar) in one_line_error(
        polar, "missing branch 'Jet_m'", columns="pt=Jet_pt,eta=Jet_eta,phi=Jet_phi,m=Jet_m"
    )
    with uproot.recreate(tmp_path / "empty.root") as handle:
        handle.mktree(
            "Events",
            {
                "Jet_pt": "var * float64",
                "Jet_eta": "var * float64",
                "Jet_phi": "var * float64",
                "Jet_mass": "var * float64",
            },
        )
    one_line_error(tmp_path / "empty.root", "empty tree")
    one_line_error(f"{polar}:Nope", "no tree 'Nope'")
    jets = toy()
    jets["m"][7] = np.nan
    np.savez(tmp_path / "nan.npz", **jets)
    one_line_error(tmp_path / "nan.npz", "non-finite m .* first at jet 7")
    one_line_error(tmp_path, "not a file")
    one_line_error(tmp_path / "missing.h5", "no such file")
    (tmp_path / "j.xyz").write_text("1")
    one_line_error(tmp_path / "j.xyz", "unknown file extension")
    (tmp_path / "bad.h5").write_text("not hdf5")
    one_line_error(tmp_path / "bad.h5", "not a readable HDF5 file")
    np.savez(tmp_path / "none.npz", a=np.ones(3))
    one_line_error(tmp_path / "none.npz", "no jet columns found")
    both = {f"Jet_{k}": v for k, v in toy().items()} | {f"FatJet_{k}": v for k, v in toy().items()}
    np.savez(tmp_path / "two.npz", **both)
    assert len(read_jets(tmp_path / "two.npz")) == 50  # "Jet_" preferred
    np.savez(
        tmp_path / "amb.npz",
        **{f"AK8_{k}": v for k, v in toy().items()},
        **{f"AK4_{k}": v for k, v in toy().items()},
    )
    one_line_error(tmp_path / "amb.npz", "several jet collections")
    with pytest.raises(DataError, match="unknown key"):
        parse_columns("pt=a,foo=b")
