"""``tf.distribute`` on this machine: MirroredStrategy over 2 logical CPUs gives the same weights as one replica.

Logical devices must be configured before TensorFlow initialises, so every run is a fresh process
(``tests/helpers/train_once.py``). The runs use plain SGD: Adam divides by the gradient's running RMS, which
hides a wrong gradient scale and amplifies rounding. Tolerance: the weight change after one epoch agrees to a
relative 1e-4 (measured 4e-7 .. 6e-6); the control that divides by the replica count instead of weighting by
each replica's events (the old VAE step) is off by 1e-3 .. 3e-2 on the same runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_compressor import toy_table, write_table

HELPER = Path(__file__).parent / "helpers" / "train_once.py"
TOLERANCE = 1e-4
VAE = ["--set", "widths=[8,8]", "--set", "latent_dim=4", "--set", "eval_events=8", "--set", "figure_events=1"]
DIFFUSION = ["--set", "crop=8", "--set", "widths=[8,16]", "--set", "embed_dim=8", "--set", "attention=false"]
DIFFUSION += ["--set", "norm_events=50"]
COMPRESSOR = ["--set", "widths=[16,8]", "--set", "augment=false", "--set", "reduce_lr_patience=0"]


def train(out: Path, *args, replicas: int = 0, extra=(), timeout=300) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, str(HELPER), str(out), "--replicas", str(replicas), "--sgd", "0.01", *extra, "--", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out))


def relative_difference(a: dict, b: dict) -> float:
    """|w_a - w_b| / |w_a - w_initial| over all weights (both runs start from the same weights)."""
    keys = [k for k in a if k.startswith("w")]
    for k in keys:
        np.testing.assert_array_equal(a["init" + k[1:]], b["init" + k[1:]])
    num = sum(float(((a[k] - b[k]) ** 2).sum()) for k in keys)
    den = sum(float(((a[k] - a["init" + k[1:]]) ** 2).sum()) for k in keys)
    assert den > 0
    return float(np.sqrt(num / den))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from conftest import write_jet_file

    root = tmp_path_factory.mktemp("distributed")
    # 41 events -> 33 train events in batches of 6: 5 x 6 + 3; the last splits 2 / 1 over 2 replicas
    images = write_jet_file(root / "images.h5", n=41, size=16)
    jets = write_table(root / "jets.h5", toy_table(203))  # 162 train jets in batches of 31: first splits 16 / 15
    return {"images": images, "jets": jets}


CASES = {
    "vae": (VAE, "images", 6, ["--fixed-noise"]),
    "ae": (VAE, "images", 6, []),
    "diffusion": (DIFFUSION, "images", 6, ["--fixed-noise"]),
    "compressor": (COMPRESSOR, "jets", 31, []),
}


@pytest.mark.integration
@pytest.mark.parametrize("model", sorted(CASES))
def test_two_replicas_give_the_weights_of_one(model, files, tmp_path):
    tiny, data, batch, extra = CASES[model]
    args = [model, "--data", files[data], "--epochs", "1", "--batch-size", str(batch), *tiny]
    one = train(tmp_path / "one.npz", *args, extra=extra)
    two = train(tmp_path / "two.npz", *args, replicas=2, extra=extra)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    assert relative_difference(one, two) < TOLERANCE
    if model == "vae":  # the control: dividing by the replica count instead of weighting by events fails
        wrong = train(tmp_path / "wrong.npz", *args, replicas=2, extra=[*extra, "--control", "divide"])
        assert relative_difference(one, wrong) > 10 * TOLERANCE


def test_replicas_draw_different_noise_and_xla_needs_one_replica_per_cpu(tmp_path):
    """Stateless per-replica seeds; jit_compile=true over 2 logical CPUs is refused with one clear line."""
    code = """
import os, json
import tensorflow as tf
from hep_keras.training.distribute import make_strategy, resolve_jit_compile
from hep_keras.errors import ConfigError
from hep_keras.models.base import LossModel
strategy = make_strategy("mirrored", 2)
model = LossModel(); model.rng_seed = 7
draws = strategy.run(tf.function(lambda: model.random_normal((3,), salt=1)))
a, b = (v.numpy().tolist() for v in strategy.experimental_local_results(draws))
with strategy.scope():
    auto = resolve_jit_compile("auto", auto=True)
    try:
        resolve_jit_compile(True); refused = ""
    except ConfigError as err:
        refused = str(err)
print(json.dumps({"a": a, "b": b, "auto": auto, "refused": refused}))
"""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["a"] != result["b"]
    assert result["auto"] is False
    assert "2 CPU replicas" in result["refused"] and "\n" not in result["refused"]


@pytest.mark.integration
def test_fit_cli_with_mirrored_strategy_on_an_uneven_split(files, tmp_path):
    """``fit ae --strategy mirrored --cpu-replicas 2`` end to end (fit, evaluation, export) on 41 events."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    run_dir, export = tmp_path / "run", tmp_path / "export"
    args = ["ae", "--data", files["images"], "--epochs", "1", "--batch-size", "6", *VAE, "--verbose", "0"]
    args += ["--strategy", "mirrored", "--cpu-replicas", "2", "--run-dir", run_dir, "--export-dir", export]
    proc = subprocess.run(
        [sys.executable, "-m", "hep_keras.fit", *map(str, args)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "DONE").is_file() and (export / "saved_model" / "saved_model.pb").is_file()
