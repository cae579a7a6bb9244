"""Atomic model export and loading.

An export directory (``saved_models/<model>/``) holds ``saved_model/`` (TF SavedModel for inference, made with
``keras.export.ExportArchive``), ``model.keras`` (for further training) and ``metadata.json``. It is written
into a hidden staging directory beside the target and renamed into place only when complete: a failed export
never leaves a half-written model, and an existing export is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hep_keras.errors import DataError, OutputError
from hep_keras.io import atomic_directory, ensure_writable_dir

METADATA_FILE = "metadata.json"
SAVED_MODEL_DIR = "saved_model"
KERAS_FILE = "model.keras"


def check_export_target(out_dir: Path, overwrite: bool, option: str = "--export-dir") -> None:
    """Fail early (before any training) when ``out_dir`` exists and may not be replaced, or cannot be made;
    ``option`` is the command-line option that names ``out_dir`` (for the error line)."""
    if out_dir.exists() and not overwrite:
        raise OutputError(f"{out_dir}: an export already exists; pass --overwrite or choose another {option}")
    ensure_writable_dir(out_dir.parent, "export directory")


def versions() -> dict[str, str]:
    """Versions of the packages an export depends on."""
    import keras
    import tensorflow as tf

    import hep_keras

    return {"hep_keras": hep_keras.__version__, "keras": keras.__version__, "tensorflow": tf.__version__}


def write_atomically(
    out_dir: Path,
    writer: Callable[[Path], dict[str, Any]],
    metadata: dict[str, Any],
    overwrite: bool = False,
) -> Path:
    """Run ``writer(staging_dir)`` and move the result to ``out_dir`` with ``metadata.json`` added.

    ``writer`` returns extra metadata merged into ``metadata``. On any exception the staging directory is
    removed and ``out_dir`` is untouched.
    """
    out_dir = Path(out_dir)
    check_export_target(out_dir, overwrite)
    with atomic_directory(out_dir) as staging:
        extra = writer(staging) or {}
        meta = {
            **metadata,
            **extra,
            "versions": versions(),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    return out_dir


#: float dtypes every data input of an exported endpoint accepts (computation is float32 inside)
INPUT_FLOATS = ("float32", "float64")


def float_endpoint(fn, signature, data_args: tuple[int, ...] = (0,)):
    """A ``tf.function`` of ``fn`` traced once per dtype of :data:`INPUT_FLOATS` for the ``data_args`` inputs.

    ``signature`` lists one ``tf.TensorSpec`` per argument (float32 for the data arguments; a ``None`` batch
    dimension). The data arguments are cast to float32 before ``fn``; the SavedModel keeps one concrete
    function per dtype and a caller's float32 or float64 arrays select theirs. Every trace is XLA-compatible
    when ``fn`` is (the loaded endpoint can be wrapped in ``tf.function(jit_compile=True)``).
    """
    import tensorflow as tf

    @tf.function
    def endpoint(*args):
        args = [tf.cast(a, tf.float32) if i in data_args else a for i, a in enumerate(args)]
        return fn(*args)

    for dtype in INPUT_FLOATS:
        specs = [
            tf.TensorSpec(spec.shape, dtype if i in data_args else spec.dtype, name=spec.name)
            for i, spec in enumerate(signature)
        ]
        endpoint.get_concrete_function(*specs)
    return endpoint


def export_image_autoencoder(model, path: Path) -> None:
    """SavedModel of a :class:`~hep_keras.models.JetImageVAE` / ``JetImageAE`` at ``path``.

    Endpoints (GeV in and out; the normalisation is inside the graph; inputs float32 or float64, outputs
    float32, any batch size): ``encode(images (N,S,S,C)) -> code (N,K)``, ``decode(code (N,K)) -> images``,
    ``reconstruct(images) -> images`` with ``K = model.code_dim`` (latent mean, then the physics summary).
    """
    import keras
    import tensorflow as tf

    images = tf.TensorSpec([None, model.image_size, model.image_size, model.channels], tf.float32, name="images")
    code = tf.TensorSpec([None, model.code_dim], tf.float32, name="code")
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("encode", float_endpoint(model.encode, [images]))
    archive.add_endpoint("decode", float_endpoint(model.decode, [code]))
    archive.add_endpoint("reconstruct", float_endpoint(lambda x: model(x, training=False), [images]))
    archive.write_out(str(path), verbose=False)


def read_metadata(export_dir: Path) -> dict[str, Any]:
    """Read ``metadata.json`` of an export; :class:`DataError` when it is not an export directory."""
    export_dir = Path(export_dir)
    path = export_dir / METADATA_FILE
    if not (export_dir / SAVED_MODEL_DIR).is_dir() or not path.is_file():
        raise DataError(f"{export_dir}: not a hep_keras export (expected {SAVED_MODEL_DIR}/ and {METADATA_FILE})")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: unreadable export metadata ({err})") from None


def load_saved_model(export_dir: Path, models: tuple[str, ...] | None = None):
    """Load the SavedModel of an export for inference; returns ``(loaded, metadata)``.

    Needs only TensorFlow: no hep_keras model code or config is imported. ``models``: the model names the
    caller can use (e.g. ``("vae", "ae")``); an export of another model is one :class:`DataError` naming both.
    """
    import tensorflow as tf

    metadata = read_metadata(export_dir)
    if models is not None and metadata.get("model") not in models:
        raise DataError(
            f"{export_dir}: is a {metadata.get('model')!r} export; this command needs a {' or '.join(models)} export"
        )
    try:
        loaded = tf.saved_model.load(str(Path(export_dir) / SAVED_MODEL_DIR))
    except (OSError, ValueError, tf.errors.OpError) as err:
        raise DataError(f"{export_dir}: cannot load SavedModel ({str(err).splitlines()[0]})") from None
    return loaded, metadata


def load_keras_model(export_dir: Path):
    """Load ``model.keras`` of an export for further training (needs hep_keras importable)."""
    import keras

    import hep_keras.models  # noqa: F401  (registers the hep_keras classes)

    path = Path(export_dir) / KERAS_FILE
    if not path.is_file():
        raise DataError(f"{export_dir}: no {KERAS_FILE} in this export")
    return keras.saving.load_model(str(path))
