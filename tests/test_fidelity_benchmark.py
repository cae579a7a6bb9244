"""Smoke test of benchmarks/reconstruction_fidelity.py on its --tiny config: the table has its columns and rows."""

import importlib.util
import json
from pathlib import Path

import pytest

from hep_keras.evaluation.fidelity_report import COLUMNS

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reconstruction_fidelity.py"


@pytest.mark.integration
def test_fidelity_benchmark_tiny_writes_the_table(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("reconstruction_fidelity", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--tiny", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "reconstruction_fidelity.md").read_text()
    assert "| " + " | ".join(COLUMNS) + " |" in table
    results = json.loads((tmp_path / "reconstruction_fidelity.json").read_text())
    assert list(results["models"]) == ["vae", "ae", "mean image", "PCA", module.SEED000]
    assert results["models"]["mean image"]["emd_calo_vs_mean_image"] == 1.0
    assert results["models"]["vae"]["exact_by_construction"] == ["channel energies"]
    assert results["n_events"] == 16  # the test split of the first 160 events
    out = capsys.readouterr().out
    assert "Per-event EMD" in out and "EMD calo [rad]" in out
