"""Recipe for ``python -m hep_keras.fit vae``: the convolutional VAE on jet images (GeV in, GeV out)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.errors import ConfigError
from hep_keras.physics import CHANNEL_KEYS
from hep_keras.training.config import check_positive, check_widths
from hep_keras.training.recipes.base import DataBundle, data_path, image_file_info, no_callbacks

NAME = "vae"
MONITOR = "val_loss"
DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 32,
    "latent_dim": 16,
    "widths": [16, 32, 64, 64],
    "activation": "silu",
    "beta": 0.01,
    "kl_warmup_steps": 300,
    "mass_weight": 30.0,
    "eval_events": 500,
    "figure_events": 4,
    "norm_fit_events": 1000,
}


def validate(config: dict[str, Any]) -> None:
    check_positive(config, "latent_dim", "norm_fit_events")
    check_widths(config)
    for key in ("beta", "mass_weight", "kl_warmup_steps", "figure_events"):
        if config.get(key, 0) < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {config[key]!r}")


def _split_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "seed": config["seed"],
        "fractions": tuple(config["fractions"]),
        "max_events": config["max_events"],
    }


@dataclasses.dataclass
class ImageData(DataBundle):
    """Train/val streams of jet images plus the input file and the per-channel normalisation fitted on train."""

    path: Path = None
    normalization: dict[str, Any] = dataclasses.field(default_factory=dict)


callbacks = no_callbacks


def load_data(config: dict[str, Any]) -> ImageData:
    """Validate the input, stream train/val splits, fit the per-channel normalisation on the training split.

    ``config["data"]``: an HDF5 file (default the shipped sample) or ``tfds:quark_gluon[@DATA_DIR]``.
    """
    from hep_keras.data import inspect_jet_file, jet_images
    from hep_keras.data.normalization import fit_image_normalization
    from hep_keras.data.tfds import is_tfds, tfds_images, tfds_info
    from hep_keras.training.distribute import distributed_input

    if is_tfds(config["data"]):
        spec = config["data"]
        info = tfds_info(spec)
        shared = {"seed": config["seed"], "max_events": config["max_events"]}

        def read(split, batch_size, num_shards=1, shard_index=0, **kwargs):
            return tfds_images(spec, split, batch_size, num_shards=num_shards, shard_index=shard_index, **kwargs)

        fit_batches = read("train", 256, shuffle=False, **shared).as_numpy_iterator()
    else:
        spec = data_path(config)
        info = image_file_info(inspect_jet_file(spec))
        shared = _split_kwargs(config)

        def read(split, batch_size, num_shards=1, shard_index=0, **kwargs):
            return jet_images(spec, split, batch_size, num_shards=num_shards, shard_index=shard_index, **kwargs)

        fit_batches = read("train", 256, shuffle=False, **shared).as_numpy_iterator()
    normalization = fit_image_normalization(fit_batches, max_events=config["norm_fit_events"])

    def pipeline(split):  # one per worker under multi_worker, each reading only its shard
        def build(batch_size, num_shards, shard_index):
            return read(split, batch_size, num_shards, shard_index, **shared)

        repeat = split == "train" and bool(config["steps_per_epoch"])
        return distributed_input(build, config["batch_size"], repeat=repeat)

    return ImageData(pipeline("train"), pipeline("val"), info, path=spec, normalization=normalization)


def build_model(config: dict[str, Any], data: ImageData, variational: bool = True):
    import keras

    from hep_keras.models import JetImageAE, JetImageVAE
    from hep_keras.training.distribute import resolve_jit_compile

    h, w, c = data.info["image_shape"]
    if h != w:
        raise ConfigError(f"{data.info['path']}: images must be square, got {h}x{w}")
    kwargs = dict(
        image_size=h,
        channels=c,
        latent_dim=config["latent_dim"],
        widths=config["widths"],
        activation=config["activation"],
        mass_weight=config["mass_weight"],
        seed=config["seed"],
        **data.normalization,
    )
    if variational:
        model = JetImageVAE(beta=config["beta"], kl_warmup_steps=config["kl_warmup_steps"], **kwargs)
    else:
        model = JetImageAE(**kwargs)
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        jit_compile=resolve_jit_compile(config["jit_compile"]),
    )
    return model


def test_events(config: dict[str, Any], data: ImageData) -> dict[str, np.ndarray]:
    """The first ``eval_events`` events of the test split: ``X_jets`` (GeV), ``y``, ``m0``, ``pt``."""
    from hep_keras.data import read_events, split_indices
    from hep_keras.data.tfds import is_tfds, tfds_read

    if is_tfds(data.path):
        arrays = tfds_read(data.path, "test", config["eval_events"])
        arrays["index"] = np.arange(len(arrays["y"]))
        if not len(arrays["y"]):
            raise ConfigError(f"{data.path}: the test split is empty")
        return arrays
    n = data.info["n_events"] if not config["max_events"] else min(config["max_events"], data.info["n_events"])
    index = split_indices(n, "test", tuple(config["fractions"]), config["seed"])[: config["eval_events"]]
    if index.size == 0:
        raise ConfigError(f"{data.info['path']}: the test split is empty; use more events or larger test fraction")
    arrays = read_events(data.path, index)
    arrays["index"] = index
    return arrays


def evaluate(model, config: dict[str, Any], data: ImageData, run_dir: Path) -> dict[str, Any]:
    """Reconstruct test events; write figures; return the physics metrics."""
    from hep_keras.evaluation.images import evaluate_reconstruction

    arrays = test_events(config, data)
    images = arrays["X_jets"]
    reconstructed = model.predict(images, batch_size=config["batch_size"], verbose=0)
    z_mean = np.concatenate(
        [np.asarray(model.encode_latent(images[i : i + 256])[0]) for i in range(0, len(images), 256)]
    )
    return evaluate_reconstruction(
        images,
        reconstructed,
        Path(run_dir) / "figures",
        labels=arrays["y"],
        latent=z_mean,
        figure_events=config["figure_events"],
    )


def export(model, config: dict[str, Any], data: ImageData, staging_dir: Path) -> dict[str, Any]:
    """SavedModel with encode / decode / reconstruct (GeV in, GeV out) and the ``.keras`` file."""
    from hep_keras.export import KERAS_FILE, SAVED_MODEL_DIR, export_image_autoencoder

    export_image_autoencoder(model, Path(staging_dir) / SAVED_MODEL_DIR)
    model.save(Path(staging_dir) / KERAS_FILE)
    h, w, c = data.info["image_shape"]
    return {
        "endpoints": {
            "encode": f"images float32|float64 (N,{h},{w},{c}) GeV -> code float32 (N,{model.code_dim})",
            "decode": f"code float32|float64 (N,{model.code_dim}) -> images float32 (N,{h},{w},{c}) GeV",
            "reconstruct": f"images float32|float64 (N,{h},{w},{c}) GeV -> images float32 (N,{h},{w},{c}) GeV",
        },
        "reconstruct_args": ["images"],
        "image_shape": [h, w, c],
        "latent_dim": model.latent_dim,
        "code_layout": [f"z[{i}]" for i in range(model.latent_dim)]
        + [f"log1p(E_{name} / {scale:.4g} GeV)" for name, scale in zip(CHANNEL_KEYS, model.energy_scales, strict=True)]
        + [f"log1p(m_image / {model.mass_scale:.4g} GeV)"],
        "normalization": {"type": "ChannelLogScale", **data.normalization},
    }
