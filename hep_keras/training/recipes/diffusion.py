"""Recipe for ``python -m hep_keras.fit diffusion``: the conditional jet-image diffusion model.

Defaults model full 125×125×3 events on a 25×25 grid of 5×5-pixel patches (``patch``): Tracks and ECAL as the
2 hottest hits of each patch (``slots``), HCAL on its 5×5 towers (``hcal_grid``), a U-Net with
``widths = [24, 48, 96]`` on the grid (padded to 28), conditioned (FiLM, ``scale_shift``) on quark/gluon, on the
event's total energy and on each channel's hit pixels, diffusing each pixel's fraction of the energy
(``energy_conditioning``, ``multiplicity_conditioning``, ``energy_fractions``; generated HCAL gets exactly its
drawn hit towers, ``calibration_drawn_counts``), 36 epochs on the
shipped sample with a learning rate that decays (cosine) over the run (see docs/diffusion.md for the measured
time); evaluation samples with guidance 2. For the real file on a GPU/TPU::

    python -m hep_keras.fit diffusion --data quark-gluon_data-set_n139306.hdf5 --epochs 50

Evaluation (on held-out events: validation + test split, halves A and B): generate one event per event of B
with its quark/gluon label, then the quality table of :mod:`hep_keras.evaluation.generation_quality` (every
measure beside its real-vs-real floor), figures, and DDIM-inversion / SDEdit reconstructions of a few events;
each stage shows a Keras progress bar and its time goes into ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.errors import ConfigError
from hep_keras.physics import CHANNELS
from hep_keras.progress import stage_bar, staged_update
from hep_keras.training.config import check_choice, check_positive, check_widths
from hep_keras.training.recipes.base import (
    DataBundle,
    cosine_learning_rate,
    data_path,
    image_split_events,
    no_callbacks,
)

NAME = "diffusion"
MONITOR = "val_loss"
#: config keys passed unchanged to the JetDiffusion constructor
MODEL_KEYS = (
    "widths", "blocks_per_level", "attention", "embed_dim", "dropout", "prediction", "schedule",
    "min_signal_rate", "label_dropout", "ema", "gap", "seed", "patch", "slots", "head_width",
    "scale_shift", "energy_fractions",
)  # fmt: skip
HCAL_GRIDS = ("auto", "tower", "pixel")
DEFAULTS: dict[str, Any] = {
    "crop": 0,  # 0 = the full image (125x125); else the side of a central crop in pixels
    "patch": 5,  # pixel blocks folded into one U-Net cell: 125x125 -> 25x25 grid (1 = pixel grid)
    "hcal_grid": "auto",  # tower (one HCAL value per patch) | pixel | auto (tower if HCAL is constant on 5x5 blocks)
    "widths": [24, 48, 96],  # U-Net channels per level of the 25x25 grid (padded to 28): 28, 14, 7 cells
    "slots": 2,  # Tracks/ECAL as the 2 hottest hits (energy, row, col) per patch (0 = every pixel a channel)
    "head_width": 0,  # per-cell 1x1 head over [features, noisy input] (0 = none)
    "blocks_per_level": 1,
    # the condition (time, label, energy, hit counts) scales and shifts every residual block's features (FiLM)
    # instead of being added before a GroupNorm: on 4000 independent events CNN AUC 0.745 -> 0.683, jet mass W1
    # 2.20 -> 1.69x floor, HL AUC 0.705 -> 0.697 (one training run each; another training seed moves HL by 0.05,
    # docs/diffusion.md)
    "scale_shift": True,
    "attention": True,  # self-attention at the lowest resolution
    "embed_dim": 32,  # sinusoidal time-embedding size
    "dropout": 0.0,
    "prediction": "v",  # v | epsilon
    "schedule": "cosine",  # cosine | linear
    "min_signal_rate": 0.02,  # α(t=1) of the cosine schedule
    "label_dropout": 0.1,  # probability of the null label in training (classifier-free guidance)
    "ema": 0.995,  # EMA decay of the sampling network (with warm-up)
    "gap": 0.5,  # occupancy gap of the intensity transform: empty pixels at -1, hits in [-1 + gap, 1]
    "energy_conditioning": True,  # condition on the event's total energy (drawn from the class's training spectrum)
    "energy_fractions": True,  # diffuse each pixel's fraction of the event energy; generated totals = condition
    # condition also on each channel's hit pixels (drawn with the energy from one training event of the class): the
    # channels' hit counts then grow together as in real jets (docs/diffusion.md)
    "multiplicity_conditioning": True,
    "norm_events": 2000,  # training events used to fit the intensity transform
    # generated vs training events of the quantile calibration after training (0 = none); 2400 = ~400 per class and
    # energy bin, ~5 min of the default run
    "calibration_events": 2400,
    # bins of event energy with their own calibration (energy-conditioned models; edges at the calibration events'
    # energy terciles): high-level AUC 0.684 -> 0.646, jet mass W1 1.64 -> 1.50x floor on the default run's weights
    # (docs/diffusion.md)
    "calibration_energy_bins": 3,
    # then map each event's hit count per channel onto the training events' counts (per energy bin; only the hit
    # decision moves): the per-cell map gives every ring its hit rate, but the network's events come out too alike
    # in their number of hits (long run: ECAL sd 6.4 vs 8.8; docs/diffusion.md)
    "calibration_hit_counts": True,
    # every map fitted separately on the quark and on the gluon events (and on all, for unconditional samples): on
    # 4000 independent events q/g gen - real -0.072 -> -0.017, HL AUC 0.775 -> 0.761 (docs/diffusion.md)
    "calibration_per_class": True,
    # channels whose hit-count map aims each generated event at the hit cells (slot hits, towers) of the training
    # event its conditioned hit pixels were drawn from, instead of the training count at its generated count's
    # quantile; HCAL: HL AUC 0.697 -> 0.656 on the same weights; aiming Tracks and ECAL too: 0.668 on the default
    # run's weights, 0.639 -> 0.616 on the long run's, so the documented long run aims all three (one training run
    # each; docs/diffusion.md); [] = none; ignored without multiplicity conditioning or the hit-count map
    "calibration_drawn_counts": ["hcal"],
    # decoding restores the hits beyond the 2nd of a 5x5 block that the hit slots drop (split off the block's hottest
    # hit with the training events' rates and energy shares per ring): on 4000 independent events the real events'
    # round trip through the slots HL AUC 0.592 -> 0.512, the default run's events 0.770 -> 0.746 (docs/diffusion.md)
    "slot_overflow": True,
    # x̂0 of the slots' positions while sampling is the exact posterior mean under the training events' distribution of
    # each slot's pixel per block (the network's was no better than returning x_t): on 4000 independent events the long
    # run's CNN AUC 0.687 -> 0.602, the hottest Tracks pixel on the axis pixel 2.5 % -> 6.2 % (real 7.8 %); no network
    # evaluation (docs/diffusion.md, "The network does not learn where a hit sits in its block")
    "position_prior": True,
    "sample_steps": 25,  # DDIM steps for the evaluation samples
    "recon_steps": 50,  # DDIM inversion steps for the evaluation reconstructions
    "recon_events": 32,  # held-out events reconstructed in the evaluation
    "sdedit_strength": 0.5,  # strength of the partial-noise (SDEdit) reconstruction in the evaluation
    # classifier-free guidance of the evaluation samples and `generate`'s default (1 = plain conditional sampling);
    # 2 costs 2 network evaluations per step (50 at 25 steps); it raised the q/g AUC of generated events by
    # 0.06-0.08 on two held-out samples (docs/diffusion.md)
    "guidance": 2.0,
    "eta": 0.0,  # 0 = deterministic DDIM, 1 = DDPM
    "two_sample_epochs": 8,  # epochs of the small-CNN real-vs-generated classifier
    # overrides of common defaults: 36 epochs = 3600 steps of 32 events on the shipped sample, 22.6 min with the
    # evaluation on 2 CPU cores; the learning rate decays (cosine) to 5 % over the run: a constant 2e-3 collapsed
    # at step 2,600 of a 36-epoch run (docs/diffusion.md, "Training longer")
    "epochs": 36,
    "batch_size": 32,
    "learning_rate": 2e-3,
    "patience": 15,
    "eval_events": 400,
}


def validate(config: dict[str, Any]) -> None:
    check_positive(config, "embed_dim", "blocks_per_level", "norm_events", "sample_steps", "recon_steps")
    check_positive(config, "recon_events", "two_sample_epochs")
    check_positive(config, "calibration_energy_bins", allow_none=False)
    if not isinstance(config["calibration_events"], int) or config["calibration_events"] < 0:
        value = config["calibration_events"]
        raise ConfigError(f"config key 'calibration_events' must be an integer >= 0, got {value!r}")
    check_choice(config, "prediction", ("v", "epsilon"))
    check_choice(config, "schedule", ("cosine", "linear"))
    check_choice(config, "hcal_grid", HCAL_GRIDS)
    check_positive(config, "patch")
    for key in ("slots", "head_width"):
        if not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 0:
            raise ConfigError(f"config key {key!r} must be an integer >= 0, got {config[key]!r}")
    if config["slots"] > config["patch"] ** 2:
        raise ConfigError(f"config key 'slots' must be at most patch² = {config['patch'] ** 2}, got {config['slots']}")
    for key in ("energy_fractions", "multiplicity_conditioning"):
        if config[key] and not config["energy_conditioning"]:
            raise ConfigError(f"config key {key!r} needs 'energy_conditioning' = true")
    if config["hcal_grid"] == "tower" and config["patch"] == 1:
        raise ConfigError("config key 'hcal_grid' = 'tower' needs 'patch' > 1 (the tower side in pixels)")
    if config["crop"] < 0 or (0 < config["crop"] < 8):
        raise ConfigError(f"config key 'crop' must be 0 (full image) or >= 8 pixels, got {config['crop']}")
    check_widths(config)
    if config["embed_dim"] % 2:
        raise ConfigError(f"config key 'embed_dim' must be even, got {config['embed_dim']}")
    for key in ("label_dropout", "eta"):
        if not 0 <= config[key] <= 1:
            raise ConfigError(f"config key {key!r} must be in [0, 1], got {config[key]}")
    if not 0 < config["sdedit_strength"] <= 1:
        raise ConfigError(f"config key 'sdedit_strength' must be in (0, 1], got {config['sdedit_strength']}")
    if not 0 < config["gap"] < 2:
        raise ConfigError(f"config key 'gap' must be in (0, 2), got {config['gap']}")
    if not 0 <= config["ema"] < 1:
        raise ConfigError(f"config key 'ema' must be in [0, 1), got {config['ema']}")
    if not 0 < config["min_signal_rate"] < 1:
        raise ConfigError(f"config key 'min_signal_rate' must be in (0, 1), got {config['min_signal_rate']}")
    if config["guidance"] < 0:
        raise ConfigError(f"config key 'guidance' must be >= 0, got {config['guidance']}")
    names = [name.lower() for name in CHANNELS]
    drawn = config["calibration_drawn_counts"]
    if not isinstance(drawn, list) or any(name not in names for name in drawn):
        raise ConfigError(f"config key 'calibration_drawn_counts' must be a list of {', '.join(names)}; got {drawn!r}")


# ------------------------------------------------------------------------------------------------ data
def _split(config: dict[str, Any], n_events: int, split: str) -> np.ndarray:
    from hep_keras.data import split_indices

    return split_indices(n_events, split, config["fractions"], config["seed"])


@dataclasses.dataclass
class DiffusionData(DataBundle):
    """Train/val streams of ``(images, labels)`` plus what the model and the evaluation need of the input."""

    path: Path = None
    n_events: int = 0  # events used (after max_events)
    crop: int | None = None  # central crop in pixels, None = whole image
    image_size: int = 0  # side of the (cropped) image the model sees, pixels
    transform: dict[str, Any] = dataclasses.field(default_factory=dict)  # fitted JetIntensityTransform constants
    #: the model's ``energy_quantiles`` and ``multiplicities`` fitted on training events (None: not conditioned)
    conditions: dict[str, Any] = dataclasses.field(default_factory=dict)
    hcal_towers: bool = False  # HCAL modelled on its patch x patch tower grid
    calibration: dict[str, Any] | None = None  # {"events", "seconds"} of the calibration after training
    #: the model's overflow tables and position counts fitted on training events (each only when configured)
    slot_tables: dict[str, list] = dataclasses.field(default_factory=dict)


callbacks = no_callbacks


def load_data(config: dict[str, Any]) -> DiffusionData:
    """Streams of ``(images (B, S, S, 3) GeV, labels (B,))`` and the intensity transform fitted on train.

    ``config["data"]``: an HDF5 file (default the shipped sample) or ``tfds:quark_gluon[@DATA_DIR]``.
    """
    from hep_keras.data import inspect_jet_file, jet_images
    from hep_keras.data.tfds import is_tfds, tfds_images, tfds_info
    from hep_keras.training.distribute import distributed_input

    tfds_source = is_tfds(config["data"])
    if tfds_source:
        path = config["data"]
        described = tfds_info(path)
        shape, fingerprint, n_file = described["image_shape"], described["fingerprint"], described["n_events"]
    else:
        path = data_path(config)
        info = inspect_jet_file(path)
        shape, fingerprint, n_file = list(info.image_shape), info.fingerprint, info.n_events
    height, width = shape[:2]
    crop = config["crop"] or None
    if crop is not None and crop > min(height, width):
        raise ConfigError(f"config key 'crop' ({crop}) is larger than the images of {path} ({height}x{width})")
    if crop is None and height != width:
        raise ConfigError(f"{path}: images are {height}x{width}; the diffusion model needs square images or a crop")
    n_events = min(n_file, config["max_events"] or n_file)
    common = {"fields": ("X_jets", "y"), "seed": config["seed"], "max_events": config["max_events"], "crop": crop}

    def pipeline(split):  # one per worker under multi_worker, each reading only its shard
        def build(batch_size, num_shards, shard_index):
            shard = {"batch_size": batch_size, "num_shards": num_shards, "shard_index": shard_index}
            if tfds_source:
                return tfds_images(path, split=split, **common, **shard)
            return jet_images(path, split=split, fractions=config["fractions"], **common, **shard)

        repeat = split == "train" and bool(config["steps_per_epoch"])
        return distributed_input(build, config["batch_size"], repeat=repeat)

    train, val = pipeline("train"), pipeline("val")
    fit_events = training_events(config, path, n_events, config["norm_events"])
    fit_images = fit_events["X_jets"]
    transform, conditions = fit_model_constants(config, fit_images, fit_events["y"])
    hcal_towers = _hcal_towers(config, fit_images, path)
    slot_tables = fit_slot_tables(config, fit_images, hcal_towers)
    image_size = crop or height
    data_info = {
        "path": str(path),
        "fingerprint": fingerprint,
        "n_events": n_events,
        "image_shape": list(shape),
        "crop": crop,
        "model_image_size": image_size,
        "hcal_towers": hcal_towers,
    }
    return DiffusionData(
        train,
        val,
        data_info,
        path=path,
        n_events=n_events,
        crop=crop,
        image_size=image_size,
        transform=transform,
        conditions=conditions,
        hcal_towers=hcal_towers,
        slot_tables=slot_tables,
        split_events=image_split_events(config, n_file, described["split_events"] if tfds_source else None),
    )


def training_events(config: dict[str, Any], path, n_events: int, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` events of the training split: ``{"X_jets": (n, S, S, 3) GeV (cropped), "y": (n,)}``."""
    from hep_keras.data import read_events
    from hep_keras.data.tfds import is_tfds, tfds_read

    crop = config["crop"] or None
    if is_tfds(config["data"]):
        return tfds_read(str(path), "train", n, fields=("X_jets", "y"), crop=crop)
    return read_events(path, _split(config, n_events, "train")[:n], fields=("X_jets", "y"), crop=crop)


