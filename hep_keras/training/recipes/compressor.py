"""Recipe ``compressor``: the 4 → 3 jet 4-vector autoencoder (:class:`~hep_keras.models.compressor.JetCompressor`).

Data: any jet table :func:`hep_keras.data.jets.read_jets` reads (``--data FILE`` or ``FILE.root:tree``;
default the shipped sample's ``jets/`` group), split randomly (seeded) into train/val/test by ``fractions``.
``max_events`` limits the number of *jets*. The export has the SavedModel endpoints ``encode`` (N, 4 physical →
N, 3 float32) and ``decode`` (N, 3 → N, 4 physical), used by ``python -m hep_keras.compress`` / ``decompress``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.errors import ConfigError
from hep_keras.training.config import check_choice, check_positive, check_widths
from hep_keras.training.recipes.base import DataBundle, data_path

NAME = "compressor"
MONITOR = "val_loss"
DEFAULTS: dict[str, Any] = {
    "batch_size": 256,
    "epochs": 100,
    "patience": 20,
    "eval_events": 200000,  # test jets used for metrics and figures
    "widths": [200, 100, 50],
    "latent_dim": 3,
    "activation": "gelu",  # measured better than tanh for the near-identity maps of pt, eta, phi
    "normalization": "standard",  # standard | custom | minmax
    "mass_offset": 1.0,  # GeV: the mass enters as log10(m + mass_offset)
    # pt, eta, phi, m weights of the normalised-space squared errors; ~1/goal^2 in normalised units, with the
    # mass nearly given up: 4 independent numbers do not fit into 3 (see docs/compressor.md)
    "loss_weights": [50.0, 250.0, 450.0, 0.02],
    "augment": True,  # random phi rotation and eta -> -eta of training jets (exact symmetries of pp collisions)
    "min_pt": None,  # GeV; keep jets with pt >= min_pt
    "columns": None,  # "pt=Jet_pt,eta=Jet_eta,phi=Jet_phi,m=Jet_mass" (default: detected)
    "allow_pickle": False,
    "min_mass": 1.0,  # GeV: jets below it are left out of the relative-mass-residual metric
    "reduce_lr_patience": 6,  # ReduceLROnPlateau (factor 0.5) on val_loss; 0 = off
}
VARIABLES = ("pt", "eta", "phi", "m")


def validate(config: dict[str, Any]) -> None:
    """Check the recipe's own keys."""
    from hep_keras.models.compressor import NORMALIZATIONS

    check_choice(config, "normalization", NORMALIZATIONS)
    check_positive(config, "latent_dim", "mass_offset", allow_none=False)
    check_widths(config)
    weights = config["loss_weights"]
    if len(weights) != 4 or any(not isinstance(w, int | float) or w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"config key 'loss_weights' must be 4 non-negative numbers (pt, eta, phi, m), got {weights}")
    if config["min_pt"] is not None and not isinstance(config["min_pt"], int | float):
        raise ConfigError(f"config key 'min_pt' must be a number of GeV, got {config['min_pt']!r}")


