"""Tuning objectives that do not depend on the tuned weights, logged as Keras metrics after every epoch.

``val_loss`` contains the loss weights a search varies (``beta``, ``mass_weight``, ``loss_weights``), so two
trials' losses are not comparable. The objectives here measure the physics on a fixed set of validation
events instead, the same for every trial:

================== ============= ========= ======================================================================
objective          models        direction meaning
================== ============= ========= ======================================================================
val_emd_ratio      vae, ae       min       mean per-event EMD (calorimeter + tracks, rad) of the model's
                                           reconstructions / that of the mean-image baseline (< 1 beats it)
val_two_sample_auc diffusion     min       AUC of a gradient-boosted classifier telling generated from real
                                           events on high-level summaries (0.5 = indistinguishable)
val_mass_sigma     compressor    min       standard deviation of (m_restored - m) / m over jets with m >= min_mass
val_loss           all           min       the training loss on the validation split (loss-only searches)
================== ============= ========= ======================================================================

:class:`ObjectiveCallback` computes one of them in ``on_epoch_end`` and writes it into ``logs``; placed first in
the callback list, every later callback (History, EarlyStopping, Keras Tuner's own) sees it like any metric,
so Random, Bayesian and Hyperband search can all use it. Any other metric Keras logs can be an objective
too (``--objective val_shape_loss:min``); its direction must then be given.
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from typing import Any

import keras
import numpy as np

from hep_keras.errors import ConfigError

DIRECTIONS = ("min", "max")
#: fewest validation events of the two-sample AUC: its gradient-boosted trees need >= 20 events per leaf
MIN_TWO_SAMPLE_EVENTS = 32
_SAMPLERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> traced sampler, one per trial


@dataclasses.dataclass(frozen=True)
class Objective:
    """A named tuning objective: the Keras log key, its direction and the models that compute it."""

    name: str
    direction: str
    models: tuple[str, ...] | None  # None: any model (a metric Keras logs itself)
    description: str


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("val_emd_ratio", "min", ("vae", "ae"), "per-event EMD / mean-image baseline EMD"),
        Objective("val_two_sample_auc", "min", ("diffusion",), "real-vs-generated classifier AUC"),
        Objective("val_mass_sigma", "min", ("compressor",), "sigma of the relative jet-mass residual"),
        Objective("val_loss", "min", None, "validation loss (depends on loss weights)"),
    )
}
#: the default objective of each model
DEFAULT_OBJECTIVE = {"vae": "val_emd_ratio", "ae": "val_emd_ratio", "diffusion": "val_two_sample_auc"} | {
    "compressor": "val_mass_sigma"
}


def resolve_objective(text: str | None, model: str) -> Objective:
    """``--objective NAME[:min|max]`` → :class:`Objective`; the model's default when ``text`` is None.

    A name of :data:`OBJECTIVES` takes its own direction (an explicit one must agree); any other Keras metric
    name (``val_kl_loss``) needs the direction.
    """
    if text is None:
        return OBJECTIVES[DEFAULT_OBJECTIVE[model]]
    name, _, direction = text.partition(":")
    if direction and direction not in DIRECTIONS:
        raise ConfigError(f"--objective {text!r}: direction must be 'min' or 'max', got {direction!r}")
    known = OBJECTIVES.get(name)
    if known is None:
        if not direction:
            names = ", ".join(n for n, o in OBJECTIVES.items() if o.models is None or model in o.models)
            raise ConfigError(
                f"--objective {text!r}: not a built-in objective of {model} ({names}); "
                "give the direction of another Keras metric as NAME:min or NAME:max"
            )
        return Objective(name, direction, None, "Keras metric")
    if known.models is not None and model not in known.models:
        raise ConfigError(f"--objective {name}: computed for {', '.join(known.models)} only, not {model}")
    if direction and direction != known.direction:
        raise ConfigError(f"--objective {text!r}: {name} is always minimised/maximised as {known.direction!r}")
    return known


def take_events(dataset, n: int) -> Any:
    """The first ``n`` events of a batched ``tf.data`` dataset as numpy (tuples stay tuples)."""
    parts = []
    count = 0
    for batch in dataset.as_numpy_iterator():
        parts.append(batch)
        count += len(batch[0] if isinstance(batch, tuple) else batch)
        if count >= n:
            break
    if not parts:
        raise ConfigError("the validation split is empty; use more events or a larger validation fraction")
    if isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[i] for p in parts])[:n] for i in range(len(parts[0])))
    return np.concatenate(parts)[:n]


# ------------------------------------------------------------------------------------ what each objective needs
def emd_ratio_reference(val_images: np.ndarray, train_images: np.ndarray, thresholds) -> dict[str, Any]:
    """Validation images and the mean-image baseline's per-event EMD on them (computed once per search)."""
    from hep_keras.evaluation import fidelity as F

    baseline = F.mean_image_reconstruction(F.mean_image(train_images), val_images, thresholds)
    emd = F.emd_per_event(val_images, baseline)
    return {"images": val_images, "baseline_emd": float(np.mean(emd["calo"] + emd["tracks"]))}


