"""``python -m hep_keras.tune``: a tiny random search writes a best config that ``fit`` accepts."""

import json

import pytest

from hep_keras.errors import ConfigError
from hep_keras.fit import main as fit_main
from hep_keras.tune import main as tune_main


def test_random_search_writes_usable_best_config(tmp_path, make_jet_file):
    data = make_jet_file("tiny.h5", n=32, size=16)
    args = [
        "vae",
        "--data",
        data,
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--max-trials",
        "2",
        "--directory",
        tmp_path / "tuning",
        "--verbose",
        "0",
        "--set",
        "eval_events=4",
    ]
    assert tune_main(list(map(str, args))) == 0
    best_path = tmp_path / "tuning" / "vae" / "best_config.json"
    best = json.loads(best_path.read_text())
    assert set(best) == {"learning_rate", "latent_dim", "widths", "n_deposits", "beta"}
    assert 3e-4 <= best["learning_rate"] <= 3e-3 and best["latent_dim"] in (8, 16, 32) and 1e-3 <= best["beta"] <= 0.3
    trials = list((tmp_path / "tuning" / "vae").glob("trial_*"))
    assert len(trials) == 2
    # the best config is a valid fit config file
    fit_args = ["vae", "--data", data, "--config", best_path, "--show-config"]
    assert fit_main(list(map(str, fit_args))) == 0


def test_bad_trial_count(tmp_path, make_jet_file):
    data = make_jet_file("tiny.h5", n=32, size=16)
    with pytest.raises(ConfigError, match="--max-trials must be > 0"):
        tune_main(["vae", "--data", str(data), "--max-trials", "0", "--directory", str(tmp_path / "t")])
