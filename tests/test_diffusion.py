"""Tests of the jet-image diffusion model, its recipe, export and the generate CLI (tiny crops and widths)."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from hep_keras.models.diffusion import (
    JetDiffusion,
    JetIntensityTransform,
    diffusion_schedule,
    fit_intensity_transform,
    forward_diffusion,
    make_partial_reconstruct_fn,
    make_reconstruct_fn,
    make_sample_labels_fn,
)

SIZE = 8
TINY = {"image_size": SIZE, "widths": [8, 16], "embed_dim": 8, "attention": True, "ema": 0.9}


def sparse_images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Sparse (N, size, size, 3) GeV images with a hot centre, like jets."""
    rng = np.random.default_rng(seed)
    images = np.where(rng.random((n, size, size, 3)) < 0.1, rng.exponential(1.0, (n, size, size, 3)), 0.0)
    images[:, size // 2, size // 2, :] += rng.exponential(20.0, (n, 3))
    return images.astype("float32")


@pytest.fixture(scope="module")
def data():
    images = sparse_images(64)
    labels = (np.arange(64) % 2).astype("float32")
    return images, labels


@pytest.fixture(scope="module")
def trained(data):
    """A tiny model trained for a few dozen steps (shared by the slower tests); returns (model, history)."""
    images, labels = data
    keras.utils.set_random_seed(0)
    model = JetDiffusion(**TINY, **fit_intensity_transform(images))
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(images, labels, batch_size=16, epochs=10, verbose=0)
    return model, history.history["loss"]


@pytest.fixture(scope="module")
def compiled(trained):
    """Traced sampling / reconstruction functions of the trained model (tracing once saves minutes)."""
    model, _ = trained
    return {
        "sample_labels": make_sample_labels_fn(model),
        "reconstruct": make_reconstruct_fn(model),
        "partial": make_partial_reconstruct_fn(model),
    }


def run_sample(fn, labels, steps=4, seed=0, guidance=1.0, eta=0.0) -> np.ndarray:
    args = (tf.constant(steps), tf.constant(seed, tf.int64), tf.constant(guidance), tf.constant(eta))
    return np.asarray(fn(tf.constant(np.asarray(labels, "int32")), *args))


# ----------------------------------------------------------------------------------------------- schedule
@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_schedule_monotone_with_endpoints(kind):
    t = np.linspace(0.0, 1.0, 201, dtype="float32")
    noise, signal = (np.asarray(v) for v in diffusion_schedule(t, kind))
    np.testing.assert_allclose(noise**2 + signal**2, 1.0, atol=1e-5)
    assert np.all(np.diff(noise) > 0) and np.all(np.diff(signal) < 0)
    assert signal[0] == pytest.approx(1.0) and noise[0] == pytest.approx(0.0, abs=1e-6)
    assert signal[-1] == pytest.approx(0.02 if kind == "cosine" else np.sqrt(np.exp(-10.05)), rel=1e-3)


def test_linear_schedule_matches_discrete_ddpm():
    betas = np.linspace(1e-4, 0.02, 1000)
    alpha_bar = np.cumprod(1.0 - betas)
    _, signal = diffusion_schedule(np.arange(1, 1001, dtype="float32") / 1000.0, "linear")
    # continuous time drops the O(β²) terms of log(1 - β): equal to 1 % in log ᾱ (plus half-step offset)
    np.testing.assert_allclose(np.log(np.asarray(signal) ** 2), np.log(alpha_bar), rtol=0.01, atol=2e-3)


def test_forward_noising_matches_closed_form():
    rng = np.random.default_rng(1)
    x0 = rng.normal(size=(4, 6, 6, 3)).astype("float32")
    eps = rng.normal(size=x0.shape).astype("float32")
    t = np.array([0.0, 0.3, 0.7, 1.0], "float32")
    noisy = np.asarray(forward_diffusion(x0, eps, t))
    angle = t * np.arccos(0.02)
    expected = np.cos(angle)[:, None, None, None] * x0 + np.sin(angle)[:, None, None, None] * eps
    np.testing.assert_allclose(noisy, expected, atol=1e-5)
    # statistics of q(x_t | x_0) over many noise draws: mean α x0, std σ
    many = rng.normal(size=(20000, 1, 1, 1)).astype("float32")
    samples = np.asarray(forward_diffusion(np.full_like(many, 0.5), many, np.full(20000, 0.4, "float32")))
    noise_rate, signal_rate = (float(v) for v in diffusion_schedule(np.float32(0.4)))
    assert samples.mean() == pytest.approx(0.5 * signal_rate, abs=0.02)
    assert samples.std() == pytest.approx(noise_rate, rel=0.03)


# ----------------------------------------------------------------------------------------------- transform
def test_intensity_transform_inverse_exact_with_occupancy_gap():
    images = sparse_images(8)
    params = fit_intensity_transform(images)
    layer = JetIntensityTransform(**params, gap=0.5)
    y = np.asarray(layer(images))
    assert y.min() == pytest.approx(-1.0) and y.max() == pytest.approx(1.0, abs=1e-5)
    empty = images == 0
    assert np.all(y[empty] == -1.0) and y[~empty].min() >= -0.5  # every hit sits above the gap
    np.testing.assert_allclose(np.asarray(layer.inverse(y)), images, rtol=1e-5, atol=1e-6)
    expected = np.where(empty, 0.0, np.maximum(images, params["thresholds"]))  # hits kept, none sub-threshold
    np.testing.assert_allclose(np.asarray(layer.to_energy(y)), expected, rtol=1e-5, atol=1e-6)


def test_intensity_transform_decides_hits_at_middle_of_gap():
    layer = JetIntensityTransform([1.0], [5.0], thresholds=[0.2], gap=0.5)
    y = np.array([[-1.2], [-0.76], [-0.74], [-0.5], [1.0]], "float32")
    energy = np.asarray(layer.to_energy(y))[:, 0]
    # below the middle of the gap (-0.75): empty; above it: a hit of at least the 0.2 GeV threshold
    np.testing.assert_allclose(energy[:4], [0.0, 0.0, 0.2, 0.2])
    assert energy[4] == pytest.approx(np.expm1(5.0), rel=1e-5)  # y = 1 is the hottest training pixel
    assert np.asarray(layer.inverse(y))[:2].max() == 0.0
    with pytest.raises(ValueError, match="gap"):
        JetIntensityTransform([1.0], [5.0], gap=0.0)


# ----------------------------------------------------------------------------------------------- training
def test_loss_decreases(trained):
    _, losses = trained
    # an epoch is 4 batches at random times: single epochs are noisy (last/first 0.55-0.68 over noise seeds)
    assert np.mean(losses[-3:]) < 0.7 * losses[0]


def test_padding_to_unet_multiple():
    model = JetDiffusion(image_size=10, widths=[8, 8, 8], embed_dim=8, attention=False)
    assert model.padded_size == 12 and (model.pad_before, model.pad_after) == (1, 1)
    out = model.sample(np.array([0, 1]), steps=1)
    assert tuple(out.shape) == (2, 10, 10, 3) and float(np.min(out)) >= 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"image_size": 10, "widths": [8, 8, 8]}, {"image_size": 12, "widths": [8, 8], "patch": 5, "slots": 2}],
    ids=["pixel-grid-padded-10-to-12", "5x5-hit-slots-padded-3-to-4"],
)
def test_sampling_holds_the_padding_at_its_training_distribution(kwargs):
    """Outside the image the clean value is known (-1, 0 GeV): x̂0 is held there, so on the padding the DDIM
    trajectory is x_t = -α(t) + σ(t) ε with ε = (x_1 + α(1)) / σ(1) the noise of its start (α(1) is the
    schedule's small minimum signal rate), exactly as training noises the padding. Left to the
    network (it is out of the loss) the padding drifted and hits piled up on the image's border next to it."""
    images = sparse_images(4, size=kwargs["image_size"])
    model = JetDiffusion(embed_dim=8, attention=False, **kwargs, **fit_intensity_transform(images))
    model.ema_network.get_layer("out_conv").kernel.assign(  # a network that predicts something everywhere
        tf.random.stateless_normal(model.ema_network.get_layer("out_conv").kernel.shape, (3, 4)) * 0.1
    )
    outside = np.broadcast_to(model._outside, model.normalize(images).shape)
    # the cells out of the loss are exactly those the data always holds at -1 (padding, a partial patch's pixels)
    assert outside.any() and np.all(np.asarray(model.normalize(images))[outside] == -1.0)
    labels = tf.constant([0, 1, 0, 1])
    noise = model.initial_noise(4, 7)
    x = np.asarray(model.integrate(noise, labels, 1.0, 0.4, 3))
    sigma_1, alpha_1 = (float(r) for r in model.schedule_rates(1.0))
    epsilon = (np.asarray(noise) + alpha_1) / sigma_1
    sigma, alpha = (float(r) for r in model.schedule_rates(0.4))
    np.testing.assert_allclose(x[outside], -alpha + sigma * epsilon[outside], rtol=1e-5, atol=1e-5)
    assert np.abs(x[~outside] - (-alpha + sigma * epsilon[~outside])).max() > 0.1  # inside: the network's
    final, _ = model.sample_normalized(labels, steps=3, seed=7)
    np.testing.assert_allclose(np.asarray(final)[outside], -1.0, atol=1e-5)


