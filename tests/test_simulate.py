"""Tests of the Pythia8 + FastJet jet-image simulator (hep_keras.simulation) and its CLI."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest

from hep_keras import simulation as sim
from hep_keras.data.sample import SAMPLE_PATH
from hep_keras.errors import ConfigError, OutputError
from hep_keras.physics import wrap_phi

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

CENTRE = sim.IMAGE_PIXELS // 2
N_TINY = 8


# --- pure deposit functions
def _one(value):
    return np.array([value], dtype=np.float64)


@pytest.mark.parametrize(
    ("deta", "dphi", "row", "col"),
    [
        (0.0, 0.0, 62, 62),
        (3.2 * sim.PIXEL_SIZE, 0.0, 65, 62),
        (0.0, -0.6 * sim.PIXEL_SIZE, 62, 61),
        (-1.08, 1.08, 0, 124),
    ],
)
def test_single_particle_lands_on_its_pixel(deta, dphi, row, col):
    image = sim.deposit_image(_one(deta), _one(dphi), _one(5.0), _one(7.0), _one(0.0))
    assert image.shape == (125, 125, 3) and image.dtype == np.float32
    for channel, energy in ((0, 5.0), (1, 7.0)):
        assert np.flatnonzero(image[..., channel]).tolist() == [row * 125 + col]
        assert image[row, col, channel] == pytest.approx(energy)


def test_outside_window_is_dropped():
    image = sim.deposit_image(_one(1.2), _one(0.0), _one(5.0), _one(7.0), _one(9.0))
    assert not image.any()


def test_hcal_spreads_over_exactly_5x5_pixels():
    image = sim.deposit_image(_one(0.001), _one(-0.002), _one(0.0), _one(0.0), _one(50.0))
    hcal = image[..., 2]
    rows, cols = np.nonzero(hcal)
    assert len(rows) == 25
    assert set(rows.tolist()) == set(range(60, 65)) and set(cols.tolist()) == set(range(60, 65))
    np.testing.assert_allclose(hcal[rows, cols], 2.0, rtol=1e-6)
    assert hcal.sum() == pytest.approx(50.0, rel=1e-6)


def test_channel_totals_equal_deposited_energy():
    rng = np.random.default_rng(1)
    n = 500
    deta, dphi = rng.uniform(-1.08, 1.08, n), rng.uniform(-1.08, 1.08, n)
    tracks, ecal, hcal = rng.exponential(2.0, n), rng.exponential(3.0, n), rng.exponential(4.0, n)
    image = sim.deposit_image(deta, dphi, tracks, ecal, hcal)
    totals = image.astype(np.float64).sum(axis=(0, 1))
    np.testing.assert_allclose(totals, [tracks.sum(), ecal.sum(), hcal.sum()], rtol=1e-5)


def test_smear_cells_keeps_empty_cells_and_applies_threshold():
    cells = np.zeros((25, 25))
    cells[3, 4], cells[10, 10] = 100.0, 0.01
    out = sim.smear_cells(cells, np.random.default_rng(0), 1.0, 0.05, 0.0, threshold=1.0)
    assert np.count_nonzero(out) == 1 and out[3, 4] > 0
    assert (out >= 0).all()


def test_event_image_hcal_towers_equal_smeared_tower_energy():
    rng = np.random.default_rng(3)
    n = 300
    particles = sim.Particles(
        pt=rng.exponential(3.0, n),
        eta=rng.uniform(-1.0, 1.0, n),
        phi=rng.uniform(-1.0, 1.0, n),
        e=rng.exponential(5.0, n) + 1.0,
        pid=rng.choice([211, -211, 130, 2112, 22, 11, 13, 12], n),
        charge=np.zeros(n),
    )
    particles = sim.Particles(**{**particles.__dict__, "charge": np.isin(particles.pid, [211, -211, 11, 13]) * 1.0})
    det = sim.DetectorConfig()
    image = sim.event_image(particles, 0.1, -0.05, det, np.random.default_rng(7))

    # replay the same RNG sequence: track efficiency draws, ECAL cells, then HCAL towers
    replay = np.random.default_rng(7)
    replay.random(n)
    deta, dphi = particles.eta - 0.1, wrap_phi(particles.phi + 0.05)
    is_em = np.isin(np.abs(particles.pid), [11, 22])
    is_had = np.isin(np.abs(particles.pid), [211, 130, 2112])
    sim.smear_cells(sim.bin_pixels(deta, dphi, np.where(is_em, particles.e, 0)), replay, 0.028, 0.003, 0.04, 0.1)
    towers = sim.smear_cells(sim.bin_towers(deta, dphi, np.where(is_had, particles.e, 0)), replay, 1.0, 0.05, 0, 1.0)

    hcal_towers = image[..., 2].astype(np.float64).reshape(25, 5, 25, 5).sum(axis=(1, 3))
    np.testing.assert_allclose(hcal_towers, towers, rtol=1e-6, atol=1e-6)
    assert towers.sum() > 0
    assert image[..., 2].sum() == pytest.approx(towers.sum(), rel=1e-6)


def test_select_leading_jets_cuts_and_matching():
    cfg = sim.SimulationConfig(events=2)
    # event 0: leading jet 100 GeV matched to a gluon; event 1: matched to a quark but |eta| too large;
    # event 2: no parton within 0.4; event 3: no jets; event 4: leading 90 GeV, matched to a b quark
    bounds = np.array([0, 2, 3, 4, 4, 5])
    pt = np.array([100.0, 30.0, 120.0, 80.0, 90.0])
    eta = np.array([0.1, 1.0, 2.0, 0.0, -0.5])
    phi = np.array([3.1, 0.0, 1.0, 0.0, -3.1])
    parton_id = np.array([21, 2, 1, -1, 2, 21, 5, 21])
    parton_eta = np.array([0.15, 1.0, 2.0, -2.0, 0.0, 0.0, -0.45, 0.5])
    parton_phi = np.array([-3.1, 0.0, 1.0, 1.0, 1.0, 2.0, 3.1, 0.0])
    offsets = np.array([0, 2, 4, 6, 6, 8])
    got = list(sim.select_leading_jets(bounds, pt, eta, phi, (parton_id, parton_eta, parton_phi, offsets), cfg))
    assert got == [(0, 0, 1), (4, 4, 0)]  # phi wraps around +-pi when matching


# --- the generator
def _read(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in ("X_jets", "m0", "pt", "y")}
        data.update({f"jets/{k}": f["jets"][k][()] for k in f["jets"]})
        attrs = dict(f.attrs)
        layout = (f["X_jets"].chunks, f["X_jets"].compression)
    return data, attrs, layout


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "tiny.h5"
    summary = sim.simulate(
        sim.SimulationConfig(events=N_TINY, seed=5, block_events=10), path, progress=False, command="test"
    )
    return path, summary


def test_tiny_run_schema_units_and_balance(tiny):
    path, summary = tiny
    data, attrs, (chunks, compression) = _read(path)
    assert summary.n_jets == N_TINY and summary.n_generated >= N_TINY
    assert data["X_jets"].shape == (N_TINY, 125, 125, 3) and data["X_jets"].dtype == np.float32
    for key in ("m0", "pt", "y"):
        assert data[key].shape == (N_TINY,) and data[key].dtype == np.float32
    assert compression == "gzip" and chunks[0] >= 1 and chunks[1:] == (125, 125, 3)
    assert sorted(np.unique(data["y"], return_counts=True)[1].tolist()) == [N_TINY // 2, N_TINY // 2]
    assert (data["y"].reshape(-1, 2).sum(axis=1) == 1).all()  # one quark and one gluon per pair of rows
    assert (data["pt"] >= 70).all() and (data["pt"] <= 400).all() and (data["m0"] > 0).all()
    X = data["X_jets"].astype(np.float64)
    assert (X >= 0).all()
    totals = X.sum(axis=(1, 2, 3))
    assert (X.sum(axis=(1, 2)) > 0).all()  # every channel has energy
    assert ((totals > 0.3 * data["pt"]) & (totals < 10 * data["pt"])).all()  # GeV, jet-pT magnitude
    hcal = X[..., 2].reshape(N_TINY, 25, 5, 25, 5)
    np.testing.assert_allclose(hcal, np.broadcast_to(hcal[:, :, :1, :, :1], hcal.shape), rtol=1e-6)
    for key in ("pt", "eta", "phi", "m", "E"):
        assert data[f"jets/{key}"].dtype == np.float32
    event = data["jets/event"]
    assert event.dtype == np.int64 and set(event.tolist()) == set(range(N_TINY))
    first = np.searchsorted(event, np.arange(N_TINY))
    np.testing.assert_allclose(data["jets/pt"][first], data["pt"], rtol=1e-6)
    assert (data["jets/pt"] > 20).all()
    for key in (
        "generator",
        "pythia8mc_version",
        "fastjet_version",
        "settings",
        "seed",
        "command",
        "created",
    ):
        assert key in attrs
    assert attrs["command"] == "test" and attrs["seed"] == 5


def test_same_seed_gives_identical_file_content(tiny, tmp_path):
    path, _ = tiny
    again = tmp_path / "again.h5"
    sim.simulate(sim.SimulationConfig(events=N_TINY, seed=5, block_events=10), again, progress=False, command="test")
    first, _, _ = _read(path)
    second, _, _ = _read(again)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_two_workers_are_deterministic(tmp_path):
    config = sim.SimulationConfig(events=4, seed=11, workers=2, block_events=10)
    runs = []
    for name in ("a.h5", "b.h5"):
        sim.simulate(config, tmp_path / name, progress=False)
        runs.append(_read(tmp_path / name)[0])
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key], err_msg=key)


def test_refuses_to_overwrite(tmp_path):
    out = tmp_path / "exists.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputError, match="already exists"):
        sim.simulate(sim.SimulationConfig(events=2), out, progress=False)
    assert out.read_bytes() == b"keep me"
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_missing_directory_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        sim.simulate(sim.SimulationConfig(events=2), tmp_path / "nope" / "x.h5", progress=False)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"events": 7}, "--events"),
        ({"events": -4}, "--events"),
        ({"events": 2, "pt_min": 300, "pt_max": 200}, "--pt-min"),
        ({"events": 2, "workers": 0}, "--workers"),
        ({"events": 2, "seed": -1}, "--seed"),
    ],
)
def test_bad_config_is_one_line_config_error(kwargs, option):
    with pytest.raises(ConfigError, match=option) as err:
        sim.SimulationConfig(**kwargs).validate()
    assert "\n" not in str(err.value)


def test_cli_subprocess_bad_args_exit_2_with_one_line(tmp_path):
    script = (
        "import sys\n"
        "from hep_keras.commands import run\n"
        "from hep_keras.commands.simulate import main\n"
        "assert 'tensorflow' not in sys.modules, 'simulator imported tensorflow'\n"
        "run(main)\n"
    )
    # same as `python -m hep_keras.simulate ...`, plus a check that TensorFlow is never imported
    proc = subprocess.run(
        [sys.executable, "-c", script, "--events", "-4", "--out", str(tmp_path / "x.h5")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --events"), proc.stderr
    assert not list(tmp_path.iterdir())


def test_cli_main_in_process(tmp_path, capsys):
    from hep_keras.commands import run
    from hep_keras.commands.simulate import main

    out = tmp_path / "exists.h5"
    out.touch()
    for args in (["--events", "2"], ["--events", "4", "--pt-min", "300", "--pt-max", "200", "--overwrite"]):
        with pytest.raises(SystemExit) as exit_info:
            run(main, [*args, "--out", str(out)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "--pt-min" in err


# --- the shipped sample
def test_shipped_sample_schema_size_and_balance():
    assert SAMPLE_PATH.is_file()
    assert SAMPLE_PATH.stat().st_size <= 15 * 1024**2
    with h5py.File(SAMPLE_PATH, "r") as f:
        n = f["y"].shape[0]
        assert f["X_jets"].shape == (n, 125, 125, 3) and f["X_jets"].dtype == np.float32
        assert f["X_jets"].compression == "gzip"
        assert f["m0"].shape == f["pt"].shape == (n,)
        y = f["y"][()]
        assert sorted(np.unique(y).tolist()) == [0, 1] and (y == 0).sum() == (y == 1).sum() == n // 2
        assert (y.reshape(-1, 2).sum(axis=1) == 1).all()  # every prefix of 2k rows is balanced
        assert "command" in f.attrs and "jets" in f
        assert f["X_jets"][:2].sum() > 0


def test_observables_table_of_a_file(tiny):
    path, _ = tiny
    groups = sim.file_observables(path)
    assert len(groups["quark"]["pt"]) == len(groups["gluon"]["pt"]) == N_TINY // 2
    assert (groups["all"]["occ_HCAL"] % 25 == 0).all()  # whole 5x5 towers
    table = sim.observables_markdown(path)
    assert table.count("\n") == 1 + len(groups["all"]) and "occ_ECAL" in table


def test_progress_line_is_rate_limited():
    import io

    stream = io.StringIO()
    bar = sim.Progress(10, stream=stream)
    bar.update(2, 1, 1, 20, force=True)
    bar.update(4, 2, 2, 40)  # within 10 s on a non-tty: suppressed
    assert stream.getvalue().count("\n") == 1 and "2/10 jets" in stream.getvalue()
