"""The recipe protocol used by :mod:`hep_keras.fit` and :mod:`hep_keras.tune`.

A recipe module defines:

``NAME: str``
    The model name (``"vae"``).
``DEFAULTS: dict``
    Its own config keys and defaults; merged over :data:`hep_keras.config.COMMON_DEFAULTS` (it may override a
    common default, e.g. a different ``batch_size``). Unknown keys are errors.
``MONITOR: str``
    The quantity EarlyStopping / best checkpoint watch (usually ``"val_loss"``).
``validate(config) -> None``
    Raise :class:`~hep_keras.errors.ConfigError` for bad values (the common keys are already checked).
``load_data(config) -> DataBundle``
    Open and validate the data (``config["data"]`` or the shipped sample) and build the ``tf.data`` pipelines.
``build_model(config, data) -> keras.Model``
    Build and compile the model (called inside the distribution strategy's scope). It must be *built*
    (weights created) so that ``.keras`` files round-trip.
``evaluate(model, config, data, run_dir) -> dict``
    Compute metrics on the test split, write figures into ``run_dir / "figures"``, return a JSON-able dict.
``export(model, config, data, staging_dir) -> dict``
    Write ``saved_model/`` and ``model.keras`` into ``staging_dir``; return extra metadata (endpoints,
    normalisation, ...). :mod:`hep_keras.export` makes it atomic and adds the common metadata.
``search_space(hp, config) -> dict`` (optional)
    Config overrides drawn from a Keras Tuner ``HyperParameters`` object, for :mod:`hep_keras.tune`.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class DataBundle:
    """What a recipe's ``load_data`` returns.

    Attributes:
        train: ``tf.data.Dataset`` of training batches, repeated forever when ``steps_per_epoch`` is set.
        val: ``tf.data.Dataset`` of validation batches.
        info: JSON-able description of the input (path, fingerprint, n_events, shapes, ...); goes into
            ``metadata.json`` of the export.
        extras: anything else the recipe wants to hand to its own ``build_model`` / ``evaluate`` / ``export``
            (e.g. fitted normalisation statistics, the test indices).
    """

    train: Any
    val: Any
    info: dict[str, Any]
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


def data_path(config: dict[str, Any]):
    """The input file of a run: ``config["data"]`` or, when not given, the shipped sample."""
    from pathlib import Path

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
