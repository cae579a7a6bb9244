"""``python -m hep_keras.tune``: search-space files, physics objectives, readable results, best model exported."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hep_keras.errors import ConfigError
from hep_keras.training.recipes import RECIPES, get_recipe, recipe_defaults
from hep_keras.training.tuning.objectives import resolve_objective
from hep_keras.training.tuning.space import default_space_path, load_search_space

ROOT = Path(__file__).resolve().parents[1]
TINY_COMPRESSOR_SPACE = """
[learning_rate]
type = "float"
min = 1e-3
max = 1e-2
sampling = "log"

[widths]
type = "choice"
values = [[16, 8], [32, 16]]

[activation]
type = "choice"
values = ["gelu", "tanh"]
"""


def write_jets(path: Path, n: int = 600) -> Path:
    """A toy jet table (the compressor's input) with ``n`` jets."""
    from test_compressor import toy_table, write_table

    return write_table(path, toy_table(n))


# ------------------------------------------------------------------------------------------ search spaces
@pytest.mark.parametrize("model", sorted(RECIPES))
def test_shipped_search_space_loads_and_draws_valid_configs(model):
    import keras_tuner as kt

    recipe = get_recipe(model)
    config = recipe_defaults(recipe)
    space = load_search_space(default_space_path(model), recipe, config)
    assert "learning_rate" in space.keys and len(space.keys) >= 4
    hp = kt.HyperParameters()
    overrides = space.overrides(hp)
    assert set(overrides) == set(space.keys)
    recipe.validate({**config, **overrides})  # the first point of the space is a valid config
    if "widths" in overrides:
        assert isinstance(overrides["widths"], list) and all(isinstance(w, int) for w in overrides["widths"])


@pytest.mark.parametrize(
    "text, message",
    [
        ('[latent_size]\ntype = "choice"\nvalues = [8]', r"\[latent_size\] unknown key: not a config key of vae"),
        ('[seed]\ntype = "choice"\nvalues = [1, 2]', r"\[seed\] cannot be searched"),
        ('[beta]\ntype = "float"\nmin = 0.3\nmax = 0.001', r"\[beta\] empty range: min \(0.3\) must be < max"),
        ('[latent_dim]\ntype = "choice"\nvalues = []', r"\[latent_dim\] values must be a non-empty list"),
        ('[beta]\ntype = "float"\nmin = "a"\nmax = 1.0', r"\[beta\] min must be a number"),
        ('[beta]\ntype = "float"\nmin = 0.1\nmax = 1.0\nsteps = 2', r"\[beta\] unknown field 'steps'"),
        ('[latent_dim]\ntype = "float"\nmin = 1.0\nmax = 9.0', r"\[latent_dim\] is a int config key, not a float"),
        ('[latent_dim]\ntype = "choice"\nvalues = [8, "x"]', r"\[latent_dim\] value 'x' rejected: .*must be int"),
        ('[latent_dim]\ntype = "choice"\nvalues = [8, -1]', r"\[latent_dim\] value -1 rejected: .*must be > 0"),
        ('[beta]\ntype = "float"\nmin = 0.0\nmax = 1.0\nsampling = "log"', r"\[beta\] log sampling needs min > 0"),
        ("[beta", r"not valid TOML"),
        ("", r"empty search space"),
    ],
)
def test_bad_search_space_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "space.toml"
    path.write_text(text)
    recipe = get_recipe("vae")
    with pytest.raises(ConfigError, match=rf"space.toml: {message}"):
        load_search_space(path, recipe, recipe_defaults(recipe))


def test_bad_search_space_is_one_error_line_and_writes_nothing(tmp_path):
    (tmp_path / "space.toml").write_text('[widths]\ntype = "choice"\nvalues = [[16, 0]]\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["compressor", "--space", "space.toml", "--directory", "results", "--export-dir", "export"]
    done = subprocess.run(
        [sys.executable, "-m", "hep_keras.tune", *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: space.toml: [widths] value [16, 0] rejected")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["space.toml"]


# ------------------------------------------------------------------------------------------------ objectives
def test_objective_names_and_directions():
    assert resolve_objective(None, "vae").name == "val_emd_ratio"
    assert resolve_objective(None, "diffusion").name == "val_two_sample_auc"
    assert resolve_objective(None, "compressor").name == "val_mass_sigma"
    assert resolve_objective("val_loss", "ae").direction == "min"
    assert resolve_objective("val_kl_loss:max", "vae").direction == "max"
    with pytest.raises(ConfigError, match="give the direction"):
        resolve_objective("val_kl_loss", "vae")
    with pytest.raises(ConfigError, match="computed for vae, ae only, not compressor"):
        resolve_objective("val_emd_ratio", "compressor")
    with pytest.raises(ConfigError, match="direction must be 'min' or 'max'"):
        resolve_objective("val_loss:up", "vae")
    from hep_keras.training.tuning.search import SearchOptions, check_options

    with pytest.raises(ConfigError, match="--initial-points needs --tuner bayesian"):
        check_options("vae", SearchOptions(space=Path("x"), tuner="random", initial_points=3))
    assert (
        check_options("vae", SearchOptions(space=Path("x"), tuner="bayesian", initial_points=3)).name == "val_emd_ratio"
    )


class _Fixed:
    """A stand-in model whose reconstruction is given."""

    def __init__(self, output):
        self.output = output

    def predict(self, images, batch_size=None, verbose=0):
        return self.output


def test_emd_ratio_is_one_for_the_baseline_and_zero_for_a_perfect_model():
    from hep_keras.evaluation import fidelity as F
    from hep_keras.training.tuning.objectives import emd_ratio, emd_ratio_reference

    rng = np.random.default_rng(0)
    images = np.where(rng.random((6, 12, 12, 3)) < 0.1, rng.exponential(1.0, (6, 12, 12, 3)), 0).astype("float32")
    train = np.where(rng.random((20, 12, 12, 3)) < 0.1, rng.exponential(1.0, (20, 12, 12, 3)), 0).astype("float32")
    reference = emd_ratio_reference(images, train, None)
    baseline = F.mean_image_reconstruction(F.mean_image(train), images, None)
    assert emd_ratio(_Fixed(baseline), reference) == pytest.approx(1.0)
    assert emd_ratio(_Fixed(images), reference) == pytest.approx(0.0, abs=1e-7)
    # every pixel of every event moved by one pixel: each event's EMD is exactly one pixel size (0.0174 rad)
    inside = images.copy()
    inside[:, :, -1] = 0
    shifted = np.roll(inside, 1, axis=2)
    reference = emd_ratio_reference(inside, train, None)
    n_channels = (inside[..., 0].sum(axis=(1, 2)) > 0).astype(float) + (inside[..., 1:].sum(axis=(1, 2, 3)) > 0)
    expected = 0.0174 * n_channels.mean() / reference["baseline_emd"]
    assert emd_ratio(_Fixed(shifted), reference) == pytest.approx(expected, rel=1e-6)


def test_mass_sigma_of_a_known_mass_smearing():
    from hep_keras.training.tuning.objectives import mass_sigma

    class Smear:
        """Encode = identity, decode multiplies the mass of jet i by (1 + eps_i)."""

        def __init__(self, eps):
            self.eps = eps

        def encode(self, x):
            return np.asarray(x)

        def decode(self, z):
            out = np.array(z, np.float64)
            out[:, 3] *= 1 + self.eps[: len(out)]
            return out

    jets = np.column_stack([np.full(8, 100.0), np.zeros(8), np.zeros(8), np.linspace(0.5, 40, 8)])
    eps = np.array([0.1, -0.1, 0.2, -0.2, 0.0, 0.0, 0.1, -0.1])
    reference = {"jets": jets, "min_mass": 1.0}  # the first jet (0.5 GeV) is left out
    assert mass_sigma(Smear(eps), reference) == pytest.approx(np.std(eps[1:]), rel=1e-6)


# ------------------------------------------------------------------------------------------------ results
def _fake_trial(project: Path, trial_id: str, lr: float, act: str, score, runs=1):
    trial_dir = project / f"trial_{trial_id}"
    trial_dir.mkdir(parents=True)
    state = {
        "trial_id": trial_id,
        "hyperparameters": {"values": {"learning_rate": lr, "widths": "[16, 8]", "activation": act}},
        "score": score,
        "best_step": 1 if score is not None else None,
        "status": "COMPLETED" if score is not None else "RUNNING",
    }
    (trial_dir / "trial.json").write_text(json.dumps(state))
    lines = [{"event": "start", "tuner_id": "tuner1"}, {"event": "finish", "tuner_id": "tuner1", "epochs": 2}]
    lines[-1]["seconds"] = 3.25
    (trial_dir / "hep_keras_runs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines * runs))


def test_results_table_ranks_trials_and_finds_the_important_parameter(tmp_path):
    from hep_keras.training.tuning.results import write_results

    project = tmp_path / "proj"
    for i, (lr, act) in enumerate([(1e-3, "gelu"), (1e-2, "tanh"), (3e-3, "tanh"), (5e-3, "gelu")]):
        _fake_trial(project, str(i), lr, act, score=lr * 10)  # objective rises with the learning rate only
    _fake_trial(project, "4", 2e-3, "gelu", score=None)  # still running
    out = write_results(project, ["learning_rate", "widths", "activation"], "val_mass_sigma", "min", top=3)
    assert out["important"] == "learning_rate"
    rows = list(csv.DictReader(open(project / "trials.csv")))
    assert [r["trial_id"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert rows[0]["widths"] == "[16, 8]" and float(rows[1]["objective"]) == pytest.approx(0.1)
    assert rows[4]["status"] == "RUNNING" and rows[0]["finished_runs"] == "1" and rows[0]["seconds"] == "3.2"
    table = (project / "top_trials.md").read_text()
    assert "4 of 5 trials finished" in table and "|Spearman rho| = 1.00" in table
    ranked = [line.split("|")[2].strip() for line in table.splitlines() if line.startswith("| ") and "rank" not in line]
    assert ranked == ["0", "2", "3"]  # best (smallest) first, top 3
    assert (project / "figures" / "objective_vs_trial.png").stat().st_size > 1000
    assert (project / "figures" / "objective_vs_learning_rate.png").is_file()


# -------------------------------------------------------------------------------------------- whole searches
def test_compressor_search_writes_results_and_exports_the_retrained_best(tmp_path, monkeypatch):
    from hep_keras.commands.compress import main as compress_main
    from hep_keras.commands.tune import main as tune_main
    from hep_keras.export import read_metadata

    monkeypatch.chdir(tmp_path)
    write_jets(tmp_path / "jets.h5")
    (tmp_path / "space.toml").write_text(TINY_COMPRESSOR_SPACE)
    args = ["compressor", "--data", "jets.h5", "--space", "space.toml", "--epochs", "2", "--batch-size", "64"]
    args += ["--max-trials", "3", "--directory", "results", "--verbose", "0", "--set", "eval_events=200"]
    assert tune_main(args) == 0
    project = tmp_path / "results" / "compressor"
    rows = list(csv.DictReader(open(project / "trials.csv")))
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" and r["finished_runs"] == "1" for r in rows)
    scores = {r["trial_id"]: float(r["objective"]) for r in rows}
    best = json.loads((project / "best_config.json").read_text())
    best_id = min(scores, key=scores.get)
    best_row = next(r for r in rows if r["trial_id"] == best_id)
    assert best["learning_rate"] == pytest.approx(float(best_row["learning_rate"]))
    assert best["widths"] == json.loads(best_row["widths"]) and best["activation"] == best_row["activation"]
    # the objective of each trial is its best epoch's val_mass_sigma, as logged by Keras
    history = json.loads((project / f"trial_{best_id}" / "trial.json").read_text())["metrics"]["metrics"]
    assert "val_mass_sigma" in history and "val_loss" in history
    # the best configuration went through fit's code path and was exported like any fit
    export = tmp_path / "saved_models" / "compressor-tuned"
    metadata = read_metadata(export)
    assert metadata["model"] == "compressor" and metadata["config"]["widths"] == best["widths"]
    assert (project / "best_run" / "DONE").exists() and (project / "best_run" / "report.md").exists()
    assert compress_main([str(export), "jets.h5", "c.h5"]) == 0
    # run again: the search is finished and the export exists -> refuse rather than overwrite
    from hep_keras.errors import OutputError

    with pytest.raises(OutputError, match="compressor-tuned: an export already exists"):
        tune_main(args)


def test_vae_search_with_the_emd_objective_exports_what_reconstruct_loads(tmp_path, make_jet_file):
    from hep_keras.commands.reconstruct import main as reconstruct_main
    from hep_keras.commands.tune import main as tune_main

    data = make_jet_file("tiny.h5", n=48, size=16)
    (tmp_path / "space.toml").write_text(
        '[latent_dim]\ntype = "choice"\nvalues = [4, 8]\n[beta]\ntype = "float"\nmin = 1e-3\nmax = 0.1\n'
        'sampling = "log"\n[widths]\ntype = "choice"\nvalues = [[8, 16], [8, 16, 16]]\n'
    )
    args = ["vae", "--data", data, "--space", tmp_path / "space.toml", "--epochs", "1", "--batch-size", "8"]
    args += ["--max-trials", "2", "--directory", tmp_path / "t", "--verbose", "0", "--export-dir", tmp_path / "x"]
    args += ["--objective-events", "8", "--set", "eval_events=4", "--set", "figure_events=1"]
    assert tune_main(list(map(str, args))) == 0
    rows = list(csv.DictReader(open(tmp_path / "t" / "vae" / "trials.csv")))
    assert len(rows) == 2 and all(0.0 < float(r["objective"]) < 10.0 for r in rows)
    # the tuned export is an export like any other: reconstruct loads it
    out = tmp_path / "reco"
    assert reconstruct_main([str(tmp_path / "x"), "--data", str(data), "--out", str(out), "--events", "8"]) == 0
    assert (out / "reconstructed.h5").is_file()
    with pytest.raises(ConfigError, match="--max-trials must be > 0"):
        tune_main(["vae", "--data", str(data), "--max-trials", "0", "--directory", str(tmp_path / "t2")])


def test_trials_that_keep_failing_end_the_search_with_one_error(tmp_path, monkeypatch):
    from hep_keras.commands.tune import main as tune_main
    from hep_keras.training.recipes import compressor

    def broken(config, run_dir):
        raise ValueError("boom in the trial")

    monkeypatch.setattr(compressor, "callbacks", broken)
    write_jets(tmp_path / "jets.h5", n=200)
    (tmp_path / "space.toml").write_text(TINY_COMPRESSOR_SPACE)
    args = ["compressor", "--data", str(tmp_path / "jets.h5"), "--space", str(tmp_path / "space.toml")]
    args += ["--epochs", "1", "--max-trials", "5", "--directory", str(tmp_path / "r"), "--verbose", "0", "--no-export"]
    with pytest.raises(
        ConfigError, match=r"3 trials in a row failed; the last one with: ValueError: boom in the trial"
    ):
        tune_main(args)


def test_resuming_with_other_settings_is_refused(tmp_path):
    from hep_keras.training.tuning.search import check_same_search

    description = {"model": "vae", "config": {"epochs": 2, "seed": 0}, "space": {}, "objective": ["a", "min"]}
    check_same_search(tmp_path, description)  # nothing there yet
    (tmp_path / "search.json").write_text(json.dumps(description))
    check_same_search(tmp_path, description)  # same search: resumes
    with pytest.raises(ConfigError, match=r"different settings \(changed: epochs\); run the same command"):
        check_same_search(tmp_path, {**description, "config": {"epochs": 3, "seed": 0}})
    with pytest.raises(ConfigError, match=r"changed: objective, space"):
        check_same_search(tmp_path, {**description, "space": {"beta": {}}, "objective": ["b", "min"]})


def test_a_trial_finished_just_before_a_kill_is_not_run_again():
    import keras_tuner as kt

    from hep_keras.training.tuning.hypermodel import forget_finished_retries

    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_loss", "min"), max_trials=3)
    oracle.trials = {
        "0": kt.engine.trial.Trial(oracle.get_space(), trial_id="0", status="COMPLETED"),
        "1": kt.engine.trial.Trial(oracle.get_space(), trial_id="1", status="RUNNING"),
    }
    oracle._retry_queue = ["0", "1"]  # what reload() makes of an oracle.json saved inside end_trial
    assert forget_finished_retries(oracle) == ["0"] and oracle._retry_queue == ["1"]