def after_training(model, config: dict[str, Any], data: DiffusionData) -> None:
    """Fit the quantile calibration of generated energies (:meth:`JetDiffusion.fit_calibration`) on the first
    ``calibration_events`` training events with the evaluation's sampler (steps, guidance, η); 0 = none. With
    channels aimed at their drawn counts, also the hit cells of the multiplicities' training events
    (:meth:`JetDiffusion.fit_multiplicity_cells`: the first ``norm_events``, as in :func:`load_data`)."""
    n = config["calibration_events"]
    if not n:
        return
    clock = time.perf_counter()
    if drawn_count_channels(config):
        constants = training_events(config, data.path, data.n_events, config["norm_events"])
        model.fit_multiplicity_cells(constants["X_jets"], constants["y"])
    events = training_events(config, data.path, data.n_events, n)
    bar = stage_bar(f"calibration: {len(events['y'])} generated vs training events", len(events["y"]))
    model.fit_calibration(
        events["X_jets"], events["y"], config["sample_steps"], config["guidance"], config["eta"],
        seed=config["seed"] + 2, progress=bar.update,
        energy_bins=config["calibration_energy_bins"] if config["energy_conditioning"] else 1,
        hit_counts=config["calibration_hit_counts"], per_class=config["calibration_per_class"],
    )  # fmt: skip
    data.calibration = {"events": len(events["y"]), "seconds": time.perf_counter() - clock}


