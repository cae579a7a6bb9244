"""The classifier two-sample test against cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from hep_keras.evaluation.two_sample import classifier_two_sample_test


def test_two_halves_of_one_sample_are_indistinguishable():
    x = np.random.default_rng(0).normal(size=(800, 5)).astype("float32")
    result = classifier_two_sample_test(x[:400], x[400:], epochs=10, n_boot=20)
    assert result["auc"] == pytest.approx(0.5, abs=3 * result["auc_err_hanley_mcneil"] + 0.02)


def test_a_shifted_copy_is_separated():
    x = np.random.default_rng(1).normal(size=(400, 5)).astype("float32")
    result = classifier_two_sample_test(x, x + 3.0, epochs=10, n_boot=20)
    assert result["auc"] > 0.97
    assert result["n_train"] + result["n_test"] == 800
