"""``tuning/launch_local.sh``: chief + 2 workers (Keras Tuner's protocol on 127.0.0.1), killed with ``kill -9``
mid-search and started again: every trial finishes exactly once, both workers run trials, one best model exported.
"""

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_tune import TINY_COMPRESSOR_SPACE, write_jets

from hep_keras.training.distribute import free_local_ports

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "tuning" / "launch_local.sh"


def runs(project: Path) -> dict[str, list[dict]]:
    """trial id -> the start/finish records the processes wrote."""
    out = {}
    for path in project.glob("trial_*/hep_keras_runs.jsonl"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
        out[path.parent.name.removeprefix("trial_")] = lines
    return out


def launch(tmp_path: Path, args: list[str]) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "",
        "KERASTUNER_ORACLE_PORT": str(free_local_ports(1)[0]),
        "HEP_KERAS_TUNE_LOGS": str(tmp_path / "logs"),
    }
    # own session: kill -9 of the whole group = chief and workers, as a crashed node would leave them
    return subprocess.Popen(["bash", str(LAUNCH), *args], cwd=tmp_path, env=env, start_new_session=True)


def logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((tmp_path / "logs").glob("*.log")))


@pytest.mark.integration
def test_chief_and_two_workers_survive_kill_9_and_finish_every_trial_once(tmp_path):
    write_jets(tmp_path / "jets.h5", n=2000)
    (tmp_path / "space.toml").write_text(TINY_COMPRESSOR_SPACE)
    n_trials = 4
    args = ["compressor", "2", "--data", "jets.h5", "--space", "space.toml", "--epochs", "4", "--batch-size", "32"]
    args += ["--max-trials", str(n_trials), "--directory", "results", "--verbose", "0", "--set", "eval_events=200"]
    project = tmp_path / "results" / "compressor"

    first = launch(tmp_path, args)
    deadline = time.time() + 300
    while True:  # wait for a finished trial and another one in flight, then kill everything with SIGKILL
        records = runs(project)
        finished = {t for t, r in records.items() if any(x["event"] == "finish" for x in r)}
        running = {t for t, r in records.items() if r and r[-1]["event"] == "start"}
        if finished and running:
            break
        assert first.poll() is None, f"search ended before it could be killed\n{logs(tmp_path)}"
        assert time.time() < deadline, f"no trial finished in 300 s\n{logs(tmp_path)}"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    finished_before = {
        p.parent.name.removeprefix("trial_")
        for p in project.glob("trial_*/trial.json")
        if json.loads(p.read_text())["status"] == "COMPLETED"  # the oracle's own record
    }
    assert not (tmp_path / "saved_models" / "compressor-tuned").exists()

    second = launch(tmp_path, args)
    try:
        assert second.wait(timeout=600) == 0, logs(tmp_path)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)

    records = runs(project)
    assert sorted(records) == [str(i) for i in range(n_trials)]
    for trial, lines in records.items():
        finishes = [x for x in lines if x["event"] == "finish"]
        assert len(finishes) == 1, (trial, lines)  # every trial ran to the end exactly once
        if trial in finished_before:  # a finished trial is never started again
            assert [x["event"] for x in lines] == ["start", "finish"], (trial, lines)
    for trial in running - finished_before:  # killed mid-trial: started again and finished once
        assert [x["event"] for x in records[trial]].count("start") == 2, records[trial]
    workers = {x["tuner_id"] for lines in records.values() for x in lines if x["event"] == "finish"}
    assert workers == {"tuner0", "tuner1"}  # both workers ran trials; the chief only hands them out
    rows = list(csv.DictReader(open(project / "trials.csv")))
    assert len(rows) == n_trials and all(r["status"] == "COMPLETED" and r["finished_runs"] == "1" for r in rows)
    assert [p.name for p in (tmp_path / "saved_models").iterdir()] == ["compressor-tuned"]  # one best model
    metadata = json.loads((tmp_path / "saved_models" / "compressor-tuned" / "metadata.json").read_text())
    assert metadata["config"]["widths"] == json.loads((project / "best_config.json").read_text())["widths"]
