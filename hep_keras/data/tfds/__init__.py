"""TensorFlow Datasets for hep_keras: the ``quark_gluon`` builder and ``--data tfds:NAME[@DATA_DIR]`` inputs.

Build once from any HDF5 file in the hep_keras schema (the CMS open-data file or the shipped sample)::

    python -m hep_keras.data tfds quark-gluon_data-set_n139306.hdf5 --data-dir ~/tensorflow_datasets

then every command takes ``--data tfds:quark_gluon`` (``tfds:quark_gluon@DIR`` for another data directory;
default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). The input pipeline is pure graph (no
``tf.numpy_function``): it runs on TPU hosts and inside any ``tf.function``.
"""

from hep_keras.data.tfds.source import (
    DATASETS,
    TFDS_SPLITS,
    is_tfds,
    parse_tfds_spec,
    prepare_quark_gluon,
    tfds_images,
    tfds_info,
    tfds_read,
)

__all__ = [
    "DATASETS",
    "TFDS_SPLITS",
    "is_tfds",
    "parse_tfds_spec",
    "prepare_quark_gluon",
    "tfds_images",
    "tfds_info",
    "tfds_read",
]
