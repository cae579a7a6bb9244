"""Jet codecs: every codec round-trips within its bound on random and adversarial tables; file format errors;
``--codec auto``; the compress/decompress CLIs; the rate-distortion benchmark on a tiny table."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hep_keras.codecs import (
    AUTO_CANDIDATES,
    Bound,
    JetModel,
    choose_codec,
    compress_jets,
    decompress_bytes,
    make_codec,
)
from hep_keras.codecs.container import FORMAT, from_bytes, to_bytes
from hep_keras.codecs.entropy import decode_streams, encode_streams
from hep_keras.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]
BOUNDED = ("quantized", "zfp", "context")


def random_table(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Events of 1-6 jets in falling pT (20-1000 GeV), |eta| < 4.5, uniform phi, m = 2-25 % of pT."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 7, n)
    event = np.repeat(np.arange(n) * 3 + 5, counts)[:n]
    pt = np.minimum(20 * (1 - rng.random(n)) ** (-1 / 3), 1000)
    pt = -np.sort(-pt.reshape(-1))  # overwritten per event below
    for ev in np.unique(event):
        rows = np.flatnonzero(event == ev)
        pt[rows] = -np.sort(-pt[rows])
    eta, phi = rng.uniform(-4.5, 4.5, n), rng.uniform(-np.pi, np.pi, n)
    m = pt * rng.uniform(0.02, 0.25, n)
    return np.stack([pt, eta, phi, m], axis=1), event


def adversarial_table() -> tuple[np.ndarray, np.ndarray]:
    """phi at exactly ±pi and next to it, m = 0, pT over 1-1e4 GeV, |eta| up to 5, tiny and huge masses."""
    pt = np.geomspace(1.0, 1e4, 40)
    eta = np.linspace(-5, 5, 40)
    phi = np.resize([np.pi, -np.pi, np.pi - 1e-9, -np.pi + 1e-9, np.nextafter(np.pi, 0), 0.0, 1e-12, -3.0], 40)
    m = np.resize([0.0, 1e-4, 0.14, 5.0, 300.0], 40) * np.resize([1, 1, 1, 1, 10], 40)
    event = np.repeat(np.arange(20), 2)
    return np.stack([pt, eta, phi, m], axis=1), event


def shuffled_table() -> tuple[np.ndarray, np.ndarray]:
    """Rows in random order (events not contiguous), event numbers near 10**12, and a single-jet table's edge."""
    jets, event = random_table(500, seed=4)
    order = np.random.default_rng(1).permutation(len(jets))
    return jets[order], event[order] * 10**9 + 7


def check_within(original: np.ndarray, restored: np.ndarray, bound: Bound) -> None:
    """The bound, written out independently of the codecs' own checks, on float32 restored values."""
    r = restored.astype(np.float32).astype(np.float64)
    assert np.all(np.abs(r[:, 0] - original[:, 0]) <= bound.rel * original[:, 0])
    assert np.all(np.abs(r[:, 3] - original[:, 3]) <= bound.rel * original[:, 3])
    assert np.all(np.abs(r[:, 1] - original[:, 1]) <= bound.abs)
    dphi = np.angle(np.exp(1j * (r[:, 2] - original[:, 2])))
    assert np.all(np.abs(dphi) <= bound.abs + 1e-12)


def tiny_model() -> JetModel:
    """An untrained 4-16-3 JetCompressor as a codec model (the codec must meet the bound whatever the network)."""
    pytest.importorskip("tensorflow")
    from hep_keras.models.compressor import JetCompressor

    net = JetCompressor(widths=[16], activation="gelu")
    return JetModel(lambda x: np.asarray(net.encode(x)), lambda z: np.asarray(net.decode(z)), "tiny-1")


