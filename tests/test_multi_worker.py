"""``--strategy multi_worker``: two worker processes on 127.0.0.1 (``TF_CONFIG``) against a one-worker run, and the
bad-input lines of ``--strategy multi_worker`` / ``tpu``.

The comparison uses one full-batch step per epoch (per-replica batch >= each worker's shard), so both runs
average the gradient over the same events whatever the shards are, and plain SGD (see test_distributed.py).
Tolerance: relative 1e-4 of the weight change (measured: vae 2e-6, compressor 9e-8).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_compressor import toy_table, write_table
from test_distributed import relative_difference

from hep_keras.training.distribute import free_local_ports

ROOT = Path(__file__).parents[1]
HELPER = Path(__file__).parent / "helpers" / "train_once.py"
VAE = ["--set", "widths=[8,8]", "--set", "latent_dim=4", "--set", "eval_events=8", "--set", "figure_events=1"]
COMPRESSOR = ["--set", "widths=[16,8]", "--set", "augment=false", "--set", "reduce_lr_patience=0"]


def environment(tmp: Path, tf_config: dict | None = None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def helper_command(out: Path, args, trace: Path, name: str, root: Path, noise: bool) -> list[str]:
    outputs = ["--run-dir", root / f"{name}_run", "--export-dir", root / f"{name}_export", "--verbose", "0"]
    extra = ["--fixed-noise"] if noise else []
    command = [sys.executable, str(HELPER), str(out), "--cli", "--sgd", "1", "--trace-blocks", str(trace), *extra]
    return [*command, "--", *map(str, args), *map(str, outputs)]


def run_cluster(args, root: Path, noise: bool) -> tuple[list[subprocess.CompletedProcess], list[int]]:
    """Two workers of one cluster running the training helper; returns their results and pids."""

    def command(i: int) -> list[str]:
        args_i = [*args, "--strategy", "multi_worker"]
        return helper_command(root / f"w{i}.npz", args_i, root / "trace.txt", "mw", root, noise)

    return start_workers(command, root)


def start_workers(command, root: Path) -> tuple[list[subprocess.CompletedProcess], list[int]]:
    """Worker ``i`` of a two-worker cluster runs ``command(i)``; returns their results and pids."""
    ports = free_local_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(2):
        tmp = root / f"tmp{i}"
        tmp.mkdir()
        env = environment(tmp, {"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs.append(subprocess.Popen(command(i), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results, [p.pid for p in procs]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from conftest import write_jet_file

    from hep_keras.data.tfds import prepare_quark_gluon

    root = tmp_path_factory.mktemp("multi_worker")
    # 200 events in 4 blocks of 64/64/64/8 events: worker 0 reads blocks 0 and 2, worker 1 blocks 1 and 3
    images = write_jet_file(root / "images.h5", n=200, size=16)
    prepare_quark_gluon(images, root / "tfds")  # the same events as TFDS: each worker reads half of each split
    return {
        "images": images,
        "tfds": f"tfds:quark_gluon@{root / 'tfds'}",
        "jets": write_table(root / "j.h5", toy_table(203)),
    }


CASES = {  # case: (fit model, its tiny settings, data, fixed noise)
    "vae": ("vae", [*VAE, "--batch-size", "256"], "images", True),
    "vae_tfds": ("vae", [*VAE, "--batch-size", "256"], "tfds", True),
    "compressor": ("compressor", [*COMPRESSOR, "--batch-size", "256"], "jets", False),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(CASES))
def test_two_workers_match_one(case, files, tmp_path):
    model, tiny, data, noise = CASES[case]
    args = [model, "--data", files[data], "--epochs", "2", "--learning-rate", "0.01", *tiny]
    results, pids = run_cluster(args, tmp_path, noise)
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    # only the chief (worker 0) wrote outputs; the other worker's temporary directory is gone
    assert (tmp_path / "mw_run" / "DONE").is_file() and (tmp_path / "mw_export" / "saved_model").is_dir()
    assert not list((tmp_path / "tmp1").iterdir())
    assert "run directory" in results[0].stderr and "run directory" not in results[1].stderr

    reference_cmd = helper_command(tmp_path / "one.npz", args, tmp_path / "trace_one.txt", "one", tmp_path, noise)
    one = subprocess.run(reference_cmd, env=environment(tmp_path), capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    assert relative_difference(dict(np.load(tmp_path / "one.npz")), dict(np.load(tmp_path / "w0.npz"))) < 1e-4

    if data == "images":  # each worker streamed only its own blocks (block b -> worker b % 2)
        sharded = {pid: set() for pid in pids}
        for line in (tmp_path / "trace.txt").read_text().splitlines():
            pid, kind, block = line.split()
            if kind == "sharded":
                sharded[int(pid)].add(int(block))
        assert sharded[pids[0]] == {0, 2} and sharded[pids[1]] == {1, 3}


# per-replica batch 16 (vae) and 8 (diffusion): the workers' shards of the 200-event file's training split
# (blocks 0 and 2 vs 1 and 3) end after different numbers of steps in a pass
DIFFUSION_SETS = {"crop": 8, "widths": "[8,16]", "embed_dim": 8, "attention": "false", "sample_steps": 2}
DIFFUSION_SETS |= {"recon_steps": 2, "recon_events": 4, "two_sample_epochs": 1, "eval_events": 16}
DIFFUSION = [f"--set={key}={value}" for key, value in {**DIFFUSION_SETS, "calibration_events": 16}.items()]
UNEVEN = {"vae": ([*VAE, "--batch-size", "32"], 32), "diffusion": ([*DIFFUSION, "--batch-size", "16"], 16)}


@pytest.mark.integration
@pytest.mark.parametrize("model", sorted(UNEVEN))
def test_two_workers_with_uneven_shards_take_the_same_steps(model, files, tmp_path):
    """One pass per epoch (no steps_per_epoch) over shards of different sizes: every worker repeats its shard
    and takes ceil(events / batch) steps an epoch. Without that the worker whose shard ended first left the
    other in a collective ("Collective instance ... expected data_type 9 but got 1") and both crashed."""
    from hep_keras.data import split_indices

    tiny, batch = UNEVEN[model]
    train = split_indices(200, "train", (0.8, 0.1, 0.1), 0)
    per_worker = [(train // 64 % 2 == i).sum() for i in range(2)]  # block b -> worker b % 2
    assert np.ceil(per_worker[0] / (batch // 2)) != np.ceil(per_worker[1] / (batch // 2))  # uneven, or no test

    def command(i: int) -> list[str]:
        args = [model, "--data", files["images"], "--epochs", "2", *tiny, "--strategy", "multi_worker"]
        outputs = ["--run-dir", tmp_path / "run", "--export-dir", tmp_path / "export", "--verbose", "0"]
        return [sys.executable, "-m", "hep_keras.fit", *map(str, args), *map(str, outputs)]

    results, _ = start_workers(command, tmp_path)
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]
    steps = -(-len(train) // batch)
    assert f"every epoch is {steps} training and " in results[0].stderr
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and (tmp_path / "export" / "saved_model").is_dir()


@pytest.mark.parametrize(
    "strategy, tf_config, message",
    [
        ("multi_worker", None, "needs the TF_CONFIG environment variable"),
        ("multi_worker", "{not json", "TF_CONFIG is not valid JSON"),
        ("multi_worker", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', '"task"'),
        ("tpu", None, "--strategy tpu: no TPU found"),
    ],
)
def test_bad_cluster_is_one_error_line_and_no_run_dir(strategy, tf_config, message, files, tmp_path):
    env = environment(tmp_path)
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "hep_keras.fit", "compressor", "--data", str(files["jets"]), "--strategy", strategy]
    proc = subprocess.run([*cmd, "--run-dir", str(run_dir)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()


def test_split_events_fix_the_steps_of_an_epoch():
    from hep_keras.training.distribute import fit_steps
    from hep_keras.training.recipes.base import image_split_events

    config = {"max_events": None, "fractions": [0.8, 0.1, 0.1], "seed": 0, "steps_per_epoch": None, "batch_size": 32}
    assert image_split_events(config, 200) == {"train": 160, "val": 20}
    assert image_split_events({**config, "max_events": 100}, 200) == {"train": 80, "val": 10}
    tfds_splits = {"train": 50, "val": 7, "test": 7, "all": 64}  # max_events keeps the first N of each split
    assert image_split_events({**config, "max_events": 30}, 64, tfds_splits) == {"train": 30, "val": 7}
    # one worker: Keras' own one pass (None) or the configured steps
    assert fit_steps(None, config, {"train": 160, "val": 20}) == {"steps_per_epoch": None, "validation_steps": None}
    assert fit_steps(None, {**config, "steps_per_epoch": 3}, {})["steps_per_epoch"] == 3
