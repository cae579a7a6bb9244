"""Search spaces of ``python -m hep_keras.tune``: one TOML file per model under ``tuning/`` (``tuning/vae.toml``).

Each table of the file is one config key of the model's recipe (see ``python -m hep_keras.fit MODEL
--show-config``) and says how Keras Tuner draws it::

    [learning_rate]                 # a float range
    type = "float"
    min = 3e-4
    max = 3e-3
    sampling = "log"                # "linear" (default) | "log" | "reverse_log"; optional step = 0.1

    [latent_dim]                    # a list of values (numbers, strings, booleans or lists of numbers)
    type = "choice"
    values = [8, 16, 32]

    [blocks_per_level]              # an integer range; optional step, sampling
    type = "int"
    min = 1
    max = 2

    [attention]                     # true or false
    type = "boolean"

A trial's config is the run config with these keys replaced by the trial's values, so a search-space key is a
config key like any other and the best trial is a config file ``python -m hep_keras.fit`` accepts. Every
mistake in the file (unknown key or field, empty range, value of the wrong type or one the recipe rejects) is
one :class:`~hep_keras.errors.ConfigError` naming the file and the key, before anything is trained.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

from hep_keras.errors import ConfigError, HepKerasError

#: the fields each parameter type takes (``type`` included); the first group is required
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "float": (("type", "min", "max"), ("sampling", "step")),
    "int": (("type", "min", "max"), ("sampling", "step")),
    "choice": (("type", "values"), ()),
    "boolean": (("type",), ()),
}
SAMPLINGS = ("linear", "log", "reverse_log")

#: where the shipped search spaces live (the repository's ``tuning/`` directory)
SPACE_DIR = Path(__file__).resolve().parents[3] / "tuning"


def default_space_path(model: str) -> Path:
    """``tuning/<model>.toml`` of the repository."""
    return SPACE_DIR / f"{model}.toml"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _encode(value: Any) -> Any:
    """A choice value as Keras Tuner stores it: lists become a JSON string (``hp.Choice`` takes scalars only)."""
    return json.dumps(value) if isinstance(value, list) else value


def _decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value.startswith("[") else value


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One searched config key: ``kind`` (float | int | choice | boolean) and its fields from the file."""

    key: str
    kind: str
    fields: dict[str, Any]

    def declare(self, hp) -> Any:
        """Draw (or look up) the value from a ``keras_tuner.HyperParameters``; return the config value."""
        f = self.fields
        if self.kind == "float":
            return hp.Float(self.key, f["min"], f["max"], step=f.get("step"), sampling=f.get("sampling", "linear"))
        if self.kind == "int":
            return hp.Int(self.key, f["min"], f["max"], step=f.get("step"), sampling=f.get("sampling", "linear"))
        if self.kind == "boolean":
            return hp.Boolean(self.key)
        return _decode(hp.Choice(self.key, [_encode(v) for v in f["values"]]))

    def candidates(self) -> list[Any]:
        """Values to check against the recipe: the ends of a range, every choice."""
        if self.kind in ("float", "int"):
            return [self.fields["min"], self.fields["max"]]
        if self.kind == "boolean":
            return [False, True]
        return list(self.fields["values"])


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A model's search space: the parameters in file order, and the file they came from."""

    path: Path
    parameters: tuple[Parameter, ...]

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.parameters]

    def overrides(self, hp) -> dict[str, Any]:
        """The trial's config overrides ``{key: value}`` drawn from ``hp``."""
        return {p.key: p.declare(hp) for p in self.parameters}

    def values_of(self, hp_values: dict[str, Any]) -> dict[str, Any]:
        """Config values from a trial's stored ``hyperparameters.values`` (lists decoded)."""
        return {key: _decode(hp_values[key]) for key in self.keys if key in hp_values}


