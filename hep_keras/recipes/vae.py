"""Recipe for ``python -m hep_keras.fit vae``: the convolutional VAE on jet images (GeV in, GeV out)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.config import check_positive
from hep_keras.errors import ConfigError
from hep_keras.recipes.base import DataBundle, data_path, image_file_info

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
    "emd_weight": 10.0,
    "count_weight": 1.0,
    "hcal_tower": 5,
    "eval_events": 500,
    "figure_events": 4,
    "norm_fit_events": 1000,
}


def validate(config: dict[str, Any]) -> None:
    check_positive(config, "latent_dim", "norm_fit_events")
    if not config["widths"] or any(not isinstance(w, int) or w <= 0 for w in config["widths"]):
        raise ConfigError(f"config key 'widths' must be a non-empty list of positive integers, got {config['widths']}")
    check_positive(config, "hcal_tower")
    for key in ("beta", "emd_weight", "count_weight", "kl_warmup_steps", "figure_events"):
        if config.get(key, 0) < 0:
            raise ConfigError(f"config key {key!r} must be >= 0, got {config[key]!r}")


def _split_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "seed": config["seed"],
        "fractions": tuple(config["fractions"]),
        "max_events": config["max_events"],
    }


def load_data(config: dict[str, Any]) -> DataBundle:
    """Validate the file, stream train/val splits, fit the per-channel normalisation on the training split."""
    from hep_keras.data import inspect_jet_file, jet_images
    from hep_keras.data.normalization import fit_image_normalization

    path = data_path(config)
    info = inspect_jet_file(path)
    kwargs = _split_kwargs(config)
    train = jet_images(path, "train", config["batch_size"], **kwargs)
    val = jet_images(path, "val", config["batch_size"], **kwargs)
    fit_batches = jet_images(path, "train", 256, shuffle=False, **kwargs).as_numpy_iterator()
    normalization = fit_image_normalization(fit_batches, max_events=config["norm_fit_events"])
    return DataBundle(train, val, image_file_info(info), {"path": path, "normalization": normalization})


def build_model(config: dict[str, Any], data: DataBundle, variational: bool = True):
    import keras

    from hep_keras.models import JetImageAE, JetImageVAE

    h, w, c = data.info["image_shape"]
    if h != w:
        raise ConfigError(f"{data.info['path']}: images must be square, got {h}x{w}")
    kwargs = dict(
        image_size=h,
        channels=c,
        latent_dim=config["latent_dim"],
        widths=config["widths"],
        activation=config["activation"],
        emd_weight=config["emd_weight"],
        count_weight=config["count_weight"],
        hcal_tower=config["hcal_tower"],
        seed=config["seed"],
        **data.extras["normalization"],
    )
    if variational:
        model = JetImageVAE(beta=config["beta"], kl_warmup_steps=config["kl_warmup_steps"], **kwargs)
    else:
        model = JetImageAE(**kwargs)
    model.compile(
        optimizer=keras.optimizers.Adam(config["learning_rate"]),
        jit_compile=config["jit_compile"],
    )
    return model


def test_events(config: dict[str, Any], data: DataBundle) -> dict[str, np.ndarray]:
    """The first ``eval_events`` events of the test split: ``X_jets`` (GeV), ``y``, ``m0``, ``pt``."""
    from hep_keras.data import read_events, split_indices

    n = data.info["n_events"] if not config["max_events"] else min(config["max_events"], data.info["n_events"])
    index = split_indices(n, "test", tuple(config["fractions"]), config["seed"])[: config["eval_events"]]
    if index.size == 0:
        raise ConfigError(f"{data.info['path']}: the test split is empty; use more events or larger test fraction")
    arrays = read_events(data.extras["path"], index)
    arrays["index"] = index
    return arrays


def evaluate(model, config: dict[str, Any], data: DataBundle, run_dir: Path) -> dict[str, Any]:
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


def export(model, config: dict[str, Any], data: DataBundle, staging_dir: Path) -> dict[str, Any]:
    """SavedModel with encode / decode / reconstruct (GeV in, GeV out) and the ``.keras`` file."""
    from hep_keras.export import KERAS_FILE, SAVED_MODEL_DIR, export_image_autoencoder

    export_image_autoencoder(model, Path(staging_dir) / SAVED_MODEL_DIR)
    model.save(Path(staging_dir) / KERAS_FILE)
    h, w, c = data.info["image_shape"]
    return {
        "endpoints": {
            "encode": f"images float32 (N,{h},{w},{c}) GeV -> code float32 (N,{model.code_dim})",
            "decode": f"code float32 (N,{model.code_dim}) -> images float32 (N,{h},{w},{c}) GeV",
            "reconstruct": f"images float32 (N,{h},{w},{c}) GeV -> images float32 (N,{h},{w},{c}) GeV",
        },
        "reconstruct_args": ["images"],
        "image_shape": [h, w, c],
        "latent_dim": model.latent_dim,
        "code_layout": [f"z[{i}]" for i in range(model.latent_dim)]
        + [
            f"log1p(E_{name} / {scale:.4g} GeV)"
            for name, scale in zip(("tracks", "ecal", "hcal"), model.energy_scales, strict=False)
        ]
        + [f"log1p(m_image / {model.mass_scale:.4g} GeV)"],
        "normalization": {"type": "ChannelLogScale", **data.extras["normalization"]},
    }


def search_space(hp, config: dict[str, Any]) -> dict[str, Any]:
    """Keras Tuner search space (config overrides) for ``python -m hep_keras.tune vae|ae``."""
    overrides = {
        "learning_rate": hp.Float("learning_rate", 3e-4, 3e-3, sampling="log"),
        "latent_dim": hp.Choice("latent_dim", [8, 16, 32]),
        "widths": [int(w) for w in hp.Choice("widths", ["16-32-64-64", "32-64-64-128", "16-32-64"]).split("-")],
        "emd_weight": hp.Float("emd_weight", 1.0, 100.0, sampling="log"),
    }
    if "beta" in config:
        overrides["beta"] = hp.Float("beta", 1e-3, 0.3, sampling="log")
    return overrides
