"""``--data tfds:NAME[@DATA_DIR]``: the hep_keras TFDS datasets as ``tf.data`` pipelines (pure graph).

:func:`tfds_images` yields exactly what :func:`hep_keras.data.jet_images` yields (float32 images in GeV, labels
as 0.0 / 1.0, ``m0``/``pt`` in GeV), so recipes and commands switch source by the ``--data`` string only.
Shuffling keeps the *sparse* serialized events in the buffer (~5 kB each instead of 187 kB dense), files are
read in a shuffled order, and images are densified after the buffer.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hep_keras.errors import DataError

DATASETS = ("quark_gluon",)
#: hep_keras split names -> TFDS split names
TFDS_SPLITS = {"train": "train", "val": "validation", "test": "test", "all": "train+validation+test"}
SHUFFLE_EVENTS = 10_000  # sparse events in the shuffle buffer (~50 MB for CMS jets)
VERSION = "1.0.0"


def is_tfds(spec) -> bool:
    """True for a ``--data`` value of the form ``tfds:NAME[@DATA_DIR]``."""
    return isinstance(spec, str) and spec.startswith("tfds:")


def parse_tfds_spec(spec: str) -> tuple[str, Path]:
    """``(name, data_dir)`` of ``tfds:NAME[@DATA_DIR]``; data_dir defaults to ``$TFDS_DATA_DIR`` or
    ``~/tensorflow_datasets``. :class:`DataError` for an unknown name."""
    name, _, data_dir = spec[len("tfds:") :].partition("@")
    if name not in DATASETS:
        raise DataError(f"--data {spec}: unknown TFDS dataset {name!r}; hep_keras provides {', '.join(DATASETS)}")
    if not data_dir:
        data_dir = os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    return name, Path(data_dir).expanduser()


def _builder(spec: str):
    from hep_keras.data.tfds.quark_gluon import QuarkGluon, config_for

    name, data_dir = parse_tfds_spec(spec)
    prepared = sorted(p.parent.parent.name for p in (data_dir / name).glob(f"*/{VERSION}/dataset_info.json"))
    if not prepared:
        raise DataError(
            f"--data {spec}: {name} is not prepared in {data_dir}; "
            f"run: python -m hep_keras.data tfds FILE.h5 --data-dir {data_dir}"
        )
    config = "default" if "default" in prepared else prepared[0]
    size = 125 if config == "default" else int(config.lstrip("s"))
    return QuarkGluon(config=config_for(size), data_dir=str(data_dir))


def tfds_info(spec: str) -> dict[str, Any]:
    """Description of a prepared dataset: image shape, events per split, provenance (for run metadata)."""
    builder = _builder(spec)
    size = builder.builder_config.image_size
    splits = {name: int(builder.info.splits[tfds_name].num_examples) for name, tfds_name in TFDS_SPLITS.items()}
    return {
        "path": spec,
        "fingerprint": f"tfds:{builder.name}/{builder.builder_config.name}/{builder.version}",
        "n_events": splits["all"],
        "split_events": splits,
        "image_shape": [size, size, 3],
        "data_dir": str(builder.data_dir),
    }


def tfds_images(
    spec: str,
    split: str = "train",
    batch_size: int = 64,
    fields=("X_jets",),
    shuffle: bool | None = None,
    seed: int = 0,
    max_events: int | None = None,
    crop: int | None = None,
    drop_remainder: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
):
    """Batches of one split like :func:`hep_keras.data.jet_images` (``"val"`` is TFDS ``validation``).

    ``max_events`` keeps the first N events of the split (in the dataset's stored order); ``num_shards`` /
    ``shard_index`` keep one of ``num_shards`` disjoint, even slices of them (multi-worker). Pure graph:
    decoding is ``decode_compressed`` + ``scatter_nd``.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if split not in TFDS_SPLITS:
        raise DataError(f"{spec}: split must be one of {', '.join(TFDS_SPLITS)}; got {split!r}")
    builder = _builder(spec)
    shuffle = (split == "train") if shuffle is None else bool(shuffle)
    read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=4)
    ds = builder.as_dataset(
        split=_subsplit(builder, split, max_events, num_shards, shard_index),
        shuffle_files=shuffle,
        read_config=read_config,
        decoders={"image": tfds.decode.SkipDecoding()},
    )
    if max_events and split == "all":
        ds = ds.take(int(max_events))
    if shuffle:
        ds = ds.shuffle(SHUFFLE_EVENTS, seed=seed + 1, reshuffle_each_iteration=True)  # sparse events: small
    image_feature = builder.info.features["image"]
    size = builder.builder_config.image_size
    fields = (fields,) if isinstance(fields, str) else tuple(fields)

    def to_fields(example):
        out = []
        for field in fields:
            if field == "X_jets":
                image = image_feature.decode_example(example["image"])
                if crop:
                    offset = (size - crop) // 2
                    image = image[offset : offset + crop, offset : offset + crop, :]
                out.append(image)
            elif field == "y":
                out.append(tf.cast(example["label"], tf.float32))
            elif field in ("m0", "pt"):
                out.append(tf.cast(example[field], tf.float32))
            else:
                raise DataError(f"{spec}: no field {field!r} (fields: X_jets, y, m0, pt)")
        return out[0] if len(out) == 1 else tuple(out)

    ds = ds.map(to_fields, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    options = tf.data.Options()
    if num_shards > 1:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def _subsplit(builder, split: str, max_events: int | None, num_shards: int, shard_index: int):
    """The TFDS split instruction of one hep_keras split of ``builder``'s dataset: its first ``max_events``
    examples (``"all"``: the union, cut after reading), and of those the ``shard_index``-th of ``num_shards``
    even, disjoint slices (``tfds.even_splits``: every worker reads only its own records, whatever order the
    files are read in)."""
    import tensorflow_datasets as tfds

    name = TFDS_SPLITS[split]
    if max_events and split != "all" and int(max_events) < builder.info.splits[name].num_examples:
        name = f"{name}[:{int(max_events)}]"
    if num_shards > 1:
        name = tfds.even_splits(name, n=num_shards)[shard_index]
    return name


def tfds_read(spec: str, split: str, n: int, fields=("X_jets", "y", "m0", "pt"), crop=None) -> dict[str, np.ndarray]:
    """The first ``n`` events of a split as numpy arrays (evaluation), like :func:`hep_keras.data.read_events`."""
    fields = tuple(fields)
    batches = list(tfds_images(spec, split, 256, fields, shuffle=False, max_events=n, crop=crop).as_numpy_iterator())
    if not batches:
        return {f: np.zeros((0,), np.float32) for f in fields}
    if len(fields) == 1:
        batches = [(b,) for b in batches]
    return {f: np.concatenate([b[i] for b in batches]) for i, f in enumerate(fields)}


def prepare_quark_gluon(path, data_dir, overwrite: bool = False) -> dict[str, Any]:
    """Build ``quark_gluon`` in ``data_dir`` from the HDF5 file ``path`` (any file in the schema)."""
    import shutil

    import tensorflow_datasets as tfds

    from hep_keras.data.schema import inspect_jet_file
    from hep_keras.data.tfds.quark_gluon import QuarkGluon, config_for

    path = Path(path).resolve()
    info = inspect_jet_file(path)  # DataError for a file outside the schema
    height, width, _ = info.image_shape
    if height != width:
        raise DataError(f"{path}: quark_gluon needs square images, got {height}x{width}")
    builder = QuarkGluon(config=config_for(height), data_dir=str(data_dir))
    if Path(builder.data_dir).exists():
        if not overwrite:
            raise DataError(f"{builder.data_dir}: already prepared; pass --overwrite to rebuild")
        shutil.rmtree(builder.data_dir)
    with tempfile.TemporaryDirectory(prefix="quark_gluon-manual-") as manual:
        os.symlink(path, Path(manual) / path.name)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return {"data_dir": builder.data_dir, "config": builder.builder_config.name, "n_events": info.n_events}
