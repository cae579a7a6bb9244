"""Deterministic convolutional autoencoder: the :class:`~hep_keras.models.vae.JetImageVAE` backbone without
the latent sampling and KL term."""

from __future__ import annotations

import keras

from hep_keras.models.vae import JetImageVAE


@keras.saving.register_keras_serializable(package="hep_keras")
class JetImageAE(JetImageVAE):
    """Plain autoencoder of ``(N, S, S, C)`` GeV jet images (same arguments as JetImageVAE minus the KL ones)."""

    def __init__(self, **kwargs):
        for key in ("variational", "beta", "kl_warmup_steps"):
            kwargs.pop(key, None)
        super().__init__(variational=False, beta=0.0, kl_warmup_steps=0, **kwargs)

    def get_config(self):
        config = super().get_config()
        for key in ("variational", "beta", "kl_warmup_steps"):
            config.pop(key)
        return config