def test_ddim_inversion_then_sampling_returns_input(trained, compiled, data):
    model, _ = trained
    images = data[0][:8]
    recon = np.asarray(compiled["reconstruct"](tf.constant(images), tf.constant(40)))
    assert recon.shape == images.shape
    y_in, y_out = np.asarray(model.transform(images)), np.asarray(model.transform(recon))
    assert np.abs(y_out - y_in).mean() < 0.05
    assert np.corrcoef(y_in.ravel(), y_out.ravel())[0, 1] > 0.98
    hot = images > 1.0  # GeV
    # worst hot pixel over training-noise seeds 0, 1, 2: 0.19-0.25 (stateful keras.random), 0.21-0.25 (stateless)
    np.testing.assert_allclose(recon[hot], images[hot], rtol=0.3)


def test_sampling_reproducible_for_a_seed(compiled):
    labels = np.array([0, 1, 2, 1], "int32")
    for eta, guidance in ((0.0, 1.0), (1.0, 2.0)):
        a = run_sample(compiled["sample_labels"], labels, seed=3, guidance=guidance, eta=eta)
        b = run_sample(compiled["sample_labels"], labels, seed=3, guidance=guidance, eta=eta)
        c = run_sample(compiled["sample_labels"], labels, seed=4, guidance=guidance, eta=eta)
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, c)
        assert a.shape == (4, SIZE, SIZE, 3) and a.min() >= 0.0