@pytest.mark.parametrize("name", BOUNDED)
@pytest.mark.parametrize("eps", [1e-3, 1e-2, 5e-2])
@pytest.mark.parametrize("table", [random_table, adversarial_table, shuffled_table])
def test_bounded_codecs_round_trip_within_bound(name, eps, table):
    jets, event = table()
    bound = Bound(eps, eps)
    result = compress_jets(jets, event, make_codec(name), bound)
    restored, ev, header = decompress_bytes(result.data, "f.jets")
    np.testing.assert_array_equal(ev, event)
    np.testing.assert_array_equal(restored, result.restored)
    check_within(jets, restored, bound)
    massless = jets[:, 3] == 0
    assert np.all(restored[massless, 3] == 0)
    assert header["codec"] == name and header["bound"] == {"rel": eps, "abs": eps}


@pytest.mark.parametrize("name", BOUNDED)
def test_one_jet(name):
    jets = np.array([[35.0, -1.2, np.pi, 0.0]])
    result = compress_jets(jets, np.array([3]), make_codec(name), Bound(0.01, 0.01))
    restored, event, _ = decompress_bytes(result.data, "one")
    assert event.tolist() == [3] and restored[0, 3] == 0.0
    check_within(jets, restored, Bound(0.01, 0.01))


def test_bound_sizes_fall_with_looser_bounds_and_beat_float16():
    jets, event = random_table()
    sizes = [compress_jets(jets, event, make_codec("context"), Bound(e, e)).nbytes for e in (1e-3, 1e-2, 5e-2)]
    assert sizes[0] > sizes[1] > sizes[2]
    # eps = 0.01: ~28 bits/jet of codes against 64 bits of float16
    assert sizes[1] < 0.6 * compress_jets(jets, event, make_codec("float16"), None).nbytes


def test_casts():
    jets, event = adversarial_table()
    restored32 = decompress_bytes(compress_jets(jets, event, make_codec("float32"), None).data, "f")[0]
    np.testing.assert_array_equal(restored32, jets.astype(np.float32))
    restored16 = decompress_bytes(compress_jets(jets, event, make_codec("float16"), None).data, "f")[0]
    np.testing.assert_array_equal(restored16, jets.astype(np.float16))
    # float16 keeps 11 bits: fine for pt and m at 1e-3 but not for eta = 5 (spacing 2**-8)
    with pytest.raises(ConfigError, match="float16 cannot meet the bound.*eta"):
        compress_jets(jets, event, make_codec("float16"), Bound(1e-3, 1e-3), "f.h5")


def test_ae_codec_meets_bound_and_checks_model():
    jets, event = adversarial_table()
    model = tiny_model()
    bound = Bound(1e-2, 1e-2)
    result = compress_jets(jets, event, make_codec("ae", model), bound)
    check_within(jets, decompress_bytes(result.data, "f", model)[0], bound)
    latent = compress_jets(jets, event, make_codec("ae", model, "float32"), None)
    expected = model.decode(model.encode(jets.astype(np.float32)))
    np.testing.assert_allclose(decompress_bytes(latent.data, "f", model)[0], expected, rtol=1e-6)
    assert latent.nbytes < 12 * len(jets) + 400
    other = JetModel(model.encode, model.decode, "another model")
    with pytest.raises(DataError, match="f.jets: was compressed with a different model"):
        decompress_bytes(result.data, "f.jets", other)
    with pytest.raises(ConfigError, match="give the export directory"):
        decompress_bytes(result.data, "f.jets", None)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_is_rejected_naming_column(bad):
    jets, event = random_table(50)
    jets[7, 3] = bad
    with pytest.raises(DataError, match=r"in\.root: column m has 1 non-finite value\(s\) \(NaN/Inf\), first at jet 7"):
        compress_jets(jets, event, make_codec("quantized"), Bound(0.01, 0.01), "in.root")


