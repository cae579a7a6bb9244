"""Recipe for ``python -m hep_keras.fit ae``: the deterministic autoencoder (same backbone as the VAE)."""

from __future__ import annotations

from typing import Any

from hep_keras.training.recipes import vae as _vae

NAME = "ae"
MONITOR = _vae.MONITOR
DEFAULTS: dict[str, Any] = {k: v for k, v in _vae.DEFAULTS.items() if k not in ("beta", "kl_warmup_steps")}
validate = _vae.validate
load_data = _vae.load_data
callbacks = _vae.callbacks
evaluate = _vae.evaluate
export = _vae.export


def build_model(config, data):
    return _vae.build_model(config, data, variational=False)
