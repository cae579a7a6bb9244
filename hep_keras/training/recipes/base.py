"""The recipe contract: what ``python -m hep_keras.fit <model>`` and ``hep_keras.tune`` need to know about a model.

A recipe is a module (one per trainable model, e.g. :mod:`hep_keras.training.recipes.vae`) that satisfies
:class:`Recipe`. :func:`hep_keras.training.recipes.get_recipe` checks a module against it and names what is
missing, so a new model fails loudly at import, not halfway through a run.

The fit loop (:func:`hep_keras.training.loop.fit_model`) calls, in order::

    recipe.validate(config)                      # before anything is created on disk
    data = recipe.load_data(config)              # a DataBundle subclass of the recipe's own
    model = recipe.build_model(config, data)     # inside the tf.distribute strategy scope; built + compiled
    model.fit(data.train, validation_data=data.val, callbacks=standard + recipe.callbacks(config, run_dir))
    metrics = recipe.evaluate(model, config, data, run_dir)      # held-out events; figures in run_dir/figures
    extra_metadata = recipe.export(model, config, data, staging) # saved_model/ + model.keras, made atomic
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclasses.dataclass
class DataBundle:
    """What a recipe's ``load_data`` returns; each recipe subclasses it with its own typed fields.

    Attributes:
        train: ``tf.data.Dataset`` of training batches, repeated forever when ``steps_per_epoch`` is set.
        val: ``tf.data.Dataset`` of validation batches.
        info: JSON-able description of the input (path, fingerprint, n_events, shapes, ...); goes into
            ``metadata.json`` of the export and ``report.md``.
        split_events: events in the ``"train"`` and ``"val"`` splits; fixes the steps of an epoch when several
            workers train (see :func:`hep_keras.training.distribute.fit_steps`).
    """

    train: Any
    val: Any
    info: dict[str, Any]
    split_events: dict[str, int] = dataclasses.field(default_factory=dict, kw_only=True)


@runtime_checkable
class Recipe(Protocol):
    """The members every recipe module defines (checked by :func:`~hep_keras.training.recipes.get_recipe`).

    Attributes:
        NAME: the model name on the command line (``"vae"``).
        DEFAULTS: the recipe's own config keys and defaults, merged over
            :data:`hep_keras.training.config.COMMON_DEFAULTS` (it may override a common default).
        MONITOR: the quantity EarlyStopping and the best checkpoint watch (usually ``"val_loss"``).
    """

    NAME: str
    DEFAULTS: dict[str, Any]
    MONITOR: str

    def validate(self, config: dict[str, Any]) -> None:
        """Raise :class:`~hep_keras.errors.ConfigError` for bad values of the recipe's keys."""

    def load_data(self, config: dict[str, Any]) -> DataBundle:
        """Open and validate the input (``config["data"]`` or the shipped sample); build the pipelines."""

    def build_model(self, config: dict[str, Any], data: DataBundle) -> Any:
        """Build (weights created, so ``.keras`` files round-trip) and compile the model."""

    def callbacks(self, config: dict[str, Any], run_dir: Path) -> list:
        """Keras callbacks of this model beyond the standard ones (resume, NaN guard, early stop, ...)."""

    def evaluate(self, model: Any, config: dict[str, Any], data: DataBundle, run_dir: Path) -> dict[str, Any]:
        """Metrics on held-out events (JSON-able); figures written into ``run_dir / "figures"``."""

    def export(self, model: Any, config: dict[str, Any], data: DataBundle, staging_dir: Path) -> dict[str, Any]:
        """Write ``saved_model/`` and ``model.keras`` into ``staging_dir``; return extra metadata."""


def no_callbacks(config: dict[str, Any], run_dir: Path) -> list:
    """:meth:`Recipe.callbacks` of a recipe that needs only the standard callbacks."""
    return []


def data_path(config: dict[str, Any]) -> Path:
    """The input file of a run: ``config["data"]`` or, when not given, the shipped sample."""
    from hep_keras.data.sample import SAMPLE_PATH

    return Path(config["data"]) if config.get("data") else SAMPLE_PATH


def image_file_info(info) -> dict[str, Any]:
    """JSON-able description of a :class:`~hep_keras.data.JetFileInfo` for run and export metadata."""
    return {
        "path": str(info.path),
        "fingerprint": info.fingerprint,
        "n_events": info.n_events,
        "image_shape": list(info.image_shape),
        "dtype": info.dtype,
        "schema": {
            "X_jets": "(N,H,W,3) float GeV: Tracks, ECAL, HCAL",
            "m0": "(N,) GeV",
            "pt": "(N,) GeV",
            "y": "(N,) 0 quark / 1 gluon",
        },
    }


def image_split_events(config: dict[str, Any], n_events: int, tfds_splits: dict[str, int] | None = None) -> dict:
    """Events in the train and val splits of an image input after ``max_events``: an HDF5 file of ``n_events``
    events split by :func:`~hep_keras.data.split_indices`, or a TFDS dataset's ``tfds_splits`` (its
    ``max_events`` keeps the first N events of each split)."""
    from hep_keras.data import split_indices

    cap = config["max_events"]
    if tfds_splits is not None:
        return {split: min(tfds_splits[split], cap or tfds_splits[split]) for split in ("train", "val")}
    n_events = min(n_events, cap or n_events)
    fractions = tuple(config["fractions"])
    return {split: len(split_indices(n_events, split, fractions, config["seed"])) for split in ("train", "val")}


def cosine_learning_rate(config: dict[str, Any], n_events: int):
    """Cosine decay from ``learning_rate`` to 5 % of it over the run's ``epochs``: ``steps_per_epoch`` steps an
    epoch, or one pass over the train split of ``n_events`` events in batches of ``batch_size``."""
    import math

    import keras

    from hep_keras.data import split_indices

    if config["steps_per_epoch"]:
        steps = config["steps_per_epoch"]
    else:
        train = split_indices(n_events, "train", tuple(config["fractions"]), config["seed"])
        steps = math.ceil(len(train) / config["batch_size"])
    return keras.optimizers.schedules.CosineDecay(config["learning_rate"], max(steps * config["epochs"], 1), alpha=0.05)
