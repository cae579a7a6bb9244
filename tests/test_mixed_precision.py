"""``--mixed-precision`` (``mixed_float16``) for every model: a loss-scaled optimizer, finite losses, float32 outputs.

On this CPU float16 is emulated (slow, no speed-up); the test checks the plumbing users get on GPUs.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_compressor import toy_table, write_table

from hep_keras.commands.fit import build_parser, config_from_args
from hep_keras.training.recipes import get_recipe

TINY = {
    "vae": ["--set", "widths=[8,8]", "--set", "latent_dim=2"],
    "ae": ["--set", "widths=[8,8]", "--set", "latent_dim=2"],
    "diffusion": ["--set", "crop=8", "--set", "widths=[8,8]", "--set", "embed_dim=8", "--set", "norm_events=8"],
    "compressor": ["--set", "widths=[8]"],
}


@pytest.fixture
def mixed_policy():
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def outputs(model_name: str, model, batch):
    """Every user-facing output of a model on one batch."""
    if model_name == "compressor":
        z = model.encode(batch)
        return [model(batch), z, model.decode(z)]
    if model_name == "diffusion":
        images = batch[0]
        labels = tf.zeros((2,), tf.int32)
        return [model.sample(labels, steps=2), model.reconstruct(images[:2], steps=2)]
    code = model.encode(batch)
    return [model(batch), code, model.decode(code)]


@pytest.mark.parametrize("model_name", sorted(TINY))
def test_mixed_precision_trains_with_loss_scaling(model_name, mixed_policy, make_jet_file, tmp_path):
    data_file = (
        write_table(tmp_path / "jets.h5", toy_table(96))
        if model_name == "compressor"
        else make_jet_file("x.h5", n=24, size=16)
    )
    argv = [model_name, "--data", str(data_file), "--mixed-precision", "--batch-size", "8", *TINY[model_name]]
    recipe = get_recipe(model_name)
    config = config_from_args(build_parser().parse_args(argv), recipe)
    assert config["mixed_precision"] is True
    data = recipe.load_data(config)
    model = recipe.build_model(config, data)
    assert model.dtype_policy.name == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(data.train, validation_data=data.val, epochs=2, verbose=0)
    for key, values in history.history.items():
        assert np.all(np.isfinite(values)), (key, values)
    # the loss-scale state exists and was used: dynamic scale and its step counter are variables of the optimizer
    scale = float(model.optimizer.dynamic_scale.numpy())
    assert scale > 1.0 and np.isfinite(scale)
    assert int(model.optimizer.iterations.numpy()) > 0
    batch = next(iter(data.val))
    for out in outputs(model_name, model, batch):
        assert out.dtype == tf.float32
        assert np.all(np.isfinite(np.asarray(out)))