@pytest.mark.parametrize("rel", [0.0, 1e-9])
def test_lossy_codecs_refuse_bounds_below_float32(rel):
    jets, event = random_table(20)
    for name in BOUNDED:
        with pytest.raises(ConfigError, match=f"--codec {name} is lossy"):
            compress_jets(jets, event, make_codec(name), Bound(rel, rel))
    with pytest.raises(ConfigError, match="non-negative"):
        Bound.from_options(-0.01)


def test_file_errors():
    jets, event = random_table(100)
    good = compress_jets(jets, event, make_codec("context"), Bound(0.01, 0.01)).data
    with pytest.raises(DataError, match="x.h5: not a hep_keras compressed jet file"):
        decompress_bytes(b"\x89HDF\r\n" + good[8:], "x.h5")
    with pytest.raises(DataError, match="x.jets: truncated or corrupt"):
        decompress_bytes(good[:-5], "x.jets")
    header, ev, encoded = from_bytes(good, "x")
    for change, message in (({"codec": "brotli"}, "codec 'brotli', unknown"), ({"codec_version": 99}, "version 99")):
        forged = to_bytes({**header, **change}, ev, encoded)
        with pytest.raises(DataError, match=message):
            decompress_bytes(forged, "x.jets")
    assert header["format"] == FORMAT
    with pytest.raises(ConfigError, match="unknown codec 'lz4'"):
        make_codec("lz4")


def test_entropy_streams_round_trip():
    rng = np.random.default_rng(3)
    streams = [
        rng.integers(-5, 5, 1000),
        np.zeros(0, np.int64),
        np.full(17, 42),
        rng.integers(-(2**30), 2**30, 300),
        np.rint(rng.laplace(0, 2, 5000)).astype(np.int64),
    ]
    back = decode_streams(encode_streams(streams))
    for a, b in zip(streams, back, strict=True):
        np.testing.assert_array_equal(a, b)
    # a Laplace stream costs within 1 % of its empirical entropy (~3.4 bits/value) + < 80 bytes of model
    _, counts = np.unique(streams[4], return_counts=True)
    entropy = -(counts * np.log2(counts / 5000)).sum()
    assert entropy / 5000 > 3.2 and len(encode_streams([streams[4]])) * 8 < 1.01 * entropy + 8 * 80


def test_auto_chooses_the_smallest_codec_within_the_bound():
    jets, event = random_table(2000)
    bound = Bound(0.01, 0.01)
    name, sizes = choose_codec(jets, event, bound)
    assert set(sizes) == {c for c in AUTO_CANDIDATES if c != "ae"}
    expected = {}
    for codec in sizes:
        try:
            expected[codec] = compress_jets(jets, event, make_codec(codec), bound).nbytes
        except ConfigError:
            expected[codec] = None
    assert sizes == expected
    assert name == min((k for k in sizes if sizes[k] is not None), key=sizes.get)
    # |eta| up to 4.5: float16 cannot keep 1e-3, so auto never picks it there
    assert choose_codec(jets, event, Bound(1e-3, 1e-3))[1]["float16"] is None
    assert choose_codec(jets, event, None)[0] == "float32"


# --- command line ------------------------------------------------------------------------------------------------


def write_h5(path: Path, jets: np.ndarray, event: np.ndarray) -> Path:
    with h5py.File(path, "w") as handle:
        for i, name in enumerate(("pt", "eta", "phi", "m")):
            handle[f"jets/{name}"] = jets[:, i].astype(np.float32)
        handle["jets/event"] = event
    return path


def test_compress_decompress_cli_auto(tmp_path, capsys):
    from hep_keras.commands.compress import main as compress_main
    from hep_keras.commands.decompress import main as decompress_main
    from hep_keras.data.jets import read_jets

    jets, event = random_table(1500)
    source = write_h5(tmp_path / "in.h5", jets, event)
    original = read_jets(source)
    out = tmp_path / "c.jets"
    assert compress_main([str(source), str(out), "--max-rel-error", "0.01"]) == 0
    assert "--codec auto: context" in capsys.readouterr().err
    assert decompress_main([str(out), str(tmp_path / "r.h5")]) == 0
    restored = read_jets(tmp_path / "r.h5")
    check_within(original.four_vectors(np.float64), restored.four_vectors(np.float64), Bound(0.01, 0.01))
    np.testing.assert_array_equal(restored.event, original.event)
    np.testing.assert_allclose(restored.E, np.hypot(restored.pt * np.cosh(restored.eta), restored.m), rtol=1e-6)