def split(n: int, fractions: list[float], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random (seeded) train/val/test index arrays of ``n`` rows; each non-empty split has >= 1 row."""
    order = np.random.default_rng(seed).permutation(n)
    n_train = max(1, int(round(fractions[0] * n)))
    n_val = int(round(fractions[1] * n))
    if fractions[2] == 0:
        n_val = n - n_train
    elif fractions[1] > 0:
        n_val = max(1, min(n_val, n - n_train - 1))
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def symmetry_augment(batch):
    """Rotate phi uniformly and flip the sign of eta with probability 1/2: ``(B, 4)`` → ``(B, 4)``.

    Both are exact symmetries of jets from symmetric pp collisions in a symmetric detector, so the model sees
    every (pt, m) with all (eta sign, phi) — the training set is effectively much larger.
    """
    import tensorflow as tf

    n = tf.shape(batch)[0:1]
    phi = tf.random.uniform(n, -np.pi, np.pi)
    sign = tf.where(tf.random.uniform(n) < 0.5, -1.0, 1.0)
    return tf.stack([batch[:, 0], batch[:, 1] * sign, phi, batch[:, 3]], axis=1)


@dataclasses.dataclass
class JetData(DataBundle):
    """Train/val streams of ``(batch, 4)`` jets plus the whole table and the split indices."""

    jets: np.ndarray = None  # (N, 4) float32 physical (pt GeV, eta, phi rad, m GeV)
    train_idx: np.ndarray = None
    test_idx: np.ndarray = None
    event: np.ndarray = None  # (N,) event number of each jet
    latent_dtype: str = "float32"  # chosen by evaluate(): float16 when it costs no precision


def load_data(config: dict[str, Any]) -> JetData:
    """Read the jet table, split it and build ``tf.data`` pipelines of ``(batch, 4)`` float32 physical jets."""
    import tensorflow as tf

    from hep_keras.data.jets import read_jets, split_tree
    from hep_keras.data.schema import fingerprint
    from hep_keras.training.distribute import distributed_input

    path = str(data_path(config))
    if path.startswith("tfds:"):
        raise ConfigError(
            f"--data {path}: the compressor trains on jet 4-vector tables (pt, eta, phi, m); the TFDS datasets "
            "hold jet images - pass a table (HDF5 jets/, parquet, npz, CSV, ROOT)"
        )
    table = read_jets(
        path,
        columns=config["columns"],
        allow_pickle=config["allow_pickle"],
        min_pt=config["min_pt"],
        max_jets=config["max_events"],
    )
    jets = table.four_vectors(np.float32)
    train_idx, val_idx, test_idx = split(len(jets), config["fractions"], config["seed"])
    if len(test_idx) == 0:
        test_idx = val_idx if len(val_idx) else train_idx
    if len(val_idx) == 0:
        val_idx = test_idx
    batch = config["batch_size"]

    def pipeline(rows: np.ndarray, shuffle: bool):
        def build(batch_size: int, num_shards: int, shard_index: int):  # a worker keeps every num_shards-th row
            shard = rows[shard_index::num_shards]
            ds = tf.data.Dataset.from_tensor_slices(jets[shard])
            if shuffle:
                ds = ds.shuffle(min(len(shard), 1_000_000), seed=config["seed"], reshuffle_each_iteration=True)
            ds = ds.batch(batch_size)
            if shuffle and config["augment"]:
                ds = ds.map(symmetry_augment, num_parallel_calls=tf.data.AUTOTUNE)
            return ds.prefetch(tf.data.AUTOTUNE)

        return distributed_input(build, batch, repeat=shuffle and bool(config["steps_per_epoch"]))

    info = {
        "path": path,
        "fingerprint": fingerprint(split_tree(path)[0]),
        "n_events": len(jets),
        "n_jets": len(jets),
        "n_train": len(train_idx),
        "n_val": len(val_idx),
        "n_test": len(test_idx),
        "variables": list(VARIABLES),
        "units": {"pt": "GeV", "eta": "", "phi": "rad", "m": "GeV"},
        "source": table.source,
    }
    return JetData(
        pipeline(train_idx, True),
        pipeline(val_idx, False),
        info,
        jets=jets,
        train_idx=train_idx,
        test_idx=test_idx,
        event=table.event,
        split_events={"train": len(train_idx), "val": len(val_idx)},
    )


def build_model(config: dict[str, Any], data: JetData):
    """Fit the normalisation on the training jets, build and compile the :class:`JetCompressor`."""
    import keras

    from hep_keras.models.compressor import JetCompressor, normalization_constants
    from hep_keras.training.distribute import resolve_jit_compile

    train = data.jets[data.train_idx]
    shift, scale = normalization_constants(config["normalization"], train, config["mass_offset"])
    model = JetCompressor(
        widths=config["widths"],
        latent_dim=config["latent_dim"],
        activation=config["activation"],
        normalization=config["normalization"],
        shift=shift,
        scale=scale,
        mass_offset=config["mass_offset"],
        loss_weights=config["loss_weights"],
    )
    optimizer = keras.optimizers.Adam(config["learning_rate"])
    model.compile(optimizer=optimizer, jit_compile=resolve_jit_compile(config["jit_compile"]))
    return model


def callbacks(config: dict[str, Any], run_dir: Path) -> list:
    """ReduceLROnPlateau: the last factor of precision comes from a smaller learning rate."""
    import keras

    if not config["reduce_lr_patience"]:
        return []
    return [keras.callbacks.ReduceLROnPlateau(MONITOR, factor=0.5, patience=config["reduce_lr_patience"], min_lr=1e-6)]


def reconstruct(model, jets: np.ndarray, latent_dtype: str = "float32", batch_size: int = 65536) -> np.ndarray:
    """Encode → (cast the latent to ``latent_dtype``) → decode, in batches; ``(N, 4)`` float64."""
    out = []
    for i in range(0, len(jets), batch_size):
        z = np.asarray(model.encode(jets[i : i + batch_size])).astype(latent_dtype).astype(np.float32)
        out.append(np.asarray(model.decode(z)))
    return np.concatenate(out).astype(np.float64)


def latent_precision(model, jets: np.ndarray, min_mass: float) -> dict[str, Any]:
    """Residual width with a float32 vs a float16 latent; recommend float16 when it costs < 5 % in each."""
    from hep_keras.evaluation.jet_residuals import residual_metrics

    widths = {}
    for dtype in ("float32", "float16"):
        metrics = residual_metrics(jets, reconstruct(model, jets, dtype), min_mass)
        widths[dtype] = {v: metrics[v]["std" if v in ("pt", "m") else "rms"] for v in VARIABLES}
    z_max = float(np.abs(np.asarray(model.encode(jets[:65536]))).max())
    ok = z_max < 6e4 and all(widths["float16"][v] <= 1.05 * widths["float32"][v] for v in VARIABLES)
    return {**widths, "latent_abs_max": z_max, "recommended": "float16" if ok else "float32"}


def evaluate(model, config: dict[str, Any], data: JetData, run_dir: Path) -> dict[str, Any]:
    """Residual metrics (relative pT/m, absolute eta/phi), W1 per variable and figures on the test jets."""
    from hep_keras.evaluation.jet_residuals import residual_metrics, write_figures

    jets = data.jets[data.test_idx[: config["eval_events"]]].astype(np.float64)
    restored = reconstruct(model, jets.astype(np.float32))
    metrics = residual_metrics(jets, restored, config["min_mass"])
    write_figures(jets, restored, Path(run_dir) / "figures", config["min_mass"])
    precision = latent_precision(model, jets.astype(np.float32), config["min_mass"])
    data.latent_dtype = precision["recommended"]
    return {
        "residuals": metrics,
        "latent_precision": precision,
        "n_test_jets": len(jets),
        "notes": [
            "pt, m: std of (restored - original)/original; eta, phi: RMS of restored - original (phi wrapped)",
            f"relative mass residual over jets with m >= {config['min_mass']} GeV",
        ],
    }


def export(model, config: dict[str, Any], data: JetData, staging_dir: Path) -> dict[str, Any]:
    """SavedModel with ``encode``/``decode`` endpoints + ``model.keras``; metadata for compress/decompress."""
    import keras
    import tensorflow as tf

    from hep_keras.export import KERAS_FILE, SAVED_MODEL_DIR, float_endpoint

    archive = keras.export.ExportArchive()
    archive.track(model)
    jets = tf.TensorSpec((None, 4), tf.float32, name="jets")
    latent = tf.TensorSpec((None, model.latent_dim), tf.float32, name="latent")
    archive.add_endpoint("encode", float_endpoint(model.encode, [jets]))  # float32 or float64 in
    archive.add_endpoint("decode", float_endpoint(model.decode, [latent]))
    archive.write_out(str(Path(staging_dir) / SAVED_MODEL_DIR), verbose=False)
    model.save(str(Path(staging_dir) / KERAS_FILE))
    return {
        "endpoints": {
            "encode": {
                "input": "(N, 4) float32 or float64 pt [GeV], eta, phi [rad], m [GeV]",
                "output": "(N, 3) float32",
            },
            "decode": {
                "input": f"(N, {model.latent_dim}) float32 or float64",
                "output": "(N, 4) float32 pt, eta, phi, m",
            },
        },
        "variables": list(VARIABLES),
        "units": {"pt": "GeV", "eta": "", "phi": "rad", "m": "GeV"},
        "latent_dim": model.latent_dim,
        "latent_dtype": data.latent_dtype,
        "normalization": {
            "name": model.normalization,
            "shift": model.shift,
            "scale": model.scale,
            "features": ["log10(pt)", "eta", "phi", f"log10(m + {model.mass_offset})"],
        },
        "phi": "fed as a number, output wrapped into [-pi, pi); loss on the wrapped difference",
    }
