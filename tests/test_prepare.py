"""prepare: bit-exact rechunked copy, atomic output, refusal to overwrite, CLI errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hep_keras.commands.data import main
from hep_keras.data import inspect_jet_file
from hep_keras.data.prepare import prepare
from hep_keras.errors import ConfigError, DataError, OutputError


def _assert_same_tree(a: h5py.Group, b: h5py.Group) -> None:
    assert sorted(a) == sorted(b)
    assert sorted(a.attrs) == sorted(b.attrs)
    for name in a.attrs:
        np.testing.assert_array_equal(a.attrs[name], b.attrs[name])
    for name, obj in a.items():
        if isinstance(obj, h5py.Group):
            _assert_same_tree(obj, b[name])
        else:
            assert obj.dtype == b[name].dtype and obj.shape == b[name].shape
            assert obj[()].tobytes() == b[name][()].tobytes()  # bit-exact
            assert sorted(obj.attrs) == sorted(b[name].attrs)


@pytest.mark.parametrize(
    ("source", "options"),
    [
        ({"chunks": (20, 16, 16, 3)}, {"chunk_events": 6, "compression": "gzip", "gzip_level": 1}),
        (
            {"chunks": None, "compression": None, "dtype": "float64"},
            {"chunk_events": 64, "compression": "lzf"},
        ),
        ({"compression": "lzf"}, {"chunk_events": 8, "compression": "none", "shuffle": True}),
    ],
)
def test_round_trip_bit_exact(make_jet_file, tmp_path, source, options):
    extra = {"weights": np.linspace(0, 1, 45), "jets": {"pt": np.arange(7.0), "eta": np.ones((7, 2))}, "n": 3}
    src = make_jet_file("in.h5", n=45, extra=extra, **source)
    dst = tmp_path / "out.h5"
    info = prepare(src, dst, progress=False, **options)
    assert info.n_events == 45
    assert info.chunks == (min(options["chunk_events"], 45), 16, 16, 3)
    expected = None if options["compression"] == "none" else options["compression"]
    assert info.compression == expected
    with h5py.File(src) as a, h5py.File(dst) as b:
        _assert_same_tree(a, b)
        assert b["weights"].chunks == (min(options["chunk_events"], 45),)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_refuses_existing_output_and_bad_options(make_jet_file, tmp_path):
    src = make_jet_file("in.h5")
    dst = tmp_path / "out.h5"
    dst.write_bytes(b"keep me")
    with pytest.raises(OutputError, match=r"out\.h5: already exists"):
        prepare(src, dst, progress=False)
    assert dst.read_bytes() == b"keep me"
    prepare(src, dst, overwrite=True, progress=False)
    assert inspect_jet_file(dst).n_events == 40
    with pytest.raises(ConfigError, match="chunk-events"):
        prepare(src, tmp_path / "o2.h5", chunk_events=0)
    with pytest.raises(DataError, match="missing.h5: no such file"):
        prepare(tmp_path / "missing.h5", tmp_path / "o3.h5")


def test_unwritable_directory(make_jet_file, tmp_path, monkeypatch):
    src = make_jet_file("in.h5")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: pretend the permission check failed
        monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(OutputError, match=r"out\.h5: directory .*locked is not writable"):
        prepare(src, locked / "out.h5", progress=False)
    assert list(locked.iterdir()) == []


def test_an_unwritable_file_system_is_caught_before_any_work(tmp_path):
    """/proc takes no new files, though ``os.access`` says it does to root: every output check tries a write
    (a temporary file, removed) before any work starts, so a long job does not fail only at its last step."""
    from hep_keras.export import check_export_target
    from hep_keras.io import check_output_dir, check_output_file, ensure_writable_dir, unwritable_reason

    assert unwritable_reason(tmp_path) is None and list(tmp_path.iterdir()) == []
    assert unwritable_reason("/proc") is not None
    with pytest.raises(OutputError, match="^/proc: export directory is not writable"):
        check_export_target(Path("/proc/hep_keras_export"), overwrite=False, option="--out")
    with pytest.raises(OutputError, match="^/proc/out.h5: directory /proc is not writable"):
        check_output_file("/proc/out.h5")
    with pytest.raises(OutputError, match="^/proc: output directory is not writable"):
        check_output_dir("/proc/recon")
    with pytest.raises(OutputError, match="^/proc: run directory is not writable"):
        ensure_writable_dir(Path("/proc"), "run directory")


def test_missing_output_directory(make_jet_file, tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        prepare(make_jet_file("in.h5"), tmp_path / "nope" / "out.h5", progress=False)


def test_cli_inspect_and_prepare(make_jet_file, tmp_path, capsys):
    src = make_jet_file("in.h5")
    assert main(["inspect", str(src)]) == 0
    assert "events:       40" in capsys.readouterr().out
    assert main(["prepare", str(src), str(tmp_path / "o.h5"), "--chunk-events", "4", "--compression", "lzf"]) == 0
    captured = capsys.readouterr()
    assert "prepare: 40/40 events" in captured.err and "chunks=(4, 16, 16, 3)" in captured.out


def test_cli_error_is_one_line_exit_2(make_jet_file, tmp_path):
    src = make_jet_file("in.h5")
    (tmp_path / "out.h5").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "hep_keras.data", "prepare", str(src), str(tmp_path / "out.h5")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'out.h5'}: already exists (pass --overwrite to replace it)"
    ]