def emd_ratio(model, reference: dict[str, Any], batch_size: int = 64) -> float:
    """Mean per-event EMD (calo + tracks) of the model's reconstructions / that of the mean-image baseline."""
    from hep_keras.evaluation import fidelity as F

    images = reference["images"]
    reconstructed = np.asarray(model.predict(images, batch_size=batch_size, verbose=0))
    emd = F.emd_per_event(images, reconstructed)
    return float(np.mean(emd["calo"] + emd["tracks"]) / max(reference["baseline_emd"], 1e-12))


def two_sample_auc(model, reference: dict[str, Any]) -> float:
    """AUC of real vs generated (same labels, seeded DDIM) validation events, 3-fold gradient boosting."""
    from hep_keras.evaluation import fidelity as F
    from hep_keras.models.diffusion import make_sample_labels_fn, sample_in_batches

    if model not in _SAMPLERS:
        _SAMPLERS[model] = make_sample_labels_fn(model)  # traced once per trial, not once per epoch
    generated = sample_in_batches(
        _SAMPLERS[model], reference["labels"], steps=reference["steps"], seed=reference["seed"]
    )
    return F.two_sample_auc_hl(reference["images"], generated, folds=3, seed=reference["seed"])["auc"]


def mass_sigma(model, reference: dict[str, Any]) -> float:
    """σ of the relative jet-mass residual of the validation jets (m >= min_mass) through the compressor."""
    from hep_keras.evaluation.jet_residuals import residuals
    from hep_keras.training.recipes.compressor import reconstruct

    jets = reference["jets"]
    restored = reconstruct(model, jets.astype(np.float32))
    return float(np.std(residuals(jets, restored, reference["min_mass"])["m"]))


def objective_reference(name: str, config: dict[str, Any], data, n_events: int) -> dict[str, Any]:
    """What :class:`ObjectiveCallback` needs for ``name``: validation events (+ baseline), taken once."""
    if name == "val_emd_ratio":
        val = take_events(data.val, n_events)
        train = take_events(data.train, max(4 * n_events, 256))
        return emd_ratio_reference(val, train, data.normalization.get("zero_thresholds"))
    if name == "val_two_sample_auc":
        images, labels = take_events(data.val, n_events)
        if len(images) < MIN_TWO_SAMPLE_EVENTS:
            raise ConfigError(
                f"{data.info['path']}: the validation split has {len(images)} events, the two-sample AUC objective "
                f"needs >= {MIN_TWO_SAMPLE_EVENTS} (use more events, --objective-events, or --objective val_loss)"
            )
        return {"images": images, "labels": labels.astype(np.int32), "steps": config["sample_steps"]} | {
            "seed": config["seed"]
        }
    if name == "val_mass_sigma":
        jets = take_events(data.val, n_events).astype(np.float64)
        return {"jets": jets, "min_mass": config["min_mass"]}
    return {}


COMPUTE = {"val_emd_ratio": emd_ratio, "val_two_sample_auc": two_sample_auc, "val_mass_sigma": mass_sigma}


class ObjectiveCallback(keras.callbacks.Callback):
    """Write ``logs[name]`` (and ``logs[name + "_seconds"]``) at the end of every epoch.

    Args:
        name: a key of :data:`COMPUTE`.
        reference: :func:`objective_reference` output (validation events, baseline), shared by all trials.
    """

    def __init__(self, name: str, reference: dict[str, Any]):
        super().__init__()
        self.name = name
        self.reference = reference

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        start = time.perf_counter()
        value = COMPUTE[self.name](self.model, self.reference)
        logs[self.name] = value if np.isfinite(value) else float("nan")
        logs[f"{self.name}_seconds"] = time.perf_counter() - start
