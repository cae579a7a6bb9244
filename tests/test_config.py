"""Config resolution: defaults, files, --set, validation errors."""

import json

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
