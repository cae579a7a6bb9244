"""``python -m hep_keras.fit`` and ``python -m hep_keras.reconstruct`` end to end on tiny files."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from hep_keras.commands.fit import main as fit_main

TINY = [
    "--set",
    "widths=[8,8]",
    "--set",
    "latent_dim=4",
    "--set",
    "eval_events=8",
    "--set",
    "figure_events=1",
    "--set",
    "hcal_tower=4",
    "--set",
    "cnn_epochs=1",
    "--batch-size",
    "8",
]


def run_cli(module, *args, cwd=None, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def tiny_file(make_jet_file):
    return make_jet_file("tiny.h5", n=48, size=16)


def test_fit_vae_produces_every_artefact_and_refuses_to_overwrite(tmp_path, tiny_file):
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    args = [
        "vae",
        "--data",
        tiny_file,
        "--epochs",
        "1",
        *TINY,
        "--run-dir",
        run_dir,
        "--export-dir",
        export_dir,
    ]
    assert fit_main(list(map(str, args))) == 0
    for name in (
        "config.json",
        "history.csv",
        "metrics.json",
        "report.md",
        "DONE",
        "checkpoints/best.weights.h5",
    ):
        assert (run_dir / name).is_file(), name
    for name in ("event_0.png", "mean_images.png", "emd.png", "observables.png", "latent_space.png", "losses.png"):
        assert (run_dir / "figures" / name).is_file(), name
    assert list((run_dir / "tensorboard").rglob("events.out.tfevents*"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["fidelity"]["n_events"] == 5  # test split of 48 events at (0.8, 0.1, 0.1)
    assert set(metrics["fidelity"]["models"]) == {"vae", "mean image", "PCA"}
    assert set(metrics["physics"]["response"]) >= {"energy_total", "mass", "pt"}
    report = (run_dir / "report.md").read_text()
    assert report.index("## Verdict") < report.index("| reconstruction |") and "Only 5 test events" in report
    meta = json.loads((export_dir / "metadata.json").read_text())
    assert meta["model"] == "vae" and meta["data"]["n_events"] == 48 and meta["image_shape"] == [16, 16, 3]
    assert (export_dir / "model.keras").is_file() and (export_dir / "saved_model" / "saved_model.pb").is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["widths"] == [8, 8] and config["epochs"] == 1
    # a finished run and an existing export are never replaced silently
    from hep_keras.errors import OutputError

    with pytest.raises(OutputError, match="holds a finished run; pass --overwrite"):
        fit_main(list(map(str, args)))
    assert not list(tmp_path.glob(".export.partial-*"))


def test_fit_ae_and_reconstruct_in_fresh_process(tmp_path, tiny_file):
    import keras

    export_dir = tmp_path / "ae_export"
    args = [
        "ae",
        "--data",
        tiny_file,
        "--epochs",
        "1",
        *TINY,
        "--run-dir",
        tmp_path / "run",
        "--export-dir",
        export_dir,
    ]
    assert fit_main(list(map(str, args))) == 0
    out = tmp_path / "reco"
    result = run_cli(
        "hep_keras.reconstruct",
        export_dir,
        "--data",
        tiny_file,
        "--out",
        out,
        "--events",
        20,
        "--batch-size",
        8,
        "--figure-events",
        1,
    )
    assert result.returncode == 0, result.stderr
    assert "Per-event EMD" in result.stderr and "the mean-image baseline" in result.stderr
    with h5py.File(out / "reconstructed.h5") as f, h5py.File(tiny_file) as src:
        reco, index = f["X_jets"][:], f["index"][:]
        np.testing.assert_array_equal(index, np.arange(20))
        np.testing.assert_array_equal(f["y"][:], src["y"][:20])
        np.testing.assert_array_equal(f["m0"][:], src["m0"][:20])
        original = src["X_jets"][:20]
    model = keras.saving.load_model(export_dir / "model.keras")
    np.testing.assert_allclose(reco, model.predict(original, verbose=0), rtol=1e-4, atol=1e-5)
    assert (out / "metrics.json").is_file() and (out / "figures" / "event_0.png").is_file()
    again = run_cli("hep_keras.reconstruct", export_dir, "--data", tiny_file, "--out", out)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "exists and is not empty" in again.stderr


def test_killed_run_resumes_with_the_same_command(tmp_path, tiny_file):
    run_dir = tmp_path / "run"
    args = [
        "hep_keras.fit",
        "vae",
        "--data",
        tiny_file,
        "--epochs",
        "40",
        "--set",
        "patience=100",
        *TINY,
        "--run-dir",
        run_dir,
        "--no-export",
        "--verbose",
        "0",
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", *map(str, args)], env=env, stderr=subprocess.PIPE, text=True)
    history = run_dir / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 4 and (run_dir / "backup").exists():
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(history.read_text().splitlines()) - 1
    assert not (run_dir / "DONE").exists()

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert "resuming the unfinished run" in result.stderr
    epochs = [int(line.split(",")[0]) for line in history.read_text().splitlines()[1:]]
    assert epochs[-1] == 39
    assert len(epochs) < 40 + done_before  # it did not start again from epoch 0
    assert epochs[done_before] >= done_before - 1
    assert (run_dir / "DONE").exists()


def test_changed_config_on_unfinished_run_is_refused(tmp_path, tiny_file):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"epochs": 99}))
    result = run_cli("hep_keras.fit", "vae", "--data", tiny_file, "--run-dir", run_dir, "--no-export")
    assert result.returncode == 2
    assert "unfinished run with a different config" in result.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "latent_dims=4"], "unknown config key 'latent_dims'"),
        (["--set", "widths=[8,-1]"], "'widths' must be a non-empty list of positive integers"),
        (["--epochs", "0"], "'epochs' must be > 0"),
        (["--set", "beta"], "expected KEY=VALUE"),
    ],
)
def test_bad_config_is_one_error_line(tmp_path, tiny_file, extra, message):
    result = run_cli("hep_keras.fit", "vae", "--data", tiny_file, "--run-dir", tmp_path / "r", *extra)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "r").exists()


def test_bad_data_and_output_dir_errors(tmp_path, make_jet_file):
    missing = make_jet_file("nolabels.h5", n=16, drop=("y",))
    result = run_cli("hep_keras.fit", "vae", "--data", missing, "--run-dir", tmp_path / "r1", "--no-export")
    assert result.returncode == 2 and "nolabels.h5" in result.stderr and "y" in result.stderr
    assert not (tmp_path / "r1").exists()
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    result = run_cli("hep_keras.fit", "vae", "--data", make_jet_file("ok.h5", n=16), "--run-dir", blocker / "run")
    assert result.returncode == 2 and "run directory is not writable" in result.stderr
    result = run_cli("hep_keras.reconstruct", tmp_path / "nothing", "--out", tmp_path / "o")
    assert result.returncode == 2 and "not a hep_keras export" in result.stderr


def test_a_first_mistake_leaves_nothing_that_blocks_the_corrected_command(tmp_path, tiny_file, monkeypatch):
    """A typo in --data, then a strategy that cannot start: one error line each, no run directory; the
    corrected command then runs in the same run directory."""
    monkeypatch.delenv("TF_CONFIG", raising=False)
    run_dir = tmp_path / "run"
    args = ["hep_keras.fit", "vae", "--epochs", "1", *TINY, "--max-events", "48", "--run-dir", run_dir, "--no-export"]
    typo = run_cli(*args, "--data", tmp_path / "tiny.hdf5")
    assert typo.returncode == 2 and "tiny.hdf5" in typo.stderr.strip().splitlines()[-1]
    assert not run_dir.exists()
    no_cluster = run_cli(*args, "--data", tiny_file, "--strategy", "multi_worker")
    assert no_cluster.returncode == 2 and "TF_CONFIG" in no_cluster.stderr.strip().splitlines()[-1]
    assert not run_dir.exists()
    fixed = run_cli(*args, "--data", tiny_file)
    assert fixed.returncode == 0, fixed.stderr
    assert (run_dir / "DONE").is_file()


@pytest.mark.parametrize("where", ["normalisation", "training"])
def test_nan_or_inf_in_the_data_is_one_error_line_and_the_fixed_file_resumes(tmp_path, make_jet_file, where):
    """Found while fitting the normalisation (before the run directory exists) or while streaming the training
    split (the run directory exists): one line naming file, event and channel; after the fix the same command
    runs to the end."""
    path = make_jet_file("bad.h5", n=48, size=16)
    with h5py.File(path, "r+") as f:
        event = 47 if where == "training" else 0
        clean = f["X_jets"][event]
        bad = clean.copy()
        bad[3, 4, 2] = np.inf if where == "training" else np.nan
        f["X_jets"][event] = bad
    run_dir = tmp_path / "run"
    args = ["hep_keras.fit", "vae", "--data", path, "--epochs", "1", *TINY, "--run-dir", run_dir, "--no-export"]
    args += ["--set", f"norm_fit_events={8 if where == 'training' else 1000}", "--max-events", "48"]
    result = run_cli(*args)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines[-1].startswith(f"error: {path}: 'X_jets' has NaN/Inf"), result.stderr
    assert f"channel HCAL of event {event}" in lines[-1]
    assert "Traceback" not in result.stderr
    assert run_dir.exists() == (where == "training")
    with h5py.File(path, "r+") as f:
        f["X_jets"][event] = clean
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert (run_dir / "DONE").is_file()


def test_a_diverged_run_is_one_error_line_and_exports_nothing(tmp_path):
    """A loss that turns NaN before any finite validation loss: no evaluation, no export, no DONE, exit 2."""
    run_dir, export_dir = tmp_path / "run", tmp_path / "export"
    args = ["hep_keras.fit", "compressor", "--epochs", "2", "--max-events", "800", "--learning-rate", "1e30"]
    result = run_cli(*args, "--run-dir", run_dir, "--export-dir", export_dir, "--verbose", "0")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines[-1] == (
        f"error: {run_dir}: the training loss became NaN/Inf in epoch 1 before any epoch ended with a finite "
        "validation loss; nothing was evaluated or exported (rerun with --overwrite and a lower --learning-rate)"
    )
    assert not export_dir.exists() and not (run_dir / "DONE").exists()
    assert list((run_dir / "checkpoints").iterdir()) == []
