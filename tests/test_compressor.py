"""Jet compressor: normalisation layers, model save/reload, export, error-bound codec, CLIs, ``fit compressor``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hep_keras.data.jet_codec import compress, read_compressed, restored_table, write_compressed
from hep_keras.data.jets import JetTable, energy_from_ptetam, read_jets
from hep_keras.errors import OutputError

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from hep_keras.models.compressor import JetCompressor, normalization_constants  # noqa: E402
from hep_keras.models.jet_normalization import AffineFeatures, LogFeatures, wrap_periodic  # noqa: E402


def toy_table(n: int, seed: int = 0) -> JetTable:
    """Falling pt spectrum 30-1000 GeV, |eta| < 2.5, uniform phi, m = 3-25 % of pt; a few phi = ±pi jets."""
    rng = np.random.default_rng(seed)
    pt = np.minimum(30 * (1 - rng.random(n)) ** (-1 / 3), 1000)
    eta, phi = rng.uniform(-2.5, 2.5, n), rng.uniform(-np.pi, np.pi, n)
    phi[:4] = [np.pi, -np.pi + 1e-6, np.pi - 1e-6, -np.pi]
    m = pt * rng.uniform(0.03, 0.25, n)
    m[4] = 0.0  # a massless jet
    return JetTable(pt, eta, phi, m, energy_from_ptetam(pt, eta, m), np.arange(n) // 2, "toy")


def write_table(path: Path, table: JetTable) -> Path:
    with h5py.File(path, "w") as handle:
        for key, values in table.as_dict().items():
            handle[f"jets/{key}"] = values
    return path


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """``fit compressor`` end to end on 3000 toy jets: (run dir, export dir, data file)."""
    from hep_keras.training.loop import fit_model

    root = tmp_path_factory.mktemp("fit")
    data = write_table(root / "jets.h5", toy_table(3000))
    from hep_keras.commands.fit import build_parser, config_from_args
    from hep_keras.training.recipes import get_recipe

    args = build_parser().parse_args(
        [
            "compressor",
            "--data",
            str(data),
            "--epochs",
            "4",
            "--batch-size",
            "64",
            "--learning-rate",
            "0.003",
            "--set",
            "widths=[32, 16]",
            "--set",
            "eval_events=500",
        ]
    )
    config = config_from_args(args, get_recipe("compressor"))
    fit_model("compressor", config, root / "run", root / "export", verbose=0)
    return root / "run", root / "export", data


def test_normalization_layers_invert():
    x = np.array([[25.0, -2.4, 3.1, 0.0], [800.0, 0.3, -3.14, 120.0]], np.float32)
    log = LogFeatures([0.0, None, None, 1.0])
    affine = AffineFeatures([1.3, 0.1, 0.0, 0.5], [1.2, 5.0, 3.0, 1.8])
    y = affine(log(x))
    np.testing.assert_allclose(np.asarray(y[:, 1]), (x[:, 1] - 0.1) / 5, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(log.inverse(affine.inverse(y))), x, rtol=1e-5, atol=1e-5)
    restored = AffineFeatures.from_config(affine.get_config())
    assert restored.get_config() == affine.get_config()


def test_phi_wraps_at_pi():
    delta = np.array([2 * np.pi - 1e-3, -2 * np.pi + 1e-3, 0.5], np.float32)
    np.testing.assert_allclose(np.asarray(wrap_periodic(delta, 2 * np.pi)), [-1e-3, 1e-3, 0.5], atol=1e-5)
    model = JetCompressor(widths=[8], latent_dim=3)
    x = np.array([[50.0, 0.0, np.pi, 5.0]], np.float32)
    # a prediction of -pi for a true +pi is a zero phi residual
    target = model.normalized_features(x)
    shifted = target.numpy().copy()
    shifted[0, 2] = -np.pi / model.scale[2]
    assert abs(float(wrap_periodic(shifted[0, 2] - target[0, 2], model.phi_period))) < 1e-6
    phi = np.asarray(model(np.array([[50.0, 0.0, np.pi, 5.0], [50.0, 0.0, -np.pi, 5.0]], np.float32)))[:, 2]
    assert np.all((phi >= -np.pi) & (phi <= np.pi))


def test_keras_file_round_trip(tmp_path):
    jets = toy_table(64).four_vectors()
    shift, scale = normalization_constants("minmax", jets)
    model = JetCompressor(widths=[16, 8], activation="leaky_relu", normalization="minmax", shift=shift, scale=scale)
    model.save(tmp_path / "never_called.keras")  # never called nor trained: weights must still round-trip
    reloaded = keras.saving.load_model(tmp_path / "never_called.keras")
    assert type(reloaded) is JetCompressor and reloaded.get_config() == model.get_config()
    np.testing.assert_allclose(np.asarray(reloaded(jets)), np.asarray(model(jets)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(reloaded.encode(jets)), np.asarray(model.encode(jets)), rtol=1e-6)


def test_fit_artefacts_and_quality(fitted):
    run, export, _ = fitted
    for name in (
        "DONE",
        "config.json",
        "history.csv",
        "metrics.json",
        "report.md",
        "figures/residuals_narrow.png",
        "figures/residuals_wide.png",
        "figures/distributions.png",
        "figures/residual_vs_pt.png",
    ):
        assert (run / name).exists(), name
    for name in ("saved_model", "model.keras", "metadata.json"):
        assert (export / name).exists(), name
    meta = json.loads((export / "metadata.json").read_text())
    assert meta["variables"] == ["pt", "eta", "phi", "m"] and meta["latent_dim"] == 3
    metrics = json.loads((run / "metrics.json").read_text())["residuals"]
    # a tiny model after 4 epochs: loose, but far better than untrained (std ~ 1)
    assert metrics["pt"]["std"] < 0.3 and metrics["eta"]["rms"] < 0.6


def test_saved_model_matches_keras(fitted):
    from hep_keras.export import load_keras_model, load_saved_model

    _, export, data = fitted
    jets = read_jets(data, max_jets=200).four_vectors()
    loaded, _ = load_saved_model(export)
    model = load_keras_model(export)
    z = loaded.encode(jets).numpy()
    assert z.shape == (200, 3) and z.dtype == np.float32
    np.testing.assert_allclose(z, np.asarray(model.encode(jets)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.decode(z).numpy(), np.asarray(model.decode(z)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bound", [0.02, 1e-4])
def test_error_bound_holds_for_every_jet(fitted, tmp_path, bound):
    from hep_keras.export import load_saved_model

    _, export, _ = fitted
    loaded, _ = load_saved_model(export)
    table = toy_table(1000, seed=5)
    enc, dec = (lambda x: loaded.encode(x).numpy()), (lambda z: loaded.decode(z).numpy())
    data = compress(table, enc, dec, latent_dtype="float16", max_rel_error=bound, batch_size=300)
    write_compressed(tmp_path / "c.h5", data)
    restored = restored_table(read_compressed(tmp_path / "c.h5"), dec, batch_size=128)
    assert np.all(np.abs(restored.pt - table.pt) <= bound * table.pt)
    assert np.all(np.abs(restored.m - table.m) <= bound * table.m)
    assert np.all(np.abs(restored.eta - table.eta) <= bound)
    dphi = np.mod(restored.phi - table.phi + np.pi, 2 * np.pi) - np.pi
    assert np.all(np.abs(dphi) <= bound)
    assert restored.m[4] == 0.0  # the massless jet is stored exactly
    np.testing.assert_array_equal(restored.event, table.event)
    with pytest.raises(OutputError, match="--overwrite"):
        write_compressed(tmp_path / "c.h5", data)


def run_cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=120)


def test_compress_decompress_cli(fitted, tmp_path):
    from hep_keras.commands.decompress import main as decompress_main

    _, export, data = fitted
    out = tmp_path / "c.h5"
    done = run_cli("hep_keras.compress", str(export), str(data), str(out), "--max-rel-error", "0.05", "--codec", "ae")
    assert done.returncode == 0, done.stderr
    assert "ratio" in done.stdout and "with the model" in done.stdout
    restored_path = tmp_path / "restored.h5"
    assert decompress_main([str(export), str(out), str(restored_path)]) == 0
    original, restored = read_jets(data), read_jets(restored_path)
    assert np.all(np.abs(restored.pt - original.pt) <= 0.05 * original.pt)
    np.testing.assert_allclose(restored.E, energy_from_ptetam(restored.pt, restored.eta, restored.m), rtol=1e-5)
    with pytest.raises(OutputError):
        decompress_main([str(export), str(out), str(restored_path)])
    bad = run_cli("hep_keras.compress", str(export), str(tmp_path / "nope.csv"), str(tmp_path / "x.h5"))
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and "nope.csv" in lines[0]
