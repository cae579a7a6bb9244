"""Run configuration: defaults, config files (TOML or JSON), ``--set key=value`` overrides, validation.

A configuration is a flat ``dict`` whose keys are fixed by the defaults of the model being trained
(:data:`COMMON_DEFAULTS` plus the recipe's own). Unknown keys and values of the wrong type are
:class:`~hep_keras.errors.ConfigError` s naming the key and where it came from.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from hep_keras.errors import ConfigError

#: Keys every ``python -m hep_keras.fit <model>`` run understands.
COMMON_DEFAULTS: dict[str, Any] = {
    "data": None,  # HDF5 (or jet-table) path; None = the shipped sample
    "epochs": 10,
    "batch_size": 64,
    "learning_rate": 1e-3,
    "seed": 0,
    "max_events": None,  # use only the first N events of the file (quick runs)
    "steps_per_epoch": None,  # None = one pass over the training split
    "fractions": [0.8, 0.1, 0.1],  # train / val / test
    "patience": 5,  # EarlyStopping on val_loss
    "eval_events": 1000,  # test events used for figures and metrics
    "mixed_precision": False,  # mixed_float16 compute (GPU); variables stay float32
    "jit_compile": "auto",  # XLA: "auto" (Keras decides), true, false
    "strategy": "default",  # default | mirrored | multi_worker | tpu
    "cpu_replicas": None,  # without GPUs: N logical CPU devices for --strategy mirrored (None = 1)
}

#: values of ``jit_compile`` (XLA): Keras decides, always, never
JIT_CHOICES = ("auto", True, False)


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list | tuple)
    return isinstance(value, type(default))


def parse_jit_compile(value: Any, source: str) -> str | bool:
    """``jit_compile`` from a flag, ``--set`` or a file: ``"auto"``, ``True``/``False`` or ``"true"``/``"false"``."""
    if isinstance(value, str) and value.strip().lower() in ("auto", "true", "false"):
        value = {"auto": "auto", "true": True, "false": False}[value.strip().lower()]
    if value not in JIT_CHOICES or isinstance(value, int | float) and not isinstance(value, bool):
        raise ConfigError(f"{source}: config key 'jit_compile' must be auto, true or false; got {value!r}")
    return value


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value: JSON (numbers, true/false, null, lists) or else a plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_set_options(items: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` options → ``{key: parsed value}`` (:func:`parse_value`); ConfigError without ``=``."""
    sets = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        sets[key.strip()] = parse_value(value.strip())
    return sets


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML (``.toml``) or JSON (anything else) config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a table of key = value pairs")
    return data


def resolve_config(defaults: dict[str, Any], *layers: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Merge ``(source_name, overrides)`` layers onto ``defaults``; reject unknown keys and wrong types.

    ``None`` values in a layer mean "not given" and leave the earlier value in place.
    """
    config = dict(defaults)
    for source, layer in layers:
        for key, value in layer.items():
            if key not in defaults:
                known = ", ".join(sorted(defaults))
                raise ConfigError(f"{source}: unknown config key {key!r} (known keys: {known})")
            if value is None:
                continue
            if key == "jit_compile":
                value = parse_jit_compile(value, source)
            if not _type_ok(defaults[key], value) and key != "jit_compile":
                raise ConfigError(f"{source}: config key {key!r} must be {type(defaults[key]).__name__}, got {value!r}")
            if isinstance(defaults[key], float) and isinstance(value, int):
                value = float(value)
            config[key] = list(value) if isinstance(value, tuple) else value
    return config


def check_positive(config: dict[str, Any], *keys: str, allow_none: bool = True) -> None:
    """Raise ConfigError unless each ``config[key]`` is > 0 (or None where allowed)."""
    for key in keys:
        value = config[key]
        if value is None and allow_none:
            continue
        if value is None or value <= 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {value!r}")


def check_widths(config: dict[str, Any], key: str = "widths") -> None:
    """Raise ConfigError unless ``config[key]`` is a non-empty list of positive integers (layer widths)."""
    widths = config[key]
    if not widths or any(not isinstance(w, int) or isinstance(w, bool) or w <= 0 for w in widths):
        raise ConfigError(f"config key {key!r} must be a non-empty list of positive integers, got {widths}")


def check_choice(config: dict[str, Any], key: str, choices: tuple[Any, ...]) -> None:
    """Raise ConfigError unless ``config[key]`` is one of ``choices``."""
    if config[key] not in choices:
        raise ConfigError(f"config key {key!r} must be one of {', '.join(map(str, choices))}; got {config[key]!r}")


def check_common(config: dict[str, Any]) -> None:
    """Validate the values of :data:`COMMON_DEFAULTS` keys."""
    check_positive(config, "epochs", "batch_size", "learning_rate", "patience", "eval_events")
    check_positive(config, "max_events", "steps_per_epoch", "cpu_replicas")
    fractions = config["fractions"]
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6 or fractions[0] == 0:
        raise ConfigError(f"config key 'fractions' must be three non-negative numbers summing to 1, got {fractions}")
    check_choice(config, "strategy", ("default", "mirrored", "multi_worker", "tpu"))
    check_choice(config, "jit_compile", ("auto", True, False))
