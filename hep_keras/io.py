"""Writing outputs safely: one way to write a file or a directory so that a failure leaves nothing behind.

Every output of hep_keras (HDF5 files, compressed tables, exports, reconstruction directories) is written to a
hidden temporary name beside its target and renamed into place only when complete; on any exception (or
Ctrl-C) the temporary is removed and the target is untouched. Checks run before any work starts, so a
mistake in the output name fails fast with one :class:`~hep_keras.errors.OutputError` line.

Ground floor: imports nothing of hep_keras but :mod:`hep_keras.errors`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hep_keras.errors import OutputError


def unwritable_reason(directory: str | os.PathLike) -> str | None:
    """Why no file can be created in the existing ``directory``, or ``None`` when one can. Tried (a temporary
    file, removed at once), not only asked: ``os.access`` says yes to root on a read-only file system such as
    ``/proc``, and a long job would then fail only when it writes its result."""
    if not os.access(directory, os.W_OK):
        return "permission denied"
    try:
        with tempfile.NamedTemporaryFile(prefix=".write-test-", dir=directory):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


def ensure_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Create the directory ``path`` (and its parents) and check that files can be written in it; one
    :class:`OutputError` line naming it as ``what`` (e.g. "run directory") otherwise."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{path}: {what} is not writable ({err.strerror or err})") from None
    if reason := unwritable_reason(path):
        raise OutputError(f"{path}: {what} is not writable ({reason})")
    return path


def check_output_file(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate a file target before any work: not a directory, not existing (unless ``overwrite``), writable."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a directory, expected a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists (pass --overwrite to replace it)")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: directory {path.parent} does not exist")
    if reason := unwritable_reason(path.parent):
        raise OutputError(f"{path}: directory {path.parent} is not writable ({reason})")
    return path


def check_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Validate a directory target: an existing non-empty directory needs ``overwrite``; the parent must be
    creatable and writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputError(f"{path}: exists and is not empty; pass --overwrite or choose another output directory")
    ensure_writable_dir(path.parent, "output directory")
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The caller writes the temporary file (any library: h5py, numpy, ...). On any exception the temporary is
    deleted and ``path`` is unchanged; an :class:`OSError` from the rename becomes an :class:`OutputError`.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden staging directory beside ``path``; swap it in as ``path`` when the block succeeds.

    An existing ``path`` (the caller has checked ``overwrite``) is replaced only after the new content is
    complete. The staging directory gets the permissions of a directory made with the user's umask (not the
    0700 of :func:`tempfile.mkdtemp`), so a colleague can read a shared export.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    except OSError as err:
        raise OutputError(f"{path.parent}: cannot write the output directory ({err.strerror or err})") from None
    try:
        yield staging
        staging.chmod(0o777 & ~_umask())
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            staging.rename(path)
            shutil.rmtree(old)
        else:
            staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