def fit_slot_tables(config: dict[str, Any], images: np.ndarray, hcal_towers: bool, keys=None) -> dict[str, list]:
    """The hit-slot tables the config asks for (``slot_overflow``: ``overflow_rates`` / ``overflow_fractions``;
    ``position_prior``: ``position_counts``), fitted on training images ``(N, S, S, 3)`` GeV; ``{}`` without hit
    slots. ``keys`` (default all): the config keys to fit."""
    from hep_keras.models.diffusion import fit_slot_overflow, fit_slot_positions

    if not (config["slots"] and config["patch"] > 1):
        return {}
    fitters = {"slot_overflow": fit_slot_overflow, "position_prior": fit_slot_positions}
    tables = {}
    for key in keys or fitters:
        if config[key]:
            tables |= fitters[key](images, config["patch"], config["slots"], hcal_towers)
    return tables


def fit_model_constants(config: dict[str, Any], images: np.ndarray, labels: np.ndarray) -> tuple[dict, dict]:
    """``(intensity transform constants, {"energy_quantiles", "multiplicities"}: each None when not conditioned
    on it)`` of the model, fitted on training images ``(N, S, S, 3)`` GeV with labels ``(N,)``. With
    ``energy_fractions`` the transform's scales describe each pixel's fraction of its event's energy; the
    detector thresholds stay in GeV."""
    from hep_keras.models.diffusion import fit_energy_quantiles, fit_intensity_transform, fit_multiplicities

    transform = fit_intensity_transform(images)
    if config["energy_fractions"]:
        totals = np.maximum(images.sum(axis=(1, 2, 3), keepdims=True), 1e-6)
        transform = {**fit_intensity_transform(images / totals), "thresholds": transform["thresholds"]}
    energy = config["energy_conditioning"]
    counts = energy and config["multiplicity_conditioning"]
    conditions = {
        "energy_quantiles": fit_energy_quantiles(images, labels) if energy else None,
        "multiplicities": fit_multiplicities(images, labels) if counts else None,
    }
    return transform, conditions


