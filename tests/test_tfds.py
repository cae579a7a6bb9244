"""The ``quark_gluon`` TFDS builder and ``--data tfds:quark_gluon``: same events as the HDF5 splits, exact sparse
round trip, a pure-graph input pipeline, and one error line for an unknown dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from hep_keras.data import read_events, split_indices
from hep_keras.data.tfds import prepare_quark_gluon, tfds_images, tfds_info, tfds_read
from hep_keras.data.tfds.quark_gluon import QuarkGluon, SparseImage
from hep_keras.errors import DataError


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from conftest import write_jet_file

    root = tmp_path_factory.mktemp("tfds")
    source = write_jet_file(root / "qg.h5", n=60, size=16)
    prepare_quark_gluon(source, root / "data")
    return source, f"tfds:quark_gluon@{root / 'data'}"


def graph_ops(ds) -> set[str]:
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(ds._as_serialized_graph().numpy())
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops |= {node.op for node in function.node_def}
    return ops


def test_splits_hold_the_hdf5_split_events_exactly(built):
    source, spec = built
    info = tfds_info(spec)
    assert info["split_events"] == {"train": 48, "val": 6, "test": 6, "all": 60}
    assert info["image_shape"] == [16, 16, 3]
    for split in ("train", "val", "test"):
        got = tfds_read(spec, split, 100)
        want = read_events(source, split_indices(60, split, seed=0))
        order, want_order = np.argsort(got["m0"]), np.argsort(want["m0"])  # m0 = event index + 0.5
        np.testing.assert_array_equal(got["m0"][order], want["m0"][want_order])
        for key in ("X_jets", "y", "pt"):
            np.testing.assert_array_equal(got[key][order], want[key][want_order])  # exact: GeV floats


def test_pipeline_is_pure_graph_and_batches_like_jet_images(built):
    source, spec = built
    ds = tfds_images(spec, "train", 8, fields=("X_jets", "y"), crop=8)
    images, labels = next(iter(ds))
    assert images.shape == (8, 8, 8, 3) and images.dtype == tf.float32 and labels.dtype == tf.float32
    assert set(np.unique(labels.numpy())) <= {0.0, 1.0}
    ops = graph_ops(ds)
    assert {"DecodeCompressed", "ScatterNd"} <= ops
    assert not ops & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}
    from hep_keras.data import jet_images  # the control: the HDF5 reader goes through Python

    assert graph_ops(jet_images(source, "train", 8)) & {"PyFunc", "EagerPyFunc", "PyFuncStateless"}


@pytest.mark.parametrize("max_events", [None, 30])
def test_worker_shards_are_disjoint_and_cover_the_split(built, max_events):
    """``--strategy multi_worker``: each worker's shuffled pipeline holds its own half of the (first
    ``max_events``) training events; together exactly the one-worker pipeline's events."""
    _, spec = built

    def event_ids(**shard):
        ds = tfds_images(spec, "train", 7, fields=("m0",), shuffle=True, seed=3, max_events=max_events, **shard)
        return np.concatenate(list(ds.as_numpy_iterator()))  # m0 = event index + 0.5: one id per event

    whole = event_ids()
    shards = [event_ids(num_shards=2, shard_index=i) for i in range(2)]
    assert len(whole) == (max_events or 48) and len(np.unique(whole)) == len(whole)
    assert sorted(len(s) for s in shards) == [len(whole) // 2] * 2
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)), np.sort(whole))


def test_sparse_image_round_trip_with_long_zero_runs():
    feature = SparseImage((200, 200, 3))
    image = np.zeros((200, 200, 3), np.float32)
    image[0, 0, 0], image[-1, -1, -1], image[100, 3, 1] = 1.5, 2.25e-3, 7.0  # gaps > 2**16 pixels
    encoded = feature.encode_example(image)
    decoded = feature.decode_example({"count": tf.constant(encoded["count"]), "data": tf.constant(encoded["data"])})
    np.testing.assert_array_equal(decoded.numpy(), image)
    assert len(encoded["data"]) < 2000  # vs 480 kB dense


def test_dataset_card_has_provenance_units_and_citation(built):
    _, spec = built
    builder = QuarkGluon(config=QuarkGluon.BUILDER_CONFIGS[0])
    text = builder.info.description
    for needle in ("GeV", "Andrews", "open", "HCAL", "train", "validation", "test"):
        assert needle in text
    assert "1807.11916" in builder.info.citation


def test_unknown_or_unprepared_dataset_is_one_error_line(built, tmp_path):
    with pytest.raises(DataError, match="not prepared in"):
        tfds_info(f"tfds:quark_gluon@{tmp_path}")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1]), env.get("PYTHONPATH", "")])
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "hep_keras.fit", "vae", "--data", "tfds:unknown", "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: --data tfds:unknown: unknown TFDS dataset 'unknown'; hep_keras provides quark_gluon"]
    assert not run_dir.exists()


@pytest.mark.integration
def test_fit_and_reconstruct_from_tfds(built, tmp_path):
    from hep_keras.commands.fit import main as fit_main
    from hep_keras.commands.reconstruct import main as reconstruct_main

    _, spec = built
    tiny = ["--set", "widths=[8,8]", "--set", "latent_dim=2", "--set", "eval_events=4", "--set", "figure_events=1"]
    export = tmp_path / "export"
    args = ["vae", "--data", spec, "--epochs", "1", "--batch-size", "16", *tiny, "--verbose", "0"]
    assert fit_main([*args, "--run-dir", str(tmp_path / "run"), "--export-dir", str(export)]) == 0
    assert (tmp_path / "run" / "DONE").is_file()
    out = tmp_path / "reco"
    assert (
        reconstruct_main([str(export), "--data", spec, "--out", str(out), "--events", "12", "--eval-events", "4"]) == 0
    )
    import h5py

    with h5py.File(out / "reconstructed.h5") as handle:
        assert handle["X_jets"].shape == (12, 16, 16, 3)