def run_cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--codec", "brotli", "--max-rel-error", "0.01"], "--codec: unknown codec 'brotli'"),
        (["--max-rel-error", "-0.01"], "--max-rel-error must be a non-negative number"),
        (["--codec", "quantized", "--max-rel-error", "0"], "--codec quantized is lossy"),
        (["--codec", "context"], "--codec context needs an error bound"),
        (["--codec", "float16", "--max-rel-error", "0.0001"], "float16 cannot meet the bound"),
        (["--codec", "ae", "--max-rel-error", "0.01"], "--codec ae needs the model"),
    ],
)
def test_compress_cli_bad_options(tmp_path, options, message):
    jets, event = random_table(200)
    source = write_h5(tmp_path / "in.h5", jets, event)
    out = tmp_path / "c.jets"
    done = run_cli("hep_keras.compress", str(source), str(out), *options)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert message in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".c.jets*"))


def test_decompress_cli_wrong_file(tmp_path):
    jets, event = random_table(200)
    source = write_h5(tmp_path / "in.h5", jets, event)
    done = run_cli("hep_keras.decompress", str(source), str(tmp_path / "r.h5"))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "in.h5" in lines[0]
    assert not (tmp_path / "r.h5").exists()


# --- benchmark ---------------------------------------------------------------------------------------------------


def test_rate_distortion_benchmark_tiny():
    spec = importlib.util.spec_from_file_location("rd", ROOT / "benchmarks" / "compressor_rate_distortion.py")
    rd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rd)
    jets, event = random_table(400)
    rows = rd.codec_rows(jets, event, "tiny", model=None, bounds=(1e-2,))
    names = [(r["codec"], r["bound"]) for r in rows]
    assert names == [("float32", None), ("float16", None), *((c, 1e-2) for c in ("float16", *BOUNDED))]
    for row in rows:
        if row.get("meets") != "no":
            assert set(rd.COLUMNS) - {"vs_best_generic", "bound"} <= set(row)
    quantized = next(r for r in rows if r["codec"] == "quantized")
    assert quantized["vs_best_generic"] == 1.0 and quantized["max_m"] <= 1e-2
    out = io.StringIO()
    rd.print_table(rows, out)
    assert out.getvalue().splitlines()[0] == "| " + " | ".join(rd.COLUMNS) + " |"


def test_rate_distortion_benchmark_on_a_root_file(tmp_path, capsys):
    ak = pytest.importorskip("awkward")
    uproot = pytest.importorskip("uproot")
    spec = importlib.util.spec_from_file_location("rd", ROOT / "benchmarks" / "compressor_rate_distortion.py")
    rd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rd)
    jets, event = random_table(600)
    counts = np.bincount(event)[np.unique(event)]
    with uproot.recreate(tmp_path / "nano.root") as handle:
        handle["Events"] = {
            f"Jet_{name}": ak.unflatten(jets[:, i].astype(np.float32), counts)
            for i, name in enumerate(("pt", "eta", "phi", "mass"))
        }
    rd.main(["--no-ae", "--root", f"{tmp_path / 'nano.root'}:Events", "--work-dir", str(tmp_path / "rd")])
    out = capsys.readouterr().out
    assert "| nano.root (600 jets) | context | 0.01 |" in out
    assert "| sample test events (" in out and "nano.root (600 jets) @ 0.05: smallest" in out
    assert (tmp_path / "rd" / "rate_distortion.png").stat().st_size > 10000