def _hcal_towers(config: dict[str, Any], images: np.ndarray, path: Path) -> bool:
    """Whether HCAL is modelled per tower: ``hcal_grid`` = tower / pixel, or auto = when the training events'
    HCAL is constant on the aligned ``patch × patch`` blocks (the shipped sample's 5×5 towers are)."""
    from hep_keras.models.patches import constant_on_blocks

    if config["hcal_grid"] == "pixel" or config["patch"] == 1:
        return False
    towered = constant_on_blocks(images[..., -1], config["patch"])
    if config["hcal_grid"] == "tower" and not towered:
        raise ConfigError(
            f"{path}: HCAL is not constant on {config['patch']}x{config['patch']} pixel towers aligned with pixel "
            "(0, 0); use --set hcal_grid=pixel (or auto)"
        )
    if not towered:
        print(f"note: {path}: HCAL is not on aligned {config['patch']}x{config['patch']} towers; modelled per pixel")
    return towered


# ------------------------------------------------------------------------------------------------ model
def drawn_count_channels(config: dict[str, Any]) -> list[str]:
    """The channel names (``CHANNELS``) of ``calibration_drawn_counts``; none without a calibration to aim."""
    if not (config["calibration_events"] and config["calibration_hit_counts"] and config["multiplicity_conditioning"]):
        return []
    return [name for name in CHANNELS if name.lower() in config["calibration_drawn_counts"]]


