"""``quark_gluon``: CMS open-data quark and gluon jet images as a TensorFlow Dataset.

Dataset card
------------
* **Content**: one jet per example. ``image`` float32 ``(S, S, 3)`` — energy in **GeV** per pixel of the
  Tracks (pT of charged tracks), ECAL and HCAL channels on a ``S × S`` grid of ECAL-crystal-sized pixels
  (Δη = Δφ ≈ 0.0174; HCAL towers are 5 × 5 crystals, upsampled) centred on the jet axis; ``S = 125`` for the
  CMS file. ``label``: 0 = quark, 1 = gluon. ``m0``: jet mass (GeV), ``pt``: jet transverse momentum (GeV).
* **Provenance**: the 139,306-jet file ``quark-gluon_data-set_n139306.hdf5`` of Andrews et al. (CMS 2012
  open simulation, Pythia 6 light-quark and gluon jets at √s = 8 TeV, pT ≈ 70–200 GeV, full CMS detector
  simulation), or any HDF5 file in the same schema (``X_jets``, ``m0``, ``pt``, ``y``), e.g. the sample shipped
  with hep_keras (Pythia 8 + FastJet with the detector approximation documented in hep_keras.data.simulate).
  The file is not downloadable here: place it in the manual directory.
* **Storage**: jet images are ~98 % zeros, so ``image`` is stored sparsely — the flat indices of the non-zero
  pixels (uint16 differences) and their float32 values, zlib-compressed — and densified in the input graph
  (``tf.io.decode_compressed`` + ``tf.scatter_nd``: no Python at read time). The TFRecord copy is about the
  size of the gzip HDF5 file instead of 26 GB of dense float32.
* **Splits**: ``train`` / ``validation`` / ``test`` = 80 / 10 / 10 % of the events, the seeded random split of
  :func:`hep_keras.data.split_indices` (seed 0), so the TFDS splits hold the same events as hep_keras's own
  ``train`` / ``val`` / ``test`` splits of the file.
* **Citation**: M. Andrews, M. Paulini, S. Gleyzer, B. Poczos, "End-to-End Physics Event Classification with
  CMS Open Data: Applying Image-Based Deep Learning to Detector Data for the Direct Classification of
  Collision Events at the LHC", Comput. Softw. Big Sci. 4 (2020) 6, arXiv:1807.11916.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

DESCRIPTION = __doc__
CITATION = """@article{Andrews:2018nwy,
  author = {Andrews, M. and Paulini, M. and Gleyzer, S. and Poczos, B.},
  title = {End-to-End Physics Event Classification with CMS Open Data},
  journal = {Comput. Softw. Big Sci.}, volume = {4}, pages = {6}, year = {2020},
  eprint = {1807.11916}, archivePrefix = {arXiv}}"""
CMS_FILE = "quark-gluon_data-set_n139306.hdf5"
SPLIT_NAMES = {"train": "train", "validation": "val", "test": "test"}
READ_EVENTS = 1024  # events read from the HDF5 file at a time while building


class SparseImage(tfds.features.FeatureConnector):
    """A float32 image stored as its non-zero pixels (zlib of uint16 index steps + float32 values).

    Decoding is graph-only: ``decode_compressed`` → ``decode_raw`` → cumulative sum of the index steps →
    ``scatter_nd`` into a dense ``shape`` tensor. Indices are flat over ``shape`` (C order); the step encoding
    needs ``prod(shape) <= 2**16 * (number of pixels)`` — always, since a step is < 2**16 unless 65,536
    zeros follow each other, which is handled by storing explicit zero-valued pixels.
    """

    def __init__(self, shape, doc=None):
        super().__init__(doc=doc)
        self._shape = tuple(int(s) for s in shape)

    def get_tensor_info(self):
        return tfds.features.TensorInfo(shape=self._shape, dtype=np.float32)

    def get_serialized_info(self):
        return {
            "count": tfds.features.TensorInfo(shape=(), dtype=np.int64),
            "data": tfds.features.TensorInfo(shape=(), dtype=tf.string),
        }

    def encode_example(self, image):
        flat = np.asarray(image, dtype=np.float32).reshape(-1)
        if flat.size != int(np.prod(self._shape)):
            raise ValueError(f"image of {flat.size} values does not match shape {self._shape}")
        index = np.flatnonzero(flat)
        # keep every gap below 2**16: insert explicit zero pixels into long runs of zeros
        gaps = np.diff(np.concatenate([[-1], index]))
        if gaps.size and gaps.max() >= 2**16:
            fill = np.arange(2**16 - 1, flat.size, 2**16 - 1)
            index = np.union1d(index, fill)
        steps = np.diff(np.concatenate([[-1], index])).astype("<u2")
        values = flat[index].astype("<f4")
        return {"count": np.int64(index.size), "data": zlib.compress(steps.tobytes() + values.tobytes(), 6)}

    def decode_example(self, tfexample_data):
        raw = tf.io.decode_compressed(tfexample_data["data"], compression_type="ZLIB")
        count = tf.cast(tfexample_data["count"], tf.int32)
        steps = tf.io.decode_raw(tf.strings.substr(raw, 0, 2 * count), tf.uint16, little_endian=True)
        values = tf.io.decode_raw(tf.strings.substr(raw, 2 * count, 4 * count), tf.float32, little_endian=True)
        index = tf.cumsum(tf.cast(steps, tf.int32)) - 1
        size = int(np.prod(self._shape))
        dense = tf.scatter_nd(index[:, None], values, [size])
        return tf.reshape(dense, self._shape)

    def to_json_content(self):
        return {"shape": list(self._shape)}

    @classmethod
    def from_json_content(cls, value):
        return cls(shape=value["shape"])


class QuarkGluonConfig(tfds.core.BuilderConfig):
    """``image_size``: side S of the square images of the input file (125 for the CMS file)."""

    def __init__(self, *, image_size: int = 125, **kwargs):
        super().__init__(**kwargs)
        self.image_size = int(image_size)


def config_for(image_size: int) -> QuarkGluonConfig:
    """The builder config for ``S × S`` images (``default`` for the CMS 125 × 125 file)."""
    if image_size == 125:
        return QuarkGluon.BUILDER_CONFIGS[0]
    return QuarkGluonConfig(name=f"s{image_size}", image_size=image_size, description=f"{image_size}x{image_size}")


class QuarkGluon(tfds.core.GeneratorBasedBuilder):
    """Quark/gluon jet images (GeV) built from an HDF5 file in the hep_keras schema; see the module docstring."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: sparse images, train/validation/test 80/10/10 (seed 0)."}
    BUILDER_CONFIGS = [QuarkGluonConfig(name="default", image_size=125, description="125x125 CMS jet images")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Place {CMS_FILE} (CERN open data, Andrews et al.) or any one HDF5 file in the hep_keras schema "
        "(X_jets, m0, pt, y) in the manual directory."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        size = self.builder_config.image_size
        return self.dataset_info_from_configs(
            description=DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": SparseImage((size, size, 3), doc="GeV per pixel: Tracks, ECAL, HCAL"),
                    "label": tfds.features.ClassLabel(names=["quark", "gluon"]),
                    "m0": tfds.features.Scalar(np.float32, doc="jet mass, GeV"),
                    "pt": tfds.features.Scalar(np.float32, doc="jet transverse momentum, GeV"),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://arxiv.org/abs/1807.11916",
            citation=CITATION,
        )

    def _split_generators(self, dl_manager):
        path = source_file(Path(dl_manager.manual_dir))
        return {name: self._generate_examples(path, split) for name, split in SPLIT_NAMES.items()}

    def _generate_examples(self, path: Path, split: str):
        from hep_keras.data.images import read_events, split_indices
        from hep_keras.data.schema import inspect_jet_file

        info = inspect_jet_file(path)
        if tuple(info.image_shape) != (self.builder_config.image_size,) * 2 + (3,):
            raise ValueError(
                f"{path}: images are {info.image_shape}, config {self.builder_config.name} expects "
                f"{self.builder_config.image_size}x{self.builder_config.image_size}x3"
            )
        index = split_indices(info.n_events, split, seed=0)
        for start in range(0, index.size, READ_EVENTS):
            rows = index[start : start + READ_EVENTS]
            arrays = read_events(path, rows)
            for k, event in enumerate(rows):
                yield (
                    int(event),
                    {
                        "image": arrays["X_jets"][k],
                        "label": int(arrays["y"][k]),
                        "m0": arrays["m0"][k],
                        "pt": arrays["pt"][k],
                    },
                )


def source_file(manual_dir: Path) -> Path:
    """The HDF5 file of the manual directory: the CMS file if present, else the only ``*.h5``/``*.hdf5``."""
    if (manual_dir / CMS_FILE).is_file():
        return manual_dir / CMS_FILE
    files = sorted(p for p in manual_dir.glob("*") if p.suffix in (".h5", ".hdf5") and p.is_file())
    if len(files) != 1:
        raise ValueError(f"{manual_dir}: expected {CMS_FILE} or exactly one .h5/.hdf5 file, found {len(files)}")
    return files[0]
