"""hep_keras models (one per module). Importing this package registers them all with Keras."""

from hep_keras.models.ae import JetImageAE
from hep_keras.models.compressor import JetCompressor
from hep_keras.models.diffusion import JetDiffusion
from hep_keras.models.vae import JetImageVAE

__all__ = ["JetCompressor", "JetDiffusion", "JetImageAE", "JetImageVAE"]