def test_sdedit_reconstruction_is_seeded(compiled, data):
    images = tf.constant(data[0][:4])
    args = (tf.constant(6), tf.constant(0.3), tf.constant(1, tf.int64))
    recon = np.asarray(compiled["partial"](images, *args))
    again = np.asarray(compiled["partial"](images, *args))
    assert recon.shape == images.shape
    np.testing.assert_array_equal(recon, again)


# ----------------------------------------------------------------------------------------------- saving
def test_keras_round_trip(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, JetDiffusion)
    noisy = np.random.default_rng(0).normal(size=(3, SIZE, SIZE, 3)).astype("float32")
    inputs = [noisy, np.array([0.1, 0.5, 0.9], "float32"), np.array([0, 1, 2], "int32")]
    np.testing.assert_allclose(np.asarray(loaded(inputs)), np.asarray(model(inputs)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(loaded.network(inputs)), np.asarray(model.network(inputs)), atol=1e-6)
    labels = np.array([0, 1], "int32")
    np.testing.assert_allclose(
        np.asarray(loaded.sample(labels, steps=3, seed=5)),
        np.asarray(model.sample(labels, steps=3, seed=5)),
        atol=1e-5,
    )


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``python -m hep_keras.fit diffusion`` (in-process) on a tiny file and a 12x12 crop; returns its paths."""
    from conftest import write_jet_file

    from hep_keras import fit

    tmp = tmp_path_factory.mktemp("cli")
    data = write_jet_file(tmp / "jets.h5", n=40, size=16)
    run_dir, export_dir = tmp / "run", tmp / "export"
    sets = {
        "crop": 12,
        "widths": "[8,16]",
        "embed_dim": 8,
        "sample_steps": 2,
        "recon_steps": 2,
        "recon_events": 4,
        "two_sample_epochs": 2,
        "eval_events": 16,
    }
    argv = ["diffusion", "--data", str(data), "--epochs", "1", "--batch-size", "8", "--verbose", "0"]
    argv += ["--run-dir", str(run_dir), "--export-dir", str(export_dir)]
    for key, value in sets.items():
        argv += ["--set", f"{key}={value}"]
    assert fit.main(argv) == 0
    return {"tmp": tmp, "data": data, "run": run_dir, "export": export_dir}


def test_fit_cli_writes_run_and_export(cli_run):
    import json

    metrics = json.loads((cli_run["run"] / "metrics.json").read_text())
    assert {"generation", "quality", "reconstruction", "evaluation_seconds"} <= set(metrics)
    generation, quality = metrics["generation"], metrics["quality"]
    # one generated event per event of the floor half B; the 40-event file has 8 held-out (val + test) events
    assert generation["n_generated"] == generation["n_real_b"] == 4 and generation["n_real_a"] == 4
    for name in ("hl_auc", "cnn_auc", "w1_mass", "w1_occupancy_hcal"):
        assert set(quality[name]) == {"value", "error", "floor", "floor_error", "ratio", "unit"}
    assert set(quality["qg_auc"]) == {"value", "error", "floor", "floor_error", "ratio", "ratio_error", "unit"}
    assert quality["w1_mass"]["floor"] > 0 and quality["w1_mass"]["ratio"] == pytest.approx(
        quality["w1_mass"]["value"] / quality["w1_mass"]["floor"]
    )
    stages = {"calibration", "sampling", "reconstruction", "classifiers", "figures", "total"}
    assert set(metrics["evaluation_seconds"]) == stages
    # the 40-event file has 32 training events: all of them calibrate (fewer than calibration_events = 400)
    note = next(note for note in metrics["notes"] if note.startswith("generated energies: "))
    assert "quantile-calibrated on 32 generated vs training events" in note
    assert "and each channel's hits per event, matches the training events by construction" in note
    assert "for quark and gluon jets apart" in note  # calibration_per_class, the default
    assert (cli_run["run"] / "DONE").is_file() and (cli_run["run"] / "figures" / "reconstruction_0.png").is_file()
    for figure in ("generated_mean_images", "generated_events", "generated_occupancy"):
        assert (cli_run["run"] / "figures" / f"{figure}.png").is_file()
    table = (cli_run["run"] / "quality_table.md").read_text()
    assert "| hl_auc [AUC] |" in table and "Hits on their 5x5 block's centre pixel" in table
    assert "(position_prior): this share follows it by construction." in table
    assert "Hits in the outer 5 pixels of each side (left / right / top / bottom), generated / real: " in table
    share = metrics["generation"]["block_centre_share"]
    assert len(share["generated"]) == len(share["real"]) == 3  # per channel (the unit test checks the values)
    meta = json.loads((cli_run["export"] / "metadata.json").read_text())
    assert meta["reconstruct_args"] == ["images", "steps"] and meta["image_size"] == 12


def test_recalibrate_refits_the_calibration_into_a_new_export(cli_run, capsys):
    """``python -m hep_keras.recalibrate``: with the export's own settings it refits exactly the calibration the fit
    made (same weights, sampler, training events and seeds); with a calibration key changed the new export has
    it; the original export is never touched, and bad requests are one error each."""
    import json

    from hep_keras.commands.recalibrate import main
    from hep_keras.errors import ConfigError, DataError, OutputError
    from hep_keras.export import load_keras_model

    export, tmp = cli_run["export"], cli_run["tmp"]
    before = sorted(p.name for p in export.iterdir())
    assert main([str(export), "--out", str(tmp / "same")]) == 0
    original, same = load_keras_model(export), load_keras_model(tmp / "same")
    for name in ("calibration", "calibration_hit_counts", "multiplicity_cells"):
        np.testing.assert_allclose(getattr(same, name), getattr(original, name), rtol=1e-5, atol=1e-6)
    assert same.calibration_drawn_counts == original.calibration_drawn_counts == [2]
    meta = json.loads((tmp / "same" / "metadata.json").read_text())
    assert meta["recalibrated_from"] == str(export.resolve()) and meta["model"] == "diffusion"
    assert meta["image_size"] == 12 and (tmp / "same" / "saved_model").is_dir()

    argv = [str(export), "--out", str(tmp / "no_counts"), "--set", "calibration_hit_counts=false"]
    assert main([*argv, "--set", "calibration_drawn_counts=[]"]) == 0
    changed = load_keras_model(tmp / "no_counts")
    assert changed.calibration_hit_counts is None and changed.calibration_drawn_counts == []
    np.testing.assert_allclose(changed.calibration, original.calibration, rtol=1e-5, atol=1e-6)  # same per-cell map
    assert json.loads((tmp / "no_counts" / "metadata.json").read_text())["config"]["calibration_hit_counts"] is False
    assert sorted(p.name for p in export.iterdir()) == before

    # the slot positions' prior is part of the sampler: off on request, and added to an export made before it
    assert main([str(export), "--out", str(tmp / "no_prior"), "--set", "position_prior=false"]) == 0
    assert load_keras_model(tmp / "no_prior").position_counts is None
    old = json.loads((tmp / "no_prior" / "metadata.json").read_text())
    del old["config"]["position_prior"]
    (tmp / "no_prior" / "metadata.json").write_text(json.dumps(old))
    assert main([str(tmp / "no_prior"), "--out", str(tmp / "prior_added")]) == 0
    assert "note: the export predates position_prior" in capsys.readouterr().err
    assert original.position_counts is not None
    assert load_keras_model(tmp / "prior_added").position_counts == original.position_counts
    assert same.position_counts == original.position_counts

    with pytest.raises(OutputError, match="an export already exists; pass --overwrite or choose another --out$"):
        main([str(export), "--out", str(tmp / "same")])
    with pytest.raises(ConfigError, match="--set widths: only calibration_events, .* can change without retraining"):
        main([str(export), "--out", str(tmp / "new"), "--set", "widths=[8,8]"])
    with pytest.raises(DataError, match="missing.h5: the export's training file is not there; pass --data"):
        main([str(export), "--out", str(tmp / "new"), "--data", str(tmp / "missing.h5")])
    with pytest.raises(DataError, match="is a 'vae' export; recalibrate needs a diffusion export"):
        (tmp / "vae").mkdir(), (tmp / "vae" / "saved_model").mkdir()
        (tmp / "vae" / "metadata.json").write_text(json.dumps({"model": "vae"}))
        main([str(tmp / "vae"), "--out", str(tmp / "new")])
    with pytest.raises(ConfigError, match="trained on tfds:quark_gluon; recalibrate reads HDF5 training files only"):
        meta["config"]["data"] = "tfds:quark_gluon"
        (tmp / "tfds").mkdir(), (tmp / "tfds" / "saved_model").mkdir()
        (tmp / "tfds" / "metadata.json").write_text(json.dumps(meta))
        main([str(tmp / "tfds"), "--out", str(tmp / "new")])
    assert not (tmp / "new").exists()


def test_saved_model_matches_keras_model(cli_run):
    from hep_keras.export import load_keras_model, load_saved_model

    loaded, _ = load_saved_model(cli_run["export"])
    from hep_keras.models import diffusion  # noqa: F401  (registers JetDiffusion for model.keras)

    model = load_keras_model(cli_run["export"])
    assert isinstance(model, JetDiffusion)
    assert model.calibration is not None  # fitted after training; model.keras and the SavedModel carry it
    assert len(model.calibration_hit_counts[0]) == 3  # the recipe's default: each channel's hits per event too
    # HCAL aimed at its drawn towers (the default): the multiplicities' rows carry their hit cells too
    assert model.calibration_drawn_counts == [2] and np.shape(model.multiplicity_cells) == np.shape(
        model.multiplicities
    )
    assert np.all(np.asarray(model.multiplicity_cells) <= np.asarray(model.multiplicities))  # slots: <= pixels
    assert np.shape(model.overflow_rates) == (3, 7)  # slot_overflow (default): each hit-slot channel (HCAL here) x ring
    # position_prior (default): slots x hit-slot channels x the 3x3 grid of the 12x12 crop x the 25 pixels of a block
    assert np.shape(model.position_counts) == (2, 3, 3, 3, 25) and np.sum(model.position_counts) > 0
    labels = tf.constant([0, 1, 1], tf.int32)
    args = (tf.constant(3), tf.constant(7, tf.int64), tf.constant(1.0), tf.constant(0.0))
    expected = np.asarray(model.sample(labels, steps=3, seed=7))
    np.testing.assert_allclose(np.asarray(loaded.sample_labels(labels, *args)), expected, rtol=1e-5, atol=1e-5)
    assert tuple(loaded.sample(tf.constant(2), tf.constant(1), *args).shape) == (2, 12, 12, 3)

    # reconstruct accepts the full 16x16 images: central 12x12 window reconstructed, zeros outside
    from hep_keras.data import read_events

    images = read_events(cli_run["data"], np.arange(2), fields=("X_jets",))["X_jets"]
    out = np.asarray(loaded.reconstruct(tf.constant(images), tf.constant(3)))
    assert out.shape == images.shape and images[:, 0, 0, 0].min() > 0 and out[:, :2].max() == 0.0
    window = np.asarray(model.reconstruct(images[:, 2:14, 2:14], steps=3))
    np.testing.assert_allclose(out[:, 2:14, 2:14], window, rtol=1e-5, atol=1e-4)


def test_quality_benchmark_without_calibration_changes_only_the_generated_events(cli_run, capsys):
    """``benchmarks/generation_quality.py --no-calibration`` samples the export's raw network: its table differs
    from the calibrated one in the generated column only; the training-split reference and the representation
    ceiling (``--ceiling``: the same real events, no network) are the same numbers."""
    from conftest import write_jet_file
    from test_generation_quality import benchmark_module

    module = benchmark_module()
    held_out = write_jet_file(cli_run["tmp"] / "independent.h5", n=16, size=16, seed=7)
    argv = [str(cli_run["export"]), "--test-data", str(held_out), "--events", "16", "--ceiling", "--qg-samples", "1"]
    argv += ["--steps", "2", "--ddpm-steps", "2", "--ddpm-events", "1", "--cnn-epochs", "1"]
    tables = {}
    for flag in ([], ["--no-calibration"]):
        assert module.main(argv + flag) == 0
        out = capsys.readouterr().out
        assert ("without calibration" in out.splitlines()[0]) == bool(flag)
        main, rest = out.split("| high-level feature (alone) |")
        reference, ceiling = rest.split("Reference (not a model output)")[1].split("Representation ceiling")
        tables[bool(flag)] = main, reference, ceiling.split("| speed |")[0]
    calibrated, raw = tables[False], tables[True]
    w1 = [line.split("|")[2] for line in calibrated[0].splitlines() if line.startswith("| w1_")]
    assert len(w1) == 8 and w1 != [line.split("|")[2] for line in raw[0].splitlines() if line.startswith("| w1_")]
    assert calibrated[1] == raw[1] and calibrated[2] == raw[2] and "| w1_mass [GeV] |" in raw[2]


def test_generate_cli_subprocess(cli_run):
    import h5py

    out = cli_run["tmp"] / "gen.h5"
    cmd = [
        sys.executable,
        "-m",
        "hep_keras.generate",
        str(cli_run["export"]),
        "--events",
        "5",
        "--label",
        "gluon",
    ]
    cmd += ["--steps", "2", "--seed", "1", "--pad-to", "16", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as handle:
        assert handle["X_jets"].shape == (5, 16, 16, 3)
        assert np.all(handle["y"][:] == 1.0) and handle["m0"].shape == (5,) and handle["pt"].shape == (5,)
        assert handle["X_jets"][:, :2].max() == 0.0  # zero padding outside the 12x12 model window
        assert handle.attrs["guidance"] == 2.0  # no --guidance: the export's (the recipe's default, 2)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and again.stderr.count("error:") == 1 and "--overwrite" in again.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--events", "0"], "--events"),
        (["--events", "3", "--eta", "2"], "--eta"),
        (["--events", "3", "--label", "top"], "invalid choice"),
    ],
)
def test_generate_bad_args_exit_2(tmp_path, capsys, extra, message):
    from hep_keras import generate
    from hep_keras.commands import run

    with pytest.raises(SystemExit) as exit_info:
        run(generate.main, [str(tmp_path), "--out", str(tmp_path / "x.h5"), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and message in err


def test_generate_rejects_non_export(tmp_path, capsys):
    from hep_keras import generate
    from hep_keras.commands import run

    with pytest.raises(SystemExit) as exit_info:
        run(generate.main, [str(tmp_path), "--events", "2", "--out", str(tmp_path / "x.h5")])
    assert exit_info.value.code == 2
    assert "not a hep_keras export" in capsys.readouterr().err


def test_fit_rejects_bad_crop(capsys):
    from hep_keras import fit
    from hep_keras.commands import run

    with pytest.raises(SystemExit) as exit_info:
        run(fit.main, ["diffusion", "--set", "crop=3", "--show-config"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("error:") == 1


# ----------------------------------------------------------------------------------------------- full resolution
def towered_images(n: int, size: int = 125, tower: int = 5, seed: int = 0) -> np.ndarray:
    """Sparse Tracks/ECAL pixels and HCAL constant on aligned ``tower × tower`` blocks, like the data (GeV)."""
    rng = np.random.default_rng(seed)
    images = sparse_images(n, size, seed)
    towers = np.where(rng.random((n, size // tower, size // tower)) < 0.05, rng.exponential(0.5, (n, 25, 25)), 0.0)
    images[..., 2] = np.repeat(np.repeat(towers, tower, axis=1), tower, axis=2)
    return images


def test_patch_grid_round_trip_is_exact():
    from hep_keras.models.patches import constant_on_blocks, from_patches, to_patches

    images = towered_images(3)
    cells = np.asarray(to_patches(images, 5, towers=True))
    assert cells.shape == (3, 25, 25, 51)
    # the last cell channel is the tower: the HCAL value of the block's top-left pixel
    np.testing.assert_allclose(cells[..., -1], images[:, ::5, ::5, 2], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(from_patches(cells, 5, True, 125, 3)), images, rtol=1e-6)  # float32 mean
    # without towers any image comes back, also when the side is not a multiple of the patch (padded, cropped)
    odd = sparse_images(2, size=12)
    cells = np.asarray(to_patches(odd, 5, towers=False))
    assert cells.shape == (2, 3, 3, 75)
    np.testing.assert_array_equal(np.asarray(from_patches(cells, 5, False, 12, 3)), odd)
    assert constant_on_blocks(images[..., 2], 5) and not constant_on_blocks(images[..., 0], 5)


def test_full_resolution_default_config_takes_a_training_step():
    """The recipe's default model (125x125 events, 5x5 patches, HCAL towers) builds and trains on 125x125 input."""
    from hep_keras.training.recipes import diffusion as recipe

    images = towered_images(4)
    from hep_keras.training.config import COMMON_DEFAULTS

    config = {**COMMON_DEFAULTS, **recipe.DEFAULTS}
    assert config["crop"] == 0 and config["patch"] == 5
    labels = np.array([0, 1, 0, 1], "float32")
    transform, conditions = recipe.fit_model_constants(config, images, labels)
    assert config["energy_conditioning"] and config["energy_fractions"]
    model = JetDiffusion(
        image_size=125, hcal_towers=True, **{k: config[k] for k in recipe.MODEL_KEYS}, **transform,
        **conditions,
    )  # fmt: skip
    # 2 hit slots x (energy, row, col) x (Tracks, ECAL) + the HCAL tower per cell of the 25x25 grid, padded to 28
    assert (model.grid_size, model.padded_size, model.cell_channels) == (25, 28, 13)
    # every slot number weighs 1, the tower 6 (a third of the cell), the padding 0
    assert model._loss_mask.sum() == 25 * 25 * (12 + 6) and model._loss_mask[0, 0].sum() == 0
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=False)
    out_conv = model.network.get_layer("out_conv")
    before = np.array(out_conv.kernel)
    logs = model.train_on_batch(images, labels, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0.01  # v-targets at random times: an O(1) loss at first
    # the zero-initialised output convolution (the only layer with a gradient at the first step) has moved
    assert not np.array_equal(np.array(out_conv.kernel), before) and not np.any(before)


def full_resolution_model(slots: int = 2, head_width: int = 0) -> JetDiffusion:
    images = towered_images(8)
    return JetDiffusion(
        image_size=125, widths=[8, 8], embed_dim=8, attention=False, patch=5, hcal_towers=True, slots=slots,
        head_width=head_width, **fit_intensity_transform(images),
    )  # fmt: skip


@pytest.mark.parametrize("slots, head_width", [(2, 0), (0, 8)], ids=["hit-slots", "pixel-channels-with-head"])
def test_full_resolution_generation_is_deterministic_for_a_seed(slots, head_width):
    model = full_resolution_model(slots, head_width)
    assert ("head_conv1" in [layer.name for layer in model.network.layers]) == bool(head_width)
    sample = make_sample_labels_fn(model)
    labels = np.array([0, 1, 1], "int32")
    a = run_sample(sample, labels, steps=2, seed=11)
    b = run_sample(sample, labels, steps=2, seed=11)
    c = run_sample(sample, labels, steps=2, seed=12)
    assert a.shape == (3, 125, 125, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    # HCAL comes out uniform on its 5x5 towers (exact by construction of the tower channel)
    towers = a[..., 2].reshape(3, 25, 5, 25, 5)
    np.testing.assert_allclose(towers.max(axis=(2, 4)), towers.min(axis=(2, 4)), rtol=1e-6)


def test_generated_full_resolution_file_passes_data_inspect(tmp_path, capsys):
    import h5py

    from hep_keras.commands.data import main as data_main
    from hep_keras.commands.generate import write_jet_file

    labels = np.array([0, 1], "int32")
    images = run_sample(make_sample_labels_fn(full_resolution_model()), labels, steps=1, seed=0)
    path = tmp_path / "generated.h5"
    write_jet_file(path, images, labels, {"source": "test"})
    assert data_main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "125" in out and "2" in out
    with h5py.File(path) as handle:
        assert set(handle) == {"X_jets", "m0", "pt", "y"}
        assert handle["X_jets"].shape == (2, 125, 125, 3) and handle["X_jets"].dtype == np.float32
        assert handle["m0"].shape == handle["pt"].shape == handle["y"].shape == (2,)


# ----------------------------------------------------------------------------------------------- hit slots
def test_hit_slots_round_trip_keeps_the_hottest_hits_and_all_energy():
    from hep_keras.models.hit_slots import from_slots, to_slots

    images = np.zeros((1, 12, 12, 2), "float32")  # a 3x3 grid of 5x5 blocks (the last one padded)
    images[0, 0, 0, 0], images[0, 4, 3, 0] = 2.0, 5.0  # block (0, 0): two hits -> exact with 2 slots
    images[0, 6, 7, 1], images[0, 8, 9, 1], images[0, 9, 5, 1] = 1.0, 3.0, 0.5  # block (1, 1): three hits
    images[0, 11, 11, 0] = 4.0  # block (2, 2), in its first (real) row and column
    energy, row, col = (np.asarray(v) for v in to_slots(images, 5, 2))
    assert energy.shape == (1, 3, 3, 2, 2)
    # hottest first; positions in [-1, 1] (pixel i of 5 -> i/2 - 1)
    np.testing.assert_allclose(energy[0, 0, 0, :, 0], [5.0, 2.0])
    (
        np.testing.assert_allclose(row[0, 0, 0, :, 0], [1.0, -1.0]),
        np.testing.assert_allclose(col[0, 0, 0, :, 0], [0.5, -1]),
    )
    # the third hit's 0.5 GeV goes to the hottest slot: energy conserved, the block keeps its 2 hottest pixels
    np.testing.assert_allclose(energy[0, 1, 1, :, 1], [3.5, 1.0])
    back = np.asarray(from_slots(energy, row, col, 5, 12))
    assert back.shape == images.shape
    np.testing.assert_allclose(back.sum(axis=(1, 2)), images.sum(axis=(1, 2)), rtol=1e-6)
    expected = images.copy()
    expected[0, 8, 9, 1], expected[0, 9, 5, 1] = 3.5, 0.0
    np.testing.assert_allclose(back, expected, rtol=1e-6)
    # empty slots have position 0, and with p^2 slots every image comes back exactly
    assert energy[0, 2, 0].max() == 0 and not np.any(row[0, 2, 0]) and not np.any(col[0, 2, 0])
    odd = sparse_images(2, size=12)[..., :2]
    np.testing.assert_allclose(np.asarray(from_slots(*to_slots(odd, 5, 25), 5, 12)), odd, rtol=1e-6)


def test_hit_slot_model_round_trip_and_sampling_clip():
    """normalize -> denormalize is exact for blocks with <= 2 hits; while sampling, x̂0 is clipped and the
    position of a slot the denoiser calls empty is left as the network has it (projecting it to 0 put soft,
    late hits on their block's centre pixel)."""
    from hep_keras.models.hit_slots import from_slots, to_slots

    images = towered_images(4, seed=3)
    images[..., :2] = np.asarray(from_slots(*to_slots(images[..., :2], 5, 2), 5, 125))  # <= 2 hits per block
    model = full_resolution_model(slots=2)
    model.transform.thresholds = [0.0, 0.0, 0.0]  # no detector threshold: soft test hits are not raised to it
    y = model.normalize(images)
    assert y.shape == (4, 26, 26, 13)  # widths [8, 8]: padded to a multiple of 2
    per_block = (images[..., :2] > 0).reshape(4, 25, 5, 25, 5, 2).sum(axis=(2, 4))
    assert per_block.max() == 2
    np.testing.assert_allclose(np.asarray(model.denormalize(y)), images, rtol=1e-5, atol=1e-6)
    from hep_keras.models.diffusion import representation_round_trip  # the same, in batches (of 3 here)

    np.testing.assert_allclose(representation_round_trip(model, images, batch_size=3), images, rtol=1e-5, atol=1e-6)
    noisy = tf.random.stateless_normal((2, 26, 26, 13), (1, 2))
    _, x0 = model.denoise(noisy, 0.5, tf.constant([0, 1]), clip=True)
    x0 = np.asarray(x0)
    # the untrained network's output layer is zero: v = 0, so x̂0 = α(t) · noisy, clipped, in every channel of
    # the image's cells; on the padding (the last row and column) x̂0 is its known value -1
    signal_rate = float(model.schedule_rates(0.5)[1])
    expected = np.clip(signal_rate * np.asarray(noisy), -1.5, 1.5)
    expected[:, 25], expected[:, :, 25] = -1.0, -1.0
    np.testing.assert_allclose(x0, expected, rtol=1e-5, atol=1e-6)
    x0 = x0[:, :25, :25]
    energy_of = x0[..., model._energy_of]
    empty_positions = model._is_position & (energy_of < model.transform.hit_threshold)
    assert empty_positions.any() and np.all(x0[empty_positions] != 0)  # not projected to the block's centre
    # x̂0 is clipped to [-1.5, 1.5]: not at -1 (empty), which would cut one side of the scatter around empty
    assert x0.min() == -1.5 and x0.max() == 1.5 and np.any((x0 < -1) & (x0 > -1.5))


@pytest.mark.parametrize("scale_shift", [False, True], ids=["added-bias", "scale-shift"])
def test_residual_block_conditioning_known_answer(scale_shift):
    """The embedding enters a residual block as an added bias before the second GroupNorm, or (``scale_shift``,
    FiLM) as ``norm(h) · (1 + s) + b`` after it; checked against the block's own layers composed by hand."""
    from hep_keras.models.unet import residual_block

    x_in, emb_in = keras.Input((4, 4, 8)), keras.Input((6,))
    block = keras.Model([x_in, emb_in], residual_block(x_in, emb_in, 8, "b", scale_shift=scale_shift))
    rng = np.random.default_rng(0)
    for layer in block.layers:  # random weights everywhere (conv2 and the scale map start at zero)
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    x = rng.normal(size=(2, 4, 4, 8)).astype("float32")
    emb = rng.normal(size=(2, 6)).astype("float32")
    get = block.get_layer

    def dense(name):
        return np.asarray(get(name)(emb))[:, None, None, :]

    h = np.asarray(get("b_conv1")(keras.activations.swish(get("b_norm1")(x))))
    if scale_shift:
        h = np.asarray(get("b_norm2")(h)) * (1 + dense("b_emb_scale")) + dense("b_emb")
    else:
        h = np.asarray(get("b_norm2")(h + dense("b_emb")))
    expected = x + np.asarray(get("b_conv2")(keras.activations.swish(h)))
    np.testing.assert_allclose(np.asarray(block([x, emb])), expected, rtol=1e-4, atol=1e-4)
    assert ("b_emb_scale" in [layer.name for layer in block.layers]) == scale_shift