def build_model(config: dict[str, Any], data: DiffusionData):
    """A built and compiled :class:`~hep_keras.models.diffusion.JetDiffusion`."""
    import keras

    from hep_keras.models.diffusion import JetDiffusion
    from hep_keras.training.distribute import resolve_jit_compile

    model = JetDiffusion(
        image_size=data.image_size,
        hcal_towers=data.hcal_towers,
        **{key: config[key] for key in MODEL_KEYS},
        **data.transform,
        **data.conditions,
        **data.slot_tables,
        calibration_drawn_counts=[CHANNELS.index(name) for name in drawn_count_channels(config)],
        name="jet_diffusion",
    )
    jit = resolve_jit_compile(config["jit_compile"], auto=True)  # XLA: -25 % time/step on CPU
    model.compile(
        optimizer=keras.optimizers.Adam(cosine_learning_rate(config, data.n_events), global_clipnorm=1.0),
        jit_compile=jit,
    )
    return model


# ------------------------------------------------------------------------------------------------ evaluation
def heldout_events(config: dict[str, Any], data: DiffusionData) -> dict[str, np.ndarray]:
    """Up to ``eval_events`` real events from the validation + test splits (never trained on)."""
    from hep_keras.data import read_events
    from hep_keras.data.tfds import is_tfds, tfds_read

    if is_tfds(data.path):  # the first events of validation, then test
        parts = [
            tfds_read(data.path, split, config["eval_events"], ("X_jets", "y"), data.crop) for split in ("val", "test")
        ]
        events = {key: np.concatenate([p[key] for p in parts])[: config["eval_events"]] for key in ("X_jets", "y")}
        return events
    n = data.n_events
    idx = np.concatenate([_split(config, n, "val"), _split(config, n, "test")])
    idx = np.sort(np.random.default_rng(config["seed"]).permutation(idx)[: config["eval_events"]])
    return read_events(data.path, idx, fields=("X_jets", "y"), crop=data.crop)


