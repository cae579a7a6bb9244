"""Config resolution: defaults, files, --set, validation errors."""

import json

import numpy as np
import pytest

from hep_keras.errors import ConfigError
from hep_keras.training.config import COMMON_DEFAULTS, check_common, load_config_file, parse_value, resolve_config


def test_layers_override_in_order_and_none_means_not_given():
    config = resolve_config(COMMON_DEFAULTS, ("file", {"epochs": 3, "seed": 7}), ("flags", {"epochs": 5, "seed": None}))
    assert config["epochs"] == 5 and config["seed"] == 7
    assert config["batch_size"] == COMMON_DEFAULTS["batch_size"]


def test_unknown_key_names_source_and_key():
    with pytest.raises(ConfigError, match=r"run\.toml: unknown config key 'epoch'"):
        resolve_config(COMMON_DEFAULTS, ("run.toml", {"epoch": 3}))


@pytest.mark.parametrize(
    "key, value", [("epochs", "ten"), ("epochs", 2.5), ("learning_rate", True), ("mixed_precision", 1)]
)
def test_wrong_type_is_rejected(key, value):
    with pytest.raises(ConfigError, match=f"config key '{key}' must be"):
        resolve_config(COMMON_DEFAULTS, ("--set", {key: value}))


def test_int_accepted_for_float_and_converted():
    config = resolve_config(COMMON_DEFAULTS, ("--set", {"learning_rate": 1}))
    assert config["learning_rate"] == 1.0 and isinstance(config["learning_rate"], float)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"epochs": 0}, "'epochs' must be > 0"),
        ({"fractions": [0.5, 0.5]}, "'fractions' must be three"),
        ({"fractions": [0.5, 0.3, 0.3]}, "summing to 1"),
        ({"strategy": "gpu"}, "'strategy' must be one of"),
    ],
)
def test_bad_values(override, message):
    config = resolve_config(COMMON_DEFAULTS, ("--set", override))
    with pytest.raises(ConfigError, match=message):
        check_common(config)


def test_parse_value():
    assert parse_value("3") == 3
    assert parse_value("[16, 32]") == [16, 32]
    assert parse_value("true") is True
    assert parse_value("null") is None
    assert parse_value("silu") == "silu"


def test_config_files_toml_and_json(tmp_path):
    (tmp_path / "a.toml").write_text("epochs = 4\nwidths = [8, 16]\n")
    (tmp_path / "b.json").write_text(json.dumps({"epochs": 6}))
    assert load_config_file(tmp_path / "a.toml") == {"epochs": 4, "widths": [8, 16]}
    assert load_config_file(tmp_path / "b.json") == {"epochs": 6}
    (tmp_path / "bad.toml").write_text("epochs = = 4")
    with pytest.raises(ConfigError, match=r"bad\.toml: not valid TOML"):
        load_config_file(tmp_path / "bad.toml")
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read config file"):
        load_config_file(tmp_path / "missing.toml")


# ----------------------------------------------------------------------------------------------- jit_compile
JIT_SOURCES = [
    (["--set", "jit_compile=true"], None, True),
    (["--set", "jit_compile=false"], None, False),
    (["--set", "jit_compile=auto"], None, "auto"),
    (["--jit-compile", "false"], None, False),
    ([], "jit_compile = true\n", True),  # TOML
    ([], '{"jit_compile": false}', False),  # JSON
    ([], '{"jit_compile": "auto"}', "auto"),
    (["--set", "jit_compile=false", "--jit-compile", "true"], None, True),  # the flag wins
]


@pytest.mark.parametrize("model", ["vae", "ae", "diffusion", "compressor"])
@pytest.mark.parametrize("args, file_text, expected", JIT_SOURCES)
def test_jit_compile_from_set_files_and_flags(model, args, file_text, expected, tmp_path):
    from hep_keras.commands.fit import build_parser, config_from_args
    from hep_keras.training.recipes import get_recipe

    if file_text is not None:
        path = tmp_path / ("run.toml" if "=" in file_text else "run.json")
        path.write_text(file_text)
        args = [*args, "--config", str(path)]
    config = config_from_args(build_parser().parse_args([model, *args]), get_recipe(model))
    assert config["jit_compile"] is expected if isinstance(expected, bool) else config["jit_compile"] == expected


@pytest.mark.parametrize("value", ["maybe", 1, 0, "yes"])
def test_bad_jit_compile_names_the_key(value):
    with pytest.raises(ConfigError, match=r"--set: config key 'jit_compile' must be auto, true or false"):
        resolve_config(COMMON_DEFAULTS, ("--set", {"jit_compile": value}))


def test_recipes_compile_with_the_configured_jit(make_jet_file, tmp_path):
    """Every recipe hands jit_compile to Keras; ``auto`` is XLA for the diffusion model (25 % faster on CPU)."""
    from test_compressor import toy_table, write_table

    from hep_keras.commands.fit import build_parser, config_from_args
    from hep_keras.training.recipes import get_recipe

    images = make_jet_file("j.h5", n=24, size=16)
    jets = write_table(tmp_path / "jets.h5", toy_table(64))
    tiny = {
        "vae": ["--set", "widths=[8]", "--set", "latent_dim=2", "--set", "hcal_tower=4"],
        "ae": ["--set", "widths=[8]", "--set", "latent_dim=2", "--set", "hcal_tower=4"],
        "diffusion": ["--set", "crop=8", "--set", "widths=[8,8]", "--set", "embed_dim=8", "--set", "norm_events=8"],
        "compressor": ["--set", "widths=[8]"],
    }
    for model, extra in tiny.items():
        data = jets if model == "compressor" else images
        for value, expected in (("true", True), ("false", False)):
            argv = [model, "--data", str(data), "--jit-compile", value, *extra]
            recipe = get_recipe(model)
            config = config_from_args(build_parser().parse_args(argv), recipe)
            built = recipe.build_model(config, recipe.load_data(config))
            assert built.jit_compile is expected, (model, value)
            if model in ("vae", "ae", "diffusion"):  # the learning rate decays over the run (cosine_learning_rate)
                assert built.optimizer.get_config()["learning_rate"]["class_name"] == "CosineDecay", model
    recipe = get_recipe("diffusion")
    argv = ["diffusion", "--data", str(images), *tiny["diffusion"]]
    config = config_from_args(build_parser().parse_args(argv), recipe)
    assert recipe.build_model(config, recipe.load_data(config)).jit_compile is True


def test_cosine_learning_rate_decays_to_five_percent_over_the_run():
    """VAE / AE and diffusion: cosine decay from ``learning_rate`` to 5 % of it over epochs x steps per epoch."""
    from hep_keras.training.recipes.base import cosine_learning_rate

    config = {**COMMON_DEFAULTS, "learning_rate": 2e-3, "batch_size": 8, "epochs": 3, "steps_per_epoch": 0}
    schedule = cosine_learning_rate(config, 100)  # 80 training events (80/10/10) -> 10 steps an epoch, 30 in all
    assert schedule.decay_steps == 30
    np.testing.assert_allclose([float(schedule(s)) for s in (0, 15, 30, 60)], [2e-3, 1.05e-3, 1e-4, 1e-4], rtol=1e-5)
    assert cosine_learning_rate({**config, "steps_per_epoch": 7}, 100).decay_steps == 21
