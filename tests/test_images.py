"""Streaming pipeline: values, splits, ordering, variants and read-time NaN detection."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hep_keras.data import SPLITS, data_errors, jet_images, read_events, split_indices
from hep_keras.errors import ConfigError, DataError


def _events(ds, fields=1):
    """Event indices encoded in pixel [0, 0, 0] (= index + 1) of every yielded image, in order."""
    out = []
    for batch in ds:
        images = batch if fields == 1 else batch[0]
        out.append(images[:, 0, 0, 0].numpy() - 1)
    return np.concatenate(out).astype(np.int64)


# ------------------------------------------------------------------------------------------------ splits
def test_split_indices_disjoint_covering_deterministic():
    parts = {s: split_indices(1001, s, seed=3) for s in ("train", "val", "test")}
    assert [len(p) for p in parts.values()] == [801, 100, 100]
    union = np.concatenate(list(parts.values()))
    assert np.array_equal(np.sort(union), np.arange(1001))
    for part in parts.values():
        assert part.dtype == np.int64 and np.all(np.diff(part) > 0)
    assert np.array_equal(parts["val"], split_indices(1001, "val", seed=3))
    assert not np.array_equal(parts["val"], split_indices(1001, "val", seed=4))
    assert np.array_equal(split_indices(7, "all"), np.arange(7))
    assert SPLITS == ("train", "val", "test", "all")


@pytest.mark.parametrize("bad", [{"split": "dev"}, {"fractions": (0.5, 0.5, 0.5)}, {"fractions": (1.0, 0.0)}])
def test_split_indices_rejects(bad):
    with pytest.raises(ConfigError):
        split_indices(10, **{"split": "train", **bad})


# ------------------------------------------------------------------------------------------------ values
def test_values_match_h5py_and_labels_stay_with_images(make_jet_file):
    path = make_jet_file("v.h5", n=50)
    ds = jet_images(path, split="val", batch_size=4, fields=("X_jets", "y", "m0", "pt"))
    assert ds.cardinality().numpy() == 2
    batches = list(ds)
    images = np.concatenate([b[0].numpy() for b in batches])
    y, m0, pt = (np.concatenate([b[i].numpy() for b in batches]) for i in (1, 2, 3))
    idx = split_indices(50, "val")
    with h5py.File(path) as handle:
        np.testing.assert_array_equal(images, handle["X_jets"][idx])
        np.testing.assert_array_equal(y, handle["y"][idx])
        np.testing.assert_array_equal(m0, handle["m0"][idx])
        np.testing.assert_array_equal(pt, handle["pt"][idx])
    assert all(b[0].dtype.name == "float32" and b[1].dtype.name == "float32" for b in batches)


def test_train_shuffled_labels_intact(make_jet_file):
    path = make_jet_file("t.h5", n=64)
    ds = jet_images(path, split="train", batch_size=8, fields=("X_jets", "y", "m0"))
    for images, y, m0 in ds:
        event = images[:, 0, 0, 0].numpy() - 1
        np.testing.assert_array_equal(y.numpy(), event % 2)
        np.testing.assert_array_equal(m0.numpy(), event + 0.5)
        np.testing.assert_array_equal(images[:, 8, 8, 1].numpy(), event + 1000)


def test_single_field_yields_tensor(make_jet_file):
    ds = jet_images(make_jet_file(), split="all", batch_size=16)
    batch = next(iter(ds))
    assert tuple(batch.shape) == (16, 16, 16, 3) and batch.dtype.name == "float32"


def test_splits_sizes_disjoint_union(make_jet_file):
    path = make_jet_file("s.h5", n=57)
    seen = {s: _events(jet_images(path, split=s, batch_size=10)) for s in ("train", "val", "test")}
    for split, events in seen.items():
        assert np.array_equal(np.sort(events), split_indices(57, split))
    union = np.concatenate(list(seen.values()))
    assert len(union) == 57 and len(np.unique(union)) == 57
    assert np.array_equal(_events(jet_images(path, split="all", batch_size=10)), np.arange(57))


def test_order_deterministic_per_seed_and_epoch(make_jet_file):
    path = make_jet_file("o.h5", n=120)

    def order(seed, epochs=1):
        ds = jet_images(path, split="train", batch_size=8, seed=seed, fractions=(1.0, 0.0, 0.0))
        return [_events(ds) for _ in range(epochs)]

    first, second = order(0, epochs=2)
    assert np.array_equal(first, order(0)[0])
    assert not np.array_equal(first, second)  # reshuffled each epoch
    assert np.array_equal(np.sort(first), np.sort(second))
    assert not np.array_equal(first, np.arange(120))  # shuffled
    other = order(1)[0]
    assert not np.array_equal(first, other)


def test_unshuffled_is_file_order(make_jet_file):
    path = make_jet_file("u.h5", n=40)
    events = _events(jet_images(path, split="train", batch_size=8, shuffle=False))
    assert np.array_equal(events, split_indices(40, "train"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dtype": "float64"},
        {"chunks": None, "compression": None},
        {"compression": "lzf"},
        {"chunks": (3, 16, 16, 3)},
        {"chunks": (20, 4, 4, 3)},
        {"shuffle": True},
        {"chunks": (40, 16, 16, 3)},  # one chunk per block, partial last chunk
        {"shuffle": True, "dtype": "float64", "chunks": (5, 16, 16, 3)},
        {"compression": None},
    ],
)
def test_file_variants(make_jet_file, kwargs):
    """Every storage layout gives the h5py values (gzip chunks of whole events take the zlib fast path)."""
    path = make_jet_file("var.h5", n=45, **kwargs)
    ds = jet_images(path, split="all", batch_size=7, fields=("X_jets", "y"))
    batches = list(ds)
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    assert images.dtype == np.float32 and [len(b[0]) for b in batches] == [7] * 6 + [3]
    with h5py.File(path) as handle:
        np.testing.assert_array_equal(images, handle["X_jets"][()].astype(np.float32))
        np.testing.assert_array_equal(labels, handle["y"][()])
    val = np.concatenate([b.numpy() for b in jet_images(path, split="val", batch_size=2)])
    np.testing.assert_array_equal(val, read_events(path, split_indices(45, "val"), fields=("X_jets",))["X_jets"])


def test_n_smaller_than_batch(make_jet_file):
    path = make_jet_file("small.h5", n=5)
    batches = list(jet_images(path, split="all", batch_size=64))
    assert len(batches) == 1 and batches[0].shape[0] == 5
    with pytest.raises(DataError, match=r"small\.h5.*5 events, fewer than one batch of 64"):
        jet_images(path, split="all", batch_size=64, drop_remainder=True)


def test_cardinality_and_drop_remainder(make_jet_file):
    path = make_jet_file("c.h5", n=50)
    assert jet_images(path, split="all", batch_size=8).cardinality().numpy() == 7
    ds = jet_images(path, split="all", batch_size=8, drop_remainder=True)
    assert ds.cardinality().numpy() == 6 and all(b.shape[0] == 8 for b in ds)


def test_max_events_crop_repeat(make_jet_file):
    path = make_jet_file("m.h5", n=50)
    events = _events(jet_images(path, split="all", batch_size=8, max_events=20))
    assert np.array_equal(events, np.arange(20))
    assert jet_images(path, split="all", batch_size=10, max_events=0).cardinality().numpy() == 5
    batch = next(iter(jet_images(path, split="all", batch_size=4, crop=8, shuffle=False)))
    assert tuple(batch.shape) == (4, 8, 8, 3)
    np.testing.assert_array_equal(batch[:, 4, 4, 1].numpy(), np.arange(4) + 1000)  # centre kept
    endless = jet_images(path, split="train", batch_size=16, repeat=True)
    assert len(list(endless.take(10))) == 10
    with pytest.raises(ConfigError):
        jet_images(path, crop=17)


def test_shards_partition_the_split(make_jet_file):
    path = make_jet_file("sh.h5", n=100)
    parts = [_events(jet_images(path, split="all", batch_size=8, num_shards=2, shard_index=i)) for i in (0, 1)]
    assert len(np.intersect1d(*parts)) == 0
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(100))


def test_nan_detected_while_reading(make_jet_file):
    path = make_jet_file("nan.h5", n=40)
    with h5py.File(path, "r+") as handle:
        handle["X_jets"][21, 5, 5, 0] = np.inf
    ds = jet_images(path, split="all", batch_size=8)  # building the dataset does not scan images
    with pytest.raises(DataError, match=r"nan\.h5.*X_jets.*NaN/Inf.*events 21 and 21"), data_errors():
        for _ in ds:
            pass


def test_data_errors_passes_other_errors_through():
    import tensorflow as tf

    with pytest.raises(tf.errors.InvalidArgumentError), data_errors():
        raise tf.errors.InvalidArgumentError(None, None, "something else")


def test_input_context_shards(make_jet_file):
    import tensorflow as tf

    path = make_jet_file("ctx.h5", n=200)  # chunks of 8 -> blocks of 64 events: 0-63, 64-127, 128-191, 192-199
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    events = _events(jet_images(path, split="all", batch_size=8, input_context=context))
    assert np.array_equal(events, np.r_[64:128, 192:200])
    assert ds_options_policy(jet_images(path, split="all", input_context=context)) == "OFF"
    assert ds_options_policy(jet_images(path, split="all")) == "DATA"


def ds_options_policy(ds) -> str:
    return ds.options().experimental_distribute.auto_shard_policy.name


def test_missing_field(make_jet_file):
    with pytest.raises(DataError, match="missing dataset 'eta'"):
        jet_images(make_jet_file("f.h5"), fields=("X_jets", "eta"))


# ------------------------------------------------------------------------------------------------ read_events
def test_read_events_any_order(make_jet_file):
    path = make_jet_file("r.h5", n=45, chunks=(4, 16, 16, 3))
    idx = np.array([44, 3, 3, 17, 0])
    got = read_events(path, idx)
    with h5py.File(path) as handle:
        np.testing.assert_array_equal(got["X_jets"], np.stack([handle["X_jets"][i] for i in idx]))
        np.testing.assert_array_equal(got["y"], handle["y"][()][idx])
    assert set(got) == {"X_jets", "y", "m0", "pt"}
    cropped = read_events(path, [1, 2], fields=("X_jets",), crop=10)
    assert cropped["X_jets"].shape == (2, 10, 10, 3)
    with pytest.raises(DataError, match="event indices"):
        read_events(path, [45])