def generate_like(model, labels: np.ndarray, config: dict[str, Any], steps: int | None = None, progress=None):
    """Generate one event per label; returns ``(images GeV, seconds per event after tracing)``."""
    from hep_keras.models.diffusion import make_sample_labels_fn, sample_in_batches

    steps = steps or config["sample_steps"]
    sample_labels = make_sample_labels_fn(model)
    args = {"steps": steps, "seed": config["seed"] + 1, "guidance": config["guidance"], "eta": config["eta"]}
    sample_in_batches(sample_labels, labels[:2], **args)  # trace once, outside the timing
    start = time.perf_counter()
    images = sample_in_batches(sample_labels, labels, batch_size=32, progress=progress, **args)
    return images, (time.perf_counter() - start) / max(len(labels), 1)


def _reconstruction_section(model, real: np.ndarray, config: dict[str, Any], figures: Path) -> dict[str, Any]:
    import tensorflow as tf

    from hep_keras.evaluation.fidelity_plots import plot_event_displays
    from hep_keras.evaluation.metrics import reconstruction_metrics
    from hep_keras.models.diffusion import make_partial_reconstruct_fn, make_reconstruct_fn

    originals = real[: config["recon_events"]]
    steps = tf.constant(config["recon_steps"], tf.int32)
    inversion, partial = make_reconstruct_fn(model), make_partial_reconstruct_fn(model)
    strength, seed = tf.constant(config["sdedit_strength"], tf.float32), tf.constant(config["seed"], tf.int64)
    bar = stage_bar("evaluation: reconstruction (DDIM inversion + SDEdit)", len(originals))
    recon, sdedit = [], []
    for start in range(0, len(originals), 16):
        chunk = tf.constant(originals[start : start + 16])
        recon.append(np.asarray(inversion(chunk, steps)))
        sdedit.append(np.asarray(partial(chunk, steps, strength, seed)))
        bar.update(start + len(chunk))
    recon, sdedit = np.concatenate(recon), np.concatenate(sdedit)
    plot_event_displays(originals, recon, figures / "reconstruction.png", n_events=4, label="DDIM reconstruction")
    plot_event_displays(originals, sdedit, figures / "sdedit.png", n_events=2, label="SDEdit reconstruction")
    return {
        "ddim_inversion": reconstruction_metrics(originals, recon),
        "sdedit": reconstruction_metrics(originals, sdedit),
    }


