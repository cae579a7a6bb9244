"""Streaming ``tf.data`` pipeline over jet-image HDF5 files.

How the reader works (and why):

* The real file is gzip-compressed in large chunks along the event axis, so reading one event decompresses a
  whole chunk. The reader therefore reads **blocks**: whole HDF5 chunk rows along axis 0 (grouped to at least
  ~64 events; 64 events for contiguous files), each block once per epoch, through one open ``h5py.File`` per
  reader whose chunk cache (``rdcc_nbytes``) holds a full chunk row.
* Gzip (deflate, optionally + shuffle) chunks that span whole events are fetched raw with
  ``read_direct_chunk`` and inflated with :mod:`zlib`, which releases the GIL, so ``num_parallel_reads``
  blocks decompress at the same time (HDF5 itself runs under h5py's global lock). Other layouts (lzf,
  contiguous, chunks split across pixels) are read through h5py.
* A **split** (:func:`split_indices`) is a seeded random subset of event indices, so every split touches
  (almost) every block: reading ``"val"`` (10 %) decompresses about as much as reading ``"all"``. This keeps
  splits statistically clean (no correlation with file order) at the price of I/O; when evaluation speed
  matters, read the split once with :func:`read_events` and keep it, or write it to its own file.
* Shuffling (default for ``"train"``): the block order is shuffled every epoch (seeded: deterministic, yet
  different each epoch), consecutive shuffled blocks are grouped into *windows* of ``shuffle_buffer`` events
  (rounded up to whole blocks; default ~64 MiB of images, e.g. 4 blocks of 100 CMS events) and the events of
  a window are permuted while it is assembled — one copy, like the unshuffled path, instead of unbatch →
  shuffle buffer → batch (two more copies and a 256 MiB buffer). A batch thus holds events of a few random
  blocks of the file, in random order; every event is seen once per epoch. Without shuffling, events come
  in file order, i.e. in ``split_indices`` order.
* Memory is flat in N: apart from the split index array (8 bytes per event of the split) the pipeline holds a
  few blocks, the shuffle buffer and the prefetched batches (see ``benchmarks/README.md``).
* NaN/Inf in the images are detected block by block while reading (one reduction per block) and raise
  :class:`~hep_keras.errors.DataError` naming the file and the event range. Inside ``tf.data`` it surfaces as
  a ``tf.errors.InvalidArgumentError`` whose message contains that line; wrap the loop (or ``model.fit``) in
  :func:`data_errors` to get the :class:`DataError` back.
* Distribution: by default the dataset carries ``AutoShardPolicy.DATA`` (every worker reads everything and
  keeps its share of batches; right for ``MirroredStrategy`` and fine for a few workers). For multi-worker
  training over big files pass ``num_shards``/``shard_index`` (or ``input_context`` from
  ``strategy.distribute_datasets_from_function``): blocks are then dealt out to workers (block ``b`` goes to
  shard ``b % num_shards``), each worker decompresses only its own blocks, and auto-sharding is switched off.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hep_keras.data.schema import (
    IMAGE_KEY,
    REQUIRED_KEYS,
    JetFileInfo,
    check_finite_block,
    inspect_jet_file,
    open_jet_file,
)
from hep_keras.errors import ConfigError, DataError

SPLITS = ("train", "val", "test", "all")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
SHUFFLE_BUFFER_BYTES = 64 * 2**20
"""Default shuffle-window budget: ``shuffle_buffer=None`` mixes ~this many bytes of events (100..10,000)."""


# ----------------------------------------------------------------------------------------------------- splits
def split_indices(
    n_events: int,
    split: str = "train",
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> np.ndarray:
    """Event indices of one split: sorted ``np.int64`` array.

    A seeded permutation of ``range(n_events)`` is cut at ``round(cumsum(fractions) * n_events)`` into
    train / val / test: the three are disjoint, their union is ``range(n_events)``, and the result depends
    only on ``(n_events, fractions, seed)``. ``split="all"`` returns ``arange(n_events)``.
    """
    _check_split(split)
    fractions = _check_fractions(fractions)
    n_events = int(n_events)
    if n_events < 0:
        raise ConfigError(f"n_events must be >= 0, got {n_events}")
    if split == "all":
        return np.arange(n_events, dtype=np.int64)
    bounds = np.round(np.cumsum(fractions) * n_events).astype(np.int64)
    bounds[-1] = n_events
    start, stop = ([0, *bounds[:-1]][SPLITS.index(split)], bounds[SPLITS.index(split)])
    perm = np.random.default_rng(seed).permutation(n_events)
    return np.sort(perm[start:stop]).astype(np.int64)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or min(values) < 0 or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"fractions must be 3 non-negative numbers (train, val, test) summing to 1; got {values}")
    return values


# ----------------------------------------------------------------------------------------------- block plan
@dataclass(frozen=True)
class _BlockPlan:
    """Which rows of which chunk-aligned blocks to read.

    ``index`` is the sorted array of wanted event indices (``None`` = every event below ``n_events``).
    Block ``b`` covers events ``[b * block_events, min((b + 1) * block_events, n_events))``.
    """

    n_events: int
    block_events: int
    index: np.ndarray | None

    @property
    def n_blocks(self) -> int:
        return -(-self.n_events // self.block_events)

    def counts(self) -> np.ndarray:
        """Number of wanted events in every block, shape ``(n_blocks,)``."""
        starts = np.arange(self.n_blocks, dtype=np.int64) * self.block_events
        stops = np.minimum(starts + self.block_events, self.n_events)
        if self.index is None:
            return stops - starts
        return np.searchsorted(self.index, stops) - np.searchsorted(self.index, starts)

    def bounds(self, block: int) -> tuple[int, int]:
        start = int(block) * self.block_events
        return start, min(start + self.block_events, self.n_events)

    def rows(self, block: int) -> tuple[int, int, np.ndarray | None]:
        """``(start, stop, local_rows)``; ``local_rows`` is ``None`` when every row of the block is wanted."""
        start, stop = self.bounds(block)
        if self.index is None:
            return start, stop, None
        lo, hi = np.searchsorted(self.index, [start, stop])
        if hi - lo == stop - start:
            return start, stop, None
        return start, stop, self.index[lo:hi] - start


def _cache_bytes(dset: h5py.Dataset) -> int:
    """Chunk-cache size holding one full chunk row of ``dset`` (plus slack), at least 4 MiB."""
    if dset.chunks is None:
        return 4 * 2**20
    row = dset.chunks[0] * int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize
    return max(4 * 2**20, int(row * 1.25) + 2**20)


_DEFLATE, _SHUFFLE = h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE


def _python_filters(dset: h5py.Dataset) -> tuple[int, ...] | None:
    """Filter pipeline of ``dset`` if its chunks can be decoded in Python, else ``None``.

    Decodable: chunks spanning whole events (``chunks[1:] == shape[1:]``), native byte order, filters
    deflate or shuffle + deflate. Decoding them with :func:`zlib.decompress` (which releases the GIL) instead of
    inside HDF5 (which holds h5py's global lock) lets several blocks decompress in parallel threads.
    """
    if dset.chunks is None or tuple(dset.chunks[1:]) != tuple(dset.shape[1:]) or not dset.dtype.isnative:
        return None
    plist = dset.id.get_create_plist()
    filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
    return filters if filters in ((_DEFLATE,), (_SHUFFLE, _DEFLATE)) else None


def _decode_chunk(dset: h5py.Dataset, first: int, filters: tuple[int, ...]) -> np.ndarray | None:
    """The chunk starting at event ``first``, decoded in Python; ``None`` if it must go through HDF5."""
    itemsize = dset.dtype.itemsize
    nbytes = int(np.prod(dset.chunks, dtype=np.int64)) * itemsize
    try:
        mask, raw = dset.id.read_direct_chunk((first,) + (0,) * (dset.ndim - 1))
        if mask != 0:  # some filter was skipped when writing this chunk
            return None
        data = zlib.decompress(raw, bufsize=nbytes)
    except (OSError, KeyError, RuntimeError, ValueError, zlib.error):
        return None
    if len(data) != nbytes:
        return None
    values = np.frombuffer(data, dtype=np.uint8)
    if _SHUFFLE in filters:  # HDF5 shuffle stores byte 0 of every value, then byte 1, ...
        values = np.ascontiguousarray(values.reshape(itemsize, -1).T)
    return values.view(dset.dtype).reshape(dset.chunks)


def _read_rows(dset: h5py.Dataset, start: int, stop: int, filters: tuple[int, ...] | None) -> np.ndarray:
    """Events ``[start, stop)`` of ``dset`` as stored (dtype of the file); chunk by chunk when decodable."""
    if filters is None:
        return dset[start:stop]
    rows = dset.chunks[0]
    if start % rows == 0 and stop - start <= rows:  # one chunk: no copy
        chunk = _decode_chunk(dset, start, filters)
        return dset[start:stop] if chunk is None else chunk[: stop - start]
    out = np.empty((stop - start, *dset.shape[1:]), dtype=dset.dtype)
    for first in range(start - start % rows, stop, rows):
        lo, hi = max(first, start), min(first + rows, stop)
        chunk = _decode_chunk(dset, first, filters)
        out[lo - start : hi - start] = dset[lo:hi] if chunk is None else chunk[lo - first : hi - first]
    return out


class _BlockReader:
    """Reads the wanted rows of one block from an open ``h5py.File`` (opened lazily, once per reader).

    Outputs float32 arrays, one per field: images ``(k, H', W', 3)`` (centrally cropped to ``crop``), other
    fields ``(k,) + trailing shape``, where ``k`` is the number of wanted events in the block. Thread-safe:
    ``tf.data`` may call it from several threads (``num_parallel_reads``).
    """

    def __init__(self, path: Path, fields: tuple[str, ...], plan: _BlockPlan, crop: int | None, cache_bytes: int):
        self.path = path
        self.fields = fields
        self.plan = plan
        self.crop = crop
        self.cache_bytes = cache_bytes
        self._handle: h5py.File | None = None
        self._datasets: list[tuple[h5py.Dataset, tuple[int, ...] | None]] = []
        self._lock = threading.Lock()

    def _open(self) -> list[tuple[h5py.Dataset, tuple[int, ...] | None]]:
        with self._lock:
            if self._handle is None:
                self._handle = open_jet_file(self.path, cache_bytes=self.cache_bytes)
                datasets = [self._handle[field] for field in self.fields]
                self._datasets = [(dset, _python_filters(dset)) for dset in datasets]
            return self._datasets

    def _raw(self, block) -> tuple[list[np.ndarray], np.ndarray]:
        """Per field the block's rows as stored (may be views of decompressed bytes, cropped, not yet subset),
        the local row numbers wanted and their file event indices."""
        start, stop, rows = self.plan.rows(int(block))
        local = np.arange(stop - start) if rows is None else rows
        values = []
        for field, (dset, filters) in zip(self.fields, self._open(), strict=True):
            raw = _read_rows(dset, start, stop, filters)
            values.append(_central_crop(raw, self.crop) if field == IMAGE_KEY else raw)
        return values, local, local + start

    def __call__(self, block) -> list[np.ndarray]:
        raw, local, events = self._raw(block)
        whole = len(local) == (len(raw[0]) if raw else 0)
        out = []
        for field, values in zip(self.fields, raw, strict=True):
            values = values if whole else values[local]
            check_finite_block(self.path, field, values, events)
            # an owned, writable copy: never hand TensorFlow memory that still belongs to a zlib bytes object
            out.append(np.array(values, dtype=np.float32, order="C", copy=True))
        return out

    def read_window(self, blocks, seed) -> list[np.ndarray]:
        """The wanted rows of several blocks in a random order, gathered straight into the output (one copy
        per field, like :meth:`__call__`).

        The permutation is seeded by ``seed`` (drawn per window and epoch from the pipeline's seed) and the block
        ids: reproducible for a given seed, different every epoch.
        """
        blocks = [int(b) for b in np.asarray(blocks).ravel()]
        parts = [self._raw(block) for block in blocks]
        sources = [(k, int(row)) for k, (_, local, _) in enumerate(parts) for row in local]
        events = np.concatenate([part[2] for part in parts])
        order = np.random.default_rng([int(seed) % 2**63, *blocks]).permutation(len(sources))
        out = []
        for f, field in enumerate(self.fields):
            first = parts[0][0][f]
            target = np.empty((len(sources), *first.shape[1:]), dtype=np.float32)
            for i, j in enumerate(order):
                k, row = sources[j]
                target[i] = parts[k][0][f][row]
            check_finite_block(self.path, field, target, events[order])
            out.append(target)
        return out

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None
                self._datasets = []

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()


def _central_crop(images: np.ndarray, crop: int | None) -> np.ndarray:
    """Central ``crop x crop`` window of ``(k, H, W, C)`` images (offset ``(H - crop) // 2``)."""
    if crop is None:
        return images
    h0 = (images.shape[1] - crop) // 2
    w0 = (images.shape[2] - crop) // 2
    return images[:, h0 : h0 + crop, w0 : w0 + crop, :]


def _check_crop(crop: int | None, info: JetFileInfo) -> int | None:
    if crop is None:
        return None
    h, w, _ = info.image_shape
    if int(crop) != crop or not 1 <= crop <= min(h, w):
        raise ConfigError(f"crop must be an integer in [1, {min(h, w)}] for {info.path} ({h}x{w}); got {crop}")
    return int(crop)


def _check_fields(fields: Sequence[str]) -> tuple[str, ...]:
    fields = (fields,) if isinstance(fields, str) else tuple(fields)
    if not fields or len(set(fields)) != len(fields):
        raise ConfigError(f"fields must be a non-empty list of distinct dataset names; got {fields}")
    return fields


def _inspect_for(path, fields: tuple[str, ...]) -> JetFileInfo:
    require = tuple(dict.fromkeys((*REQUIRED_KEYS, *fields)))
    return inspect_jet_file(path, require=require)


def _field_shapes(path: Path, fields: tuple[str, ...], crop: int | None) -> list[tuple]:
    """Per-event shapes of the fields (images cropped)."""
    with open_jet_file(path) as handle:
        shapes = [tuple(int(s) for s in handle[field].shape[1:]) for field in fields]
    return [(crop, crop, s[2]) if field == IMAGE_KEY and crop else s for field, s in zip(fields, shapes, strict=True)]


def _effective_events(info: JetFileInfo, max_events: int | None) -> int:
    if not max_events:  # None or 0: the whole file
        return info.n_events
    if int(max_events) < 0:
        raise ConfigError(f"max_events must be >= 0 (0 or None = all events), got {max_events}")
    return min(info.n_events, int(max_events))


# ------------------------------------------------------------------------------------------------ jet_images
def jet_images(
    path: str | os.PathLike,
    split: str = "train",
    batch_size: int = 64,
    fields: Sequence[str] = (IMAGE_KEY,),
    shuffle: bool | None = None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    max_events: int | None = None,
    shuffle_buffer: int | None = None,
    drop_remainder: bool = False,
    repeat: bool = False,
    crop: int | None = None,
    cache_bytes: int | None = None,
    num_parallel_reads: int | None = 1,
    num_shards: int = 1,
    shard_index: int = 0,
    input_context=None,
):
    """Stream one split of a jet-image file as batches (a ``tf.data.Dataset``).

    Args:
        path: HDF5 file in the schema of :mod:`hep_keras.data.schema` (validated first).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"`` (see :func:`split_indices`).
        batch_size: events per batch (the last batch may be short unless ``drop_remainder``).
        fields: datasets to yield. ``("X_jets",)`` yields a float32 tensor ``(batch, H, W, 3)`` in GeV;
            several fields yield a tuple in this order, e.g. ``("X_jets", "y")`` -> (images, labels), every
            element float32 (``y`` as 0.0 / 1.0, ``m0``/``pt`` in GeV, shape ``(batch,)``).
        shuffle: shuffle blocks per epoch and events in a buffer; default True for ``"train"`` only.
        seed: seeds the split and the shuffling (order is also a function of ``tf.random.set_seed``).
        fractions: (train, val, test) fractions for the split.
        max_events: use only the first ``max_events`` events of the file, before splitting (quick runs);
            ``None`` or 0 = all.
        shuffle_buffer: events per shuffle window (rounded up to whole blocks); default ~64 MiB worth
            (between 100 and 10,000).
        drop_remainder: drop the last short batch (error if the split has fewer events than one batch).
        repeat: repeat forever (reshuffling every epoch); otherwise the dataset has a known cardinality.
        crop: central ``crop x crop`` window of the images, taken in the reader.
        cache_bytes: HDF5 chunk-cache size of the reader; default one chunk row of ``X_jets`` + 25 %.
        num_parallel_reads: blocks read concurrently (default 1); ``None`` = ``tf.data.AUTOTUNE``. Gzip chunks
            that span whole events are inflated with :mod:`zlib` outside h5py's global lock, so they decompress
            in parallel; other layouts (lzf, chunks split across pixels) decode inside HDF5, one at a time.
            Default 1: it was as fast on 2 busy cores, and a 40-minute training run with AUTOTUNE once ended
            in a segmentation fault at an epoch boundary (cause not established).
        num_shards, shard_index: read only the blocks ``b`` with ``b % num_shards == shard_index``
            (multi-worker training); ``input_context`` (a ``tf.distribute.InputContext``) sets both.

    Returns:
        ``tf.data.Dataset`` of float32 tensors (or tuples of them), prefetched, with known cardinality when
        ``repeat`` is False.

    Raises:
        DataError: the file fails the schema check, a split/shard is empty or smaller than a batch with
            ``drop_remainder``, (while iterating) NaN/Inf in the images.
        ConfigError: invalid split, fractions, batch size, crop or fields.
    """
    _check_split(split)
    fields = _check_fields(fields)
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if input_context is not None:
        num_shards, shard_index = input_context.num_input_pipelines, input_context.input_pipeline_id
    if not 0 <= shard_index < num_shards:
        raise ConfigError(f"shard_index must be in [0, {num_shards}); got {shard_index}")
    path = Path(path)
    info = _inspect_for(path, fields)
    crop = _check_crop(crop, info)
    n_events = _effective_events(info, max_events)
    index = None if split == "all" else split_indices(n_events, split, fractions, seed)
    plan = _BlockPlan(n_events=n_events, block_events=info.block_events, index=index)
    blocks, n_split = _shard_blocks(plan, num_shards, shard_index)

    where = f"{path}: split '{split}'" + (f" shard {shard_index}/{num_shards}" if num_shards > 1 else "")
    if n_split == 0:
        raise DataError(f"{where} has no events (file has {info.n_events}, using {n_events})")
    if drop_remainder and n_split < batch_size:
        raise DataError(f"{where} has {n_split} events, fewer than one batch of {batch_size} (drop_remainder)")

    shapes = _field_shapes(path, fields, crop)
    if shuffle_buffer is None:
        event_bytes = 4 * sum(int(np.prod(s, dtype=np.int64)) for s in shapes)
        shuffle_buffer = int(np.clip(SHUFFLE_BUFFER_BYTES // max(event_bytes, 1), 100, 10_000))
    reader = _BlockReader(path, fields, plan, crop, cache_bytes or _cache_bytes_for(path))
    return _pipeline(
        reader,
        blocks,
        shapes,
        n_events=n_split,
        batch_size=int(batch_size),
        shuffle=(split == "train") if shuffle is None else bool(shuffle),
        seed=seed,
        window_blocks=int(np.ceil(int(shuffle_buffer) / info.block_events)),
        drop_remainder=bool(drop_remainder),
        repeat=repeat,
        num_parallel_reads=num_parallel_reads,
        sharded=num_shards > 1,
    )


def _shard_blocks(plan: _BlockPlan, num_shards: int, shard_index: int) -> tuple[np.ndarray, int]:
    """Block ids of this shard that hold wanted events (block ``b`` -> shard ``b % num_shards``), and their count."""
    counts = plan.counts()
    blocks = np.arange(plan.n_blocks, dtype=np.int64)
    blocks = blocks[(blocks % num_shards == shard_index) & (counts > 0)]
    return blocks, int(counts[blocks].sum())


def _pipeline(
    reader: _BlockReader,
    blocks: np.ndarray,
    shapes: list[tuple],
    *,
    n_events: int,
    batch_size: int,
    shuffle: bool,
    seed: int,
    window_blocks: int,
    drop_remainder: bool,
    repeat: bool,
    num_parallel_reads: int | None,
    sharded: bool,
):
    """block ids -> (shuffle blocks) -> read -> (shuffle events) -> batch -> cardinality -> prefetch."""
    import tensorflow as tf

    n_fields = len(shapes)

    def read_block(block):
        outs = tf.numpy_function(reader, [block], Tout=[tf.float32] * n_fields, stateful=False)
        for tensor, shape in zip(outs, shapes, strict=True):
            tensor.set_shape((None, *shape))
        return outs[0] if n_fields == 1 else tuple(outs)

    def read_window(window, window_seed):
        outs = tf.numpy_function(reader.read_window, [window, window_seed], Tout=[tf.float32] * n_fields)
        for tensor, shape in zip(outs, shapes, strict=True):
            tensor.set_shape((None, *shape))
        return outs[0] if n_fields == 1 else tuple(outs)

    ds = tf.data.Dataset.from_tensor_slices(blocks)
    if shuffle:
        ds = ds.shuffle(len(blocks), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    parallel = tf.data.AUTOTUNE if num_parallel_reads is None else int(num_parallel_reads)
    if shuffle:  # windows of shuffled blocks, events permuted inside each window: no unbatch/shuffle copies
        # a fresh permutation seed per window and epoch (seeded: the same run gives the same order)
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds.batch(max(1, window_blocks)), seeds))
        ds = ds.map(read_window, num_parallel_calls=parallel, deterministic=True)
    else:
        ds = ds.map(read_block, num_parallel_calls=parallel, deterministic=True)
    # windows/blocks -> batches with one copy (unbatch + batch would copy every event twice)
    ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
    if not repeat:
        n_batches = n_events // batch_size if drop_remainder else -(-n_events // batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.OFF if sharded else policy.DATA
    return ds.with_options(options)


def _cache_bytes_for(path: Path) -> int:
    with open_jet_file(path) as handle:
        return _cache_bytes(handle[IMAGE_KEY])


# ----------------------------------------------------------------------------------------------- read_events
def read_events(
    path: str | os.PathLike,
    indices: Sequence[int] | np.ndarray,
    fields: Sequence[str] = (IMAGE_KEY, "y", "m0", "pt"),
    crop: int | None = None,
    cache_bytes: int | None = None,
) -> dict[str, np.ndarray]:
    """Read given events into memory (for evaluation): ``{field: float32 array}`` in the order of ``indices``.

    ``X_jets`` is ``(len(indices), H, W, 3)`` in GeV (or ``crop x crop``), scalars are ``(len(indices),)``.
    Reads are chunk-aligned: every block that holds at least one requested event is decompressed once.
    Memory is the size of the result plus one block.
    """
    fields = _check_fields(fields)
    path = Path(path)
    info = _inspect_for(path, fields)
    crop = _check_crop(crop, info)
    wanted = np.asarray(indices, dtype=np.int64).ravel()
    if wanted.size and (wanted.min() < 0 or wanted.max() >= info.n_events):
        raise DataError(f"{path}: event indices must be in [0, {info.n_events}); got {wanted.min()}..{wanted.max()}")
    unique, inverse = np.unique(wanted, return_inverse=True)
    plan = _BlockPlan(n_events=info.n_events, block_events=info.block_events, index=unique)
    shapes = _field_shapes(path, fields, crop)
    out = [np.empty((unique.size, *shape), dtype=np.float32) for shape in shapes]
    reader = _BlockReader(path, fields, plan, crop, cache_bytes or _cache_bytes_for(path))
    try:
        done = 0
        for block in np.flatnonzero(plan.counts()):
            for target, values in zip(out, reader(block), strict=True):
                target[done : done + len(values)] = values
            done += len(values)
    finally:
        reader.close()
    if not _is_sorted(wanted):  # duplicates or unsorted: expand to the requested order
        out = [values[inverse] for values in out]
    return dict(zip(fields, out, strict=True))


def _is_sorted(values: np.ndarray) -> bool:
    return bool(np.all(values[1:] > values[:-1]))


# ------------------------------------------------------------------------------------------------ errors
_DATA_ERROR = re.compile(r"DataError: ([^\n]*)")


@contextlib.contextmanager
def data_errors() -> Iterator[None]:
    """Turn a :class:`DataError` raised inside the ``tf.data`` reader back into a :class:`DataError`.

    TensorFlow wraps Python exceptions raised while iterating into ``tf.errors.InvalidArgumentError``; use
    ``with data_errors(): model.fit(ds, ...)`` (or around a ``for batch in ds`` loop) so that CLIs report the
    one-line message (file and event range) instead of a TensorFlow traceback.
    """
    import tensorflow as tf

    try:
        yield
    except tf.errors.OpError as err:
        match = _DATA_ERROR.search(str(err.message))
        if match is None:
            raise
        raise DataError(match.group(1).strip()) from err
