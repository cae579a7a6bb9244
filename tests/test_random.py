"""The models' stateless noise: uniform numbers strictly inside (0, 1), finite normals, the same under XLA."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from hep_keras.models.base import stateless_normal, stateless_uniform, uniform_from_bits


def test_extreme_bits_stay_inside_the_open_interval_and_give_finite_symmetric_normals():
    bits = tf.constant([0, 511, 512, 2**31, 2**32 - 1], dtype=tf.uint32)
    u = uniform_from_bits(bits).numpy().astype(np.float64)
    np.testing.assert_array_equal(u, [0.5 / 2**23, 0.5 / 2**23, 1.5 / 2**23, 0.5 + 0.5 / 2**23, 1 - 0.5 / 2**23])
    normal = np.sqrt(2.0) * tf.math.erfinv(2.0 * uniform_from_bits(bits) - 1.0).numpy()
    assert np.all(np.isfinite(normal)) and np.abs(normal).max() < 5.5
    assert normal[0] == -normal[-1]


def test_normal_noise_has_unit_moments_and_is_the_same_under_xla():
    seed = tf.constant([7, 3], tf.int64)
    x = stateless_normal((1 << 20,), seed).numpy().astype(np.float64)
    assert np.all(np.isfinite(x))
    assert abs(x.mean()) < 0.005 and abs(x.std() - 1) < 0.005  # 5 sigma of the sampling error for 2**20 draws
    assert abs(np.mean(x > 1.959964) - 0.025) < 0.001
    xla = tf.function(lambda s: stateless_uniform((1 << 20,), s), jit_compile=True)(seed).numpy()
    np.testing.assert_array_equal(xla, stateless_uniform((1 << 20,), seed).numpy())