def _check_parameter(where: str, key: str, table: Any, default: Any) -> Parameter:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{key}] must be a table with a 'type' field, got {table!r}")
    kind = table.get("type")
    if kind not in FIELDS:
        raise ConfigError(f"{where}: [{key}] type must be one of {', '.join(FIELDS)}, got {kind!r}")
    required, optional = FIELDS[kind]
    unknown = sorted(set(table) - set(required) - set(optional))
    if unknown:
        raise ConfigError(
            f"{where}: [{key}] unknown field {unknown[0]!r} for type {kind!r} "
            f"(fields: {', '.join(required + optional)})"
        )
    missing = [name for name in required if name not in table]
    if missing:
        raise ConfigError(f"{where}: [{key}] missing field {missing[0]!r} for type {kind!r}")
    if kind in ("float", "int"):
        lo, hi = table["min"], table["max"]
        number = _is_number if kind == "float" else (lambda v: isinstance(v, int) and not isinstance(v, bool))
        for name in ("min", "max", *(("step",) if "step" in table else ())):
            if not number(table[name]):
                raise ConfigError(f"{where}: [{key}] {name} must be {'a number' if kind == 'float' else 'an integer'}")
        if not lo < hi:
            raise ConfigError(f"{where}: [{key}] empty range: min ({lo}) must be < max ({hi})")
        sampling = table.get("sampling", "linear")
        if sampling not in SAMPLINGS:
            raise ConfigError(f"{where}: [{key}] sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
        if sampling != "linear" and lo <= 0:
            raise ConfigError(f"{where}: [{key}] {sampling} sampling needs min > 0, got {lo}")
        if "step" in table and table["step"] <= 0:
            raise ConfigError(f"{where}: [{key}] step must be > 0, got {table['step']}")
        if kind == "float" and default is not None and not isinstance(default, float):
            raise ConfigError(f"{where}: [{key}] is a {type(default).__name__} config key, not a float range")
        if kind == "int" and default is not None and (isinstance(default, bool) or not isinstance(default, int)):
            raise ConfigError(f"{where}: [{key}] is a {type(default).__name__} config key, not an integer range")
    elif kind == "choice":
        values = table["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: [{key}] values must be a non-empty list")
        if len({json.dumps(v) for v in values}) != len(values):
            raise ConfigError(f"{where}: [{key}] values repeat an entry: {values}")
        for value in values:
            if isinstance(value, dict) or (isinstance(value, list) and not all(_is_number(v) for v in value)):
                raise ConfigError(
                    f"{where}: [{key}] value {value!r}: must be a number, string, boolean or list of numbers"
                )
    elif default is not None and not isinstance(default, bool):
        raise ConfigError(f"{where}: [{key}] is a {type(default).__name__} config key, not a boolean")
    return Parameter(key, kind, {k: v for k, v in table.items() if k != "type"})


def load_search_space(path: str | Path, recipe, config: dict[str, Any]) -> SearchSpace:
    """Read and check a search-space file against ``recipe`` (whose resolved run config is ``config``).

    Raises :class:`ConfigError` naming the file and the key for: a missing or invalid TOML file, a key that is
    not a config key of the model (or may not be searched: ``data``, ``seed``, ``epochs``, ...), an unknown
    field, an empty range, a value of the wrong type, or a value the recipe's own checks reject.
    """
    from hep_keras.training.config import check_common, resolve_config

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read search-space file ({err.strerror or err})") from None
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    if not tables:
        raise ConfigError(f"{path}: empty search space (add at least one [config_key] table)")
    searchable = sorted(k for k in config if k not in NOT_SEARCHABLE)
    parameters = []
    for key, table in tables.items():
        if key not in config:
            known = ", ".join(searchable)
            raise ConfigError(f"{path}: [{key}] unknown key: not a config key of {recipe.NAME} (searchable: {known})")
        if key in NOT_SEARCHABLE:
            raise ConfigError(f"{path}: [{key}] cannot be searched (it fixes the run, not the model)")
        parameter = _check_parameter(str(path), key, table, config[key])
        for value in parameter.candidates():
            try:
                trial = resolve_config(config, (f"{path}: [{key}]", {key: value}))
                check_common(trial)
                recipe.validate(trial)
            except HepKerasError as err:
                message = str(err).removeprefix(f"{path}: [{key}]: ")
                raise ConfigError(f"{path}: [{key}] value {value!r} rejected: {message}") from None
        parameters.append(parameter)
    return SearchSpace(path, tuple(parameters))


#: config keys that describe the run or its data pipeline (loaded once per search); a search space may not hold them
NOT_SEARCHABLE = frozenset(
    {"data", "seed", "epochs", "batch_size", "max_events", "steps_per_epoch", "fractions", "patience", "strategy"}
    | {"eval_events", "figure_events", "mixed_precision", "jit_compile", "columns", "allow_pickle", "min_pt"}
    | {"min_mass", "augment", "crop", "norm_events", "norm_fit_events"}
)
