"""Schema validation: every bad input gives one DataError line naming the file and the problem."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from hep_keras.data import JetFileInfo, inspect_jet_file
from hep_keras.errors import DataError


def _error(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        inspect_jet_file(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert path.name in message
    return message


def test_valid_file_info(make_jet_file):
    path = make_jet_file("good.h5", n=40, size=16, extra={"eta": np.zeros(40), "jets": {"pt": np.ones(5)}})
    info = inspect_jet_file(path)
    assert isinstance(info, JetFileInfo)
    assert (info.n_events, info.image_shape, info.dtype) == (40, (16, 16, 3), "float32")
    assert info.chunks == (8, 16, 16, 3) and info.compression == "gzip"
    assert info.keys == ("X_jets", "eta", "jets", "m0", "pt", "y")
    assert info.label_counts == (20, 20)
    assert len(info.fingerprint) == 64 and info.fingerprint == inspect_jet_file(path).fingerprint
    assert "40" in info.summary()
    with pytest.raises(AttributeError):
        info.n_events = 3  # frozen


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dtype": "float64"},
        {"chunks": None, "compression": None},
        {"compression": "lzf"},
        {"compression": None},
        {"n": 3},
        {"size": 8},
    ],
)
def test_accepted_variants(make_jet_file, kwargs):
    info = inspect_jet_file(make_jet_file("ok.h5", **kwargs), check_values=True)
    assert info.n_events == kwargs.get("n", 40)


def test_fingerprint_changes_after_rewrite(make_jet_file):
    path = make_jet_file("f.h5")
    before = inspect_jet_file(path).fingerprint
    with h5py.File(path, "r+") as handle:
        handle["m0"][0] = 7.0
    os.utime(path, ns=(1, 1))
    assert inspect_jet_file(path).fingerprint != before


def test_missing_file(tmp_path):
    assert "no such file" in _error(tmp_path / "absent.h5")


def test_not_hdf5(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("hello, not HDF5\n" * 100)
    assert "not a readable HDF5 file" in _error(path)


def test_truncated(make_jet_file):
    path = make_jet_file("cut.h5", n=200, chunks=None, compression=None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _error(path)
    assert "truncated" in message


def test_missing_key_lists_what_it_has(make_jet_file):
    message = _error(make_jet_file("nolabel.h5", drop=("y",)))
    assert "missing dataset 'y'" in message and "X_jets, m0, pt" in message


def test_group_instead_of_dataset(make_jet_file):
    path = make_jet_file("grp.h5", drop=("pt",), extra={"pt": {"values": np.ones(40)}})
    assert "'pt' is a group" in _error(path)


@pytest.mark.parametrize(
    ("shape", "found"),
    [((40, 16, 16), "(40, 16, 16)"), ((40, 16, 16, 4), "(40, 16, 16, 4)"), ((40, 4, 4, 3), "(40, 4, 4, 3)")],
)
def test_wrong_image_shape(make_jet_file, shape, found):
    path = make_jet_file("shape.h5", drop=("X_jets",), extra={"X_jets": np.zeros(shape, "f4")})
    message = _error(path)
    assert found in message and "(N, H, W, 3)" in message


def test_wrong_scalar_shape(make_jet_file):
    path = make_jet_file("m0.h5", drop=("m0",), extra={"m0": np.zeros((40, 2))})
    assert "'m0' has shape (40, 2), expected (N,)" in _error(path)


def test_non_numeric(make_jet_file):
    path = make_jet_file("str.h5", drop=("pt",), extra={"pt": np.array([b"a"] * 40)})
    assert "'pt' has non-numeric dtype" in _error(path)


def test_empty(make_jet_file):
    assert "no events" in _error(make_jet_file("empty.h5", n=0, chunks=None))


def test_length_mismatch(make_jet_file):
    path = make_jet_file("len.h5", drop=("y",), extra={"y": np.zeros(39)})
    message = _error(path)
    assert "length mismatch" in message and "y has 39" in message and "X_jets has 40" in message


def test_labels_outside_0_1(make_jet_file):
    y = np.zeros(40)
    y[[3, 9]] = [2, -1]
    message = _error(make_jet_file("labels.h5", y=y))
    assert "'y' must be 0 (quark) or 1 (gluon)" in message and "2" in message and "-1" in message


@pytest.mark.parametrize("key", ["m0", "pt", "y"])
def test_nan_in_scalars(make_jet_file, key):
    values = np.ones(40)
    values[5] = np.nan if key != "pt" else np.inf
    path = make_jet_file("nan.h5", drop=(key,), extra={key: values})
    assert f"'{key}' has 1 NaN/Inf values (first at event 5)" in _error(path)


def test_nan_in_images_only_with_check_values(make_jet_file):
    path = make_jet_file("nanx.h5")
    with h5py.File(path, "r+") as handle:
        handle["X_jets"][17, 3, 3, 2] = np.nan
    inspect_jet_file(path)  # cheap check does not scan images
    assert "NaN/Inf in 1 event(s) between events 17 and 17" in _error(path, check_values=True)


def test_require_subset(make_jet_file):
    path = make_jet_file("imgonly.h5", drop=("m0", "pt", "y"))
    assert inspect_jet_file(path, require=("X_jets",)).n_events == 40