def evaluate(model, config: dict[str, Any], data: DiffusionData, run_dir: Path) -> dict[str, Any]:
    """Generation quality (table of every measure beside its real-vs-real floor, W1, timing) and reconstruction.

    The held-out real events are split into halves A (reference) and B (floor); one event is generated per
    event of B with its quark/gluon label. Each stage (sampling, reconstruction, classifiers) shows a Keras
    progress bar; the table goes to ``quality_table.md`` and ``metrics.json``, figures to ``figures/``.
    """
    from hep_keras.evaluation.generation import compare_generated, generation_observables, split_halves
    from hep_keras.evaluation.generation_plots import (
        plot_mean_and_ratio,
        plot_occupancy_maps,
        plot_qg_event_displays,
    )
    from hep_keras.evaluation.generation_quality import (
        block_centre_share,
        describe_block_centre_share,
        describe_edge_hits,
        edge_hits,
        format_table,
        quality_table,
    )
    from hep_keras.evaluation.plots import plot_observable_histograms
    from hep_keras.models.diffusion import representation_round_trip

    figures = Path(run_dir) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    events = heldout_events(config, data)
    real, labels = events["X_jets"], events["y"].astype(np.int32)
    a_idx, b_idx = split_halves(len(real), config["seed"])
    bar = stage_bar(f"evaluation: sampling ({config['sample_steps']} DDIM steps)", len(b_idx))
    generated, per_event = generate_like(model, labels[b_idx], config, progress=bar.update)
    seconds["sampling"] = time.perf_counter() - clock

    clock = time.perf_counter()
    reconstruction = _reconstruction_section(model, real, config, figures)
    seconds["reconstruction"] = time.perf_counter() - clock

    clock = time.perf_counter()
    bar = stage_bar("evaluation: classifiers", 1, unit="measure")
    rows = quality_table(
        real[a_idx],
        real[b_idx],
        generated,
        labels[a_idx],
        labels[b_idx],
        cnn_epochs=config["two_sample_epochs"],
        seed=config["seed"],
        progress=staged_update(bar),
    )
    # compare_generated splits real with the same seed: A and B as above, generated events in B's order
    comparison = compare_generated(real, generated, seed=config["seed"])
    ceiling = None
    if model.slots:  # B's real events through the hit slots and back: the best any generator of them can do
        round_trip = representation_round_trip(model, real[b_idx])
        ceiling = quality_table(
            real[a_idx], real[b_idx], round_trip, labels[a_idx], labels[b_idx],
            cnn_epochs=config["two_sample_epochs"], seed=config["seed"],
        )  # fmt: skip
    seconds["classifiers"] = time.perf_counter() - clock

    clock = time.perf_counter()
    plot_observable_histograms(
        generation_observables(real[b_idx]),
        generation_observables(generated),
        figures / "generated_observables.png",
        labels=("real (held out)", "generated"),
        distances=comparison["w1"],
    )
    plot_mean_and_ratio(real[b_idx], generated, figures / "generated_mean_images.png")
    plot_qg_event_displays(real[b_idx], labels[b_idx], generated, labels[b_idx], figures / "generated_events.png")
    plot_occupancy_maps(real[b_idx], generated, figures / "generated_occupancy.png")
    seconds["figures"] = time.perf_counter() - clock
    if data.calibration is not None:
        seconds["calibration"] = data.calibration["seconds"]
    seconds["total"] = sum(seconds.values())
    table = format_table(rows)
    if ceiling is not None:
        table += (
            "\n\nRepresentation ceiling (not a model output): the same real events of B encoded into "
            f"{model.slots} hit slots per block and decoded"
            + (" (the hits beyond them restored at random, slot_overflow)" if model.overflow_rates is not None else "")
            + ", in the column 'generated'.\n\n"
            + format_table(ceiling)
        )
    centre_share = None
    if model.slots and model.patch > 1:  # where hits sit inside their block (uniform: 1 / patch² on its centre)
        centre_share = {
            "generated": block_centre_share(generated, model.patch),
            "real": block_centre_share(real[b_idx], model.patch),
        }
        table += "\n\n" + describe_block_centre_share(centre_share["generated"], centre_share["real"], model.patch)
        if model.position_counts is not None:
            table += (
                " Slot positions are drawn from the training events' distribution of each slot's pixel per block "
                "(position_prior): this share follows it by construction."
            )
    table += "\n\n" + describe_edge_hits(edge_hits(generated), edge_hits(real[b_idx]))
    (Path(run_dir) / "quality_table.md").write_text(table + "\n")
    print(table, flush=True)
    evaluations = config["sample_steps"] * (1 if config["guidance"] == 1 else 2)
    energy_bins = len(model.calibration_energy_edges) + 1
    return {
        "quality": {r["measure"]: {k: v for k, v in r.items() if k != "measure"} for r in rows},
        "representation_ceiling": {r["measure"]: {k: v for k, v in r.items() if k != "measure"} for r in ceiling or []},
        "generation": {
            **comparison,
            "steps": config["sample_steps"],
            "network_evaluations_per_event": evaluations,
            "seconds_per_event": per_event,
            **({"block_centre_share": {k: v.tolist() for k, v in centre_share.items()}} if centre_share else {}),
        },
        "reconstruction": reconstruction,
        "evaluation_seconds": seconds,
        "notes": [
            f"{len(real)} held-out real events (val + test): half A is the reference, half B the real-vs-real "
            f"floor; {len(generated)} generated events with B's quark/gluon labels, {config['sample_steps']} DDIM "
            f"steps, eta={config['eta']}, guidance={config['guidance']}",
            "quality.*: see quality_table.md (every measure beside its floor, bootstrap errors); hl_auc / cnn_auc: "
            "real-vs-generated classifiers (0.5 = indistinguishable; published calorimeter diffusion: 0.54-0.65)",
            "w1_over_floor ~ 1 means as close as a second real sample",
            f"model: {data.image_size}x{data.image_size} pixels on a {model.grid_size}x{model.grid_size} grid of "
            f"{model.patch}x{model.patch} patches, "
            + (f"{model.slots} hit slots per patch, " if model.slots else "one channel per pixel, ")
            + f"HCAL {'on its towers' if data.hcal_towers else 'per pixel'}"
            + (
                "; slot positions denoised by the exact posterior mean under the training events' distribution of "
                "each slot's pixel per block (position_prior: where hits sit in their block follows the training "
                "events by construction)"
                if model.position_counts is not None
                else ""
            ),
            "generated energies: "
            + (
                f"quantile-calibrated on {data.calibration['events']} generated vs training events (each energy "
                f"channel's distribution over the cells of each of {len(model.calibration[0])} rings"
                + (f", in each of {energy_bins} bins of event energy" if energy_bins > 1 else "")
                + (", for quark and gluon jets apart" if model.calibration_per_class else "")
                + (", and each channel's hits per event" if model.calibration_hit_counts is not None else "")
                + ("," if len(model.calibration) > 1 or model.calibration_hit_counts is not None else "")
                + " matches the training events by construction)"
                if model.calibration is not None and data.calibration is not None
                else "not calibrated"
            ),
            f"evaluation took {seconds['total']:.0f} s (each stage, calibration included: evaluation_seconds)",
        ],
    }


