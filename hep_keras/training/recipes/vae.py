"""Recipe for ``python -m hep_keras.fit vae``: the convolutional VAE on jet images (GeV in, GeV out)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.errors import ConfigError
from hep_keras.physics import CHANNEL_KEYS
from hep_keras.training.config import check_positive, check_widths
from hep_keras.training.recipes.base import (
    DataBundle,
    cosine_learning_rate,
    data_path,
    image_file_info,
    image_split_events,
    no_callbacks,
)

NAME = "vae"
MONITOR = "val_loss"
DEFAULTS: dict[str, Any] = {
    "epochs": 15,
    "batch_size": 32,
    "latent_dim": 32,
    "widths": [16, 32, 64, 64],
    "activation": "silu",
    "beta": 1e-4,
    "kl_warmup_steps": 300,
    "n_deposits": [16, 24, 32],  # Tracks, ECAL, HCAL (towers)
    "truth_deposits": 64,
    "hidden_units": 256,
    "sinkhorn_epsilon": 0.005,
    "sinkhorn_iterations": 40,
    "hcal_tower": 5,
    "eval_events": 500,
    "baseline_events": 2000,  # training events for the mean-image / PCA baselines and the q/g classifier
    "cnn_epochs": 10,  # epochs of the CNN two-sample classifier (0: skip it)
    "figure_events": 4,
    "norm_fit_events": 1000,
}


#: config keys passed to the model constructor unchanged
MODEL_KEYS = ("n_deposits", "truth_deposits", "hidden_units", "sinkhorn_epsilon", "sinkhorn_iterations", "hcal_tower")


def validate(config: dict[str, Any]) -> None:
    check_positive(config, "latent_dim", "norm_fit_events", "baseline_events")
    check_widths(config)
    check_positive(config, "hcal_tower", "truth_deposits", "hidden_units", "sinkhorn_epsilon")
    deposits = config["n_deposits"]
    if len(deposits) != 3 or any(not isinstance(n, int) or n <= 0 for n in deposits):
        raise ConfigError(
            f"config key 'n_deposits' must be three positive integers (Tracks, ECAL, HCAL), got {deposits}"
        )
    check_positive(config, "sinkhorn_iterations")
    for key in ("beta", "kl_warmup_steps", "figure_events", "cnn_epochs"):
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

    events = image_split_events(config, info["n_events"], info.get("split_events") if is_tfds(spec) else None)
    return ImageData(
        pipeline("train"), pipeline("val"), info, path=spec, normalization=normalization, split_events=events
    )


def learning_rate_schedule(config: dict[str, Any], data: ImageData):
    """:func:`~hep_keras.training.recipes.base.cosine_learning_rate` over the events of the input file."""
    n = data.info["n_events"] if not config["max_events"] else min(config["max_events"], data.info["n_events"])
    return cosine_learning_rate(config, n)


def build_model(config: dict[str, Any], data: ImageData, variational: bool = True):
    import keras

    from hep_keras.models import JetImageAE, JetImageVAE
    from hep_keras.training.distribute import resolve_jit_compile

    h, w, c = data.info["image_shape"]
    if h != w:
        raise ConfigError(f"{data.info['path']}: images must be square, got {h}x{w}")
    tower = config["hcal_tower"]
    if h % tower:  # e.g. a cropped file: the towers do not tile the image (the diffusion recipe does the same)
        print(f"note: {data.info['path']}: {tower}x{tower} HCAL towers do not tile {h}x{h} images; HCAL per pixel")
        tower = 1
    kwargs = dict(
        image_size=h,
        channels=c,
        latent_dim=config["latent_dim"],
        widths=config["widths"],
        activation=config["activation"],
        **{key: config[key] for key in MODEL_KEYS if key != "hcal_tower"},
        hcal_tower=tower,
        seed=config["seed"],
        **data.normalization,
    )
    if variational:
        model = JetImageVAE(beta=config["beta"], kl_warmup_steps=config["kl_warmup_steps"], **kwargs)
    else:
        model = JetImageAE(**kwargs)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate_schedule(config, data)),
        jit_compile=resolve_jit_compile(config["jit_compile"]),
    )
    return model


def split_events(config: dict[str, Any], data: ImageData, split: str, count: int) -> dict[str, np.ndarray]:
    """The first ``count`` events of a split: ``X_jets`` (GeV), ``y``, ``m0``, ``pt`` and ``index``."""
    from hep_keras.data import read_events, split_indices
    from hep_keras.data.tfds import is_tfds, tfds_read

    if is_tfds(data.path):
        arrays = tfds_read(data.path, split, count)
        arrays["index"] = np.arange(len(arrays["y"]))
        if not len(arrays["y"]):
            raise ConfigError(f"{data.path}: the {split} split is empty")
        return arrays
    n = data.info["n_events"] if not config["max_events"] else min(config["max_events"], data.info["n_events"])
    index = split_indices(n, split, tuple(config["fractions"]), config["seed"])[:count]
    if index.size == 0:
        raise ConfigError(f"{data.info['path']}: the {split} split is empty; use more events or another fraction")
    arrays = read_events(data.path, index)
    arrays["index"] = index
    return arrays


def test_events(config: dict[str, Any], data: ImageData) -> dict[str, np.ndarray]:
    """The first ``eval_events`` events of the test split: ``X_jets`` (GeV), ``y``, ``m0``, ``pt``."""
    return split_events(config, data, "test", config["eval_events"])


def evaluate(model, config: dict[str, Any], data: ImageData, run_dir: Path) -> dict[str, Any]:
    """Reconstruct test events; judge them against the mean-image and PCA baselines; write figures."""
    from hep_keras.evaluation.autoencoder_report import evaluate_autoencoder
    from hep_keras.evaluation.plots import plot_latent

    arrays = test_events(config, data)
    train = split_events(config, data, "train", config["baseline_events"])
    images = arrays["X_jets"]
    print(f"evaluation: reconstructing {len(images)} test-split events", flush=True)
    reconstructed = model.predict(images, batch_size=config["batch_size"], verbose=1)
    figures = Path(run_dir) / "figures"
    metrics = evaluate_autoencoder(
        NAME if model.variational else "ae",
        images,
        reconstructed,
        figures,
        code_size=model.code_dim,
        thresholds=model.zero_thresholds,
        test_labels=arrays["y"],
        train_images=train["X_jets"],
        train_labels=train["y"],
        cnn_epochs=config["cnn_epochs"],
        figure_events=config["figure_events"],
        seed=config["seed"],
        notes=[
            f"Test split: {len(images)} events never used for training or for fitting the normalisation; "
            f"baselines and the q/g classifier fitted on {len(train['X_jets'])} training-split events."
        ],
    )
    z_mean = np.concatenate(
        [np.asarray(model.encode_latent(images[i : i + 256])[0]) for i in range(0, len(images), 256)]
    )
    plot_latent(z_mean, arrays["y"], figures / "latent_space.png")
    return metrics


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