# ------------------------------------------------------------------------------------------------ export
def export(model, config: dict[str, Any], data: DiffusionData, staging_dir: Path) -> dict[str, Any]:
    """Write ``model.keras`` and ``saved_model/`` (endpoints below) into ``staging_dir``."""
    import keras

    from hep_keras.export import float_endpoint
    from hep_keras.models.diffusion import (
        make_partial_reconstruct_fn,
        make_reconstruct_fn,
        make_sample_fn,
        make_sample_labels_fn,
    )

    staging_dir = Path(staging_dir)
    model.save(str(staging_dir / "model.keras"))
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn in (
        ("sample", make_sample_fn(model)),
        ("sample_labels", make_sample_labels_fn(model)),
        ("reconstruct", make_reconstruct_fn(model)),
        ("reconstruct_partial", make_partial_reconstruct_fn(model)),
    ):
        if name.startswith("reconstruct"):  # images may come as float32 or float64
            fn = float_endpoint(fn, fn.input_signature)
        archive.add_endpoint(name, fn)
    archive.write_out(str(staging_dir / "saved_model"), verbose=False)
    size = data.image_size
    return {
        "image_size": size,
        "crop": data.crop,
        "patch": model.patch,
        "hcal_towers": data.hcal_towers,
        "grid": [model.grid_size, model.grid_size, model.cell_channels],
        "channels": list(CHANNELS),
        "labels": {"quark": 0, "gluon": 1, "unconditional": 2},
        "transform": data.transform,
        "reconstruct_args": ["images", "steps"],
        "endpoints": {
            "sample": "sample(n: int32, label: int32 (0 quark, 1 gluon, 2 unconditional), steps: int32, "
            f"seed: int64, guidance: float32 (1 = conditional), eta: float32 (0 DDIM .. 1 DDPM)) "
            f"-> (n, {size}, {size}, 3) float32 GeV",
            "sample_labels": "sample_labels(labels: (N,) int32, steps: int32, seed: int64, guidance: float32, "
            f"eta: float32) -> (N, {size}, {size}, 3) float32 GeV",
            "reconstruct": "reconstruct(images: (N, H, W, 3) float32 or float64 GeV with H, W >= "
            f"{size}, steps: int32) -> (N, H, W, 3) GeV; deterministic DDIM inversion of the central "
            f"{size}x{size} window, 0 GeV outside it",
            "reconstruct_partial": "reconstruct_partial(images, steps: int32, strength: float32 in (0, 1], "
            "seed: int64) -> same shape; SDEdit (seeded noise at t = strength, then DDIM)",
        },
    }
