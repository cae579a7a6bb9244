"""The Pythia8 event stream: seeded :class:`EventStream` s, worker processes and the deterministic merge.

:func:`iter_blocks` yields :class:`~hep_keras.simulation.jets.Block` s in a global order that depends only
on ``(seed, workers, block_events)``. Pythia8 and FastJet are imported lazily (inside :class:`EventStream`).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue as _queue
import signal
import sys
from collections.abc import Iterator

import numpy as np

from hep_keras.physics import CHANNELS
from hep_keras.simulation.config import IMAGE_PIXELS, INVISIBLE_PIDS, SimulationConfig, stream_seeds
from hep_keras.simulation.detector import Particles, event_image
from hep_keras.simulation.jets import Block, _jet_kinematics, cluster_jets, select_leading_jets


@contextlib.contextmanager
def _stdout_silenced():
    """Send file descriptor 1 to /dev/null (FastJet's C++ banner ignores Python's sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _flat_record(events) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flatten a ``nextBatch`` array to numpy: particle fields (id, status, px, py, pz, e) and event index."""
    import awkward as ak

    prt = events.prt
    counts = ak.to_numpy(ak.num(prt, axis=1))
    fields = {k: ak.to_numpy(ak.flatten(prt[k], axis=1)) for k in ("id", "status")}
    fields.update({k: ak.to_numpy(ak.flatten(prt.p[k], axis=1)) for k in ("px", "py", "pz", "e")})
    return fields, np.repeat(np.arange(len(counts)), counts)


def _offsets(event: np.ndarray, n_events: int) -> np.ndarray:
    """(n_events + 1,) start offsets of each event in a flat array sorted by ``event``."""
    return np.concatenate([[0], np.cumsum(np.bincount(event, minlength=n_events))]).astype(np.int64)


class EventStream:
    """One seeded Pythia instance plus detector RNG producing :class:`Block` s (the work of one worker)."""

    def __init__(self, config: SimulationConfig, stream: int = 0):
        import fastjet
        import pythia8mc

        self.config = config
        pythia_seed, self.rng = stream_seeds(config.seed, stream)
        self.pythia = pythia8mc.Pythia("", False)
        for line in config.pythia_settings(pythia_seed):
            self.pythia.readString(line)
        with _stdout_silenced():
            if not self.pythia.init():
                raise RuntimeError("Pythia initialisation failed")
        self.jet_definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.jet_r)
        self._charge: dict[int, float] = {}
        self._banner_done = False

    def charges(self, pid: np.ndarray) -> np.ndarray:
        """Electric charge (units of e) of each PDG id, from Pythia's particle table (cached)."""
        unique, inverse = np.unique(pid, return_inverse=True)
        for code in unique.tolist():
            if code not in self._charge:
                self._charge[code] = self.pythia.particleData.charge(code)
        return np.array([self._charge[c] for c in unique.tolist()], dtype=np.float64)[inverse]

    def generate_raw(self, n_events: int):
        """``n_events`` Pythia events as an awkward array (``Pythia.nextBatch``)."""
        return self.pythia.nextBatch(n_events)

    def block(self, index: int) -> Block:
        """Generate, cluster, select and image block ``index`` (``config.block_events`` events)."""
        events = self.generate_raw(self.config.block_events)
        return self.process(events, index)

    def _cluster(self, px, py, pz, e, offsets):
        """anti-kT jets (pT > table_pt_min) of every event, see :func:`cluster_jets`.

        FastJet's banner (printed on the first clustering) is silenced.
        """
        context = contextlib.nullcontext() if self._banner_done else _stdout_silenced()
        with context:
            clustered = cluster_jets(px, py, pz, e, offsets, self.jet_definition, self.config.table_pt_min)
        self._banner_done = True
        return clustered

    def process(self, events, index: int) -> Block:
        """Turn a ``nextBatch`` awkward array into the :class:`Block` of its accepted leading jets."""
        cfg = self.config
        n_events = len(events)
        record, event = _flat_record(events)
        apid = np.abs(record["id"])
        visible = (record["status"] > 0) & ~np.isin(apid, INVISIBLE_PIDS)
        hard = record["status"] == -23
        px, py, pz, pe = (record[k][visible] for k in ("px", "py", "pz", "e"))
        p_off, q_off = _offsets(event[visible], n_events), _offsets(event[hard], n_events)
        jet_event, (jpt, jeta, jphi, jm, je) = self._cluster(px, py, pz, pe, p_off)
        pid = record["id"][visible].astype(np.int64)
        ppt, peta, pphi, _, _ = _jet_kinematics(px, py, pz, pe)
        charge = self.charges(pid)
        qid = record["id"][hard].astype(np.int64)
        _, qeta, qphi, _, _ = _jet_kinematics(*(record[k][hard] for k in ("px", "py", "pz", "e")))
        bounds = np.searchsorted(jet_event, np.arange(n_events + 1))
        partons = (qid, qeta, qphi, q_off)
        images, labels, pts, masses, gen, table_rows = [], [], [], [], [], []
        for i, j, label in select_leading_jets(bounds, jpt, jeta, jphi, partons, cfg):
            s = slice(p_off[i], p_off[i + 1])
            particles = Particles(ppt[s], peta[s], pphi[s], pe[s], pid[s], charge[s])
            images.append(event_image(particles, jeta[j], jphi[j], cfg.detector, self.rng))
            labels.append(label)
            pts.append(jpt[j])
            masses.append(jm[j])
            gen.append(index * cfg.block_events + i)
            table_rows.append(np.arange(bounds[i], bounds[i + 1]))
        rows = np.concatenate(table_rows) if table_rows else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(len(table_rows)), [len(r) for r in table_rows]).astype(np.int64)
        table = {
            "pt": jpt[rows],
            "eta": jeta[rows],
            "phi": jphi[rows],
            "m": jm[rows],
            "E": je[rows],
            "owner": owner,
        }
        shape = (len(images), IMAGE_PIXELS, IMAGE_PIXELS, len(CHANNELS))
        return Block(
            index=index,
            n_generated=n_events,
            images=np.stack(images) if images else np.zeros(shape, np.float32),
            label=np.asarray(labels, dtype=np.int8),
            pt=np.asarray(pts, dtype=np.float64),
            m0=np.asarray(masses, dtype=np.float64),
            generated_event=np.asarray(gen, dtype=np.int64),
            table=table,
        )


# ----------------------------------------------------------------------------------------------------
# Workers and the deterministic merge
# ----------------------------------------------------------------------------------------------------
def _worker_main(config: SimulationConfig, worker: int, out_queue, stop) -> None:
    """Worker process: generate blocks ``worker, worker + K, worker + 2K, ...`` until told to stop.

    Exits on its own when the parent disappears (killed without cleanup), so no orphan keeps running.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    parent = os.getppid()
    try:
        stream = EventStream(config, stream=worker)
        local = 0
        while not stop.is_set() and os.getppid() == parent:
            item = ("block", stream.block(local * config.workers + worker))
            while not stop.is_set() and os.getppid() == parent:
                try:
                    out_queue.put(item, timeout=1.0)
                    break
                except _queue.Full:
                    continue
            local += 1
    except Exception as err:  # reported to the parent, which raises
        out_queue.put(("error", f"{type(err).__name__}: {err}"))
    finally:
        # do not block at exit flushing a block nobody will read (parent gone or finished)
        out_queue.cancel_join_thread()


@contextlib.contextmanager
def _sigterm_raises_interrupt():
    """Within the block, SIGTERM raises KeyboardInterrupt (so temp files and workers are cleaned up)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _receive(out_queue, process, worker: int) -> Block:
    """Next block from ``worker``; raises RuntimeError if the worker failed or died."""
    while True:
        try:
            kind, payload = out_queue.get(timeout=1.0)
        except _queue.Empty:
            if not process.is_alive():
                raise RuntimeError(f"simulation worker {worker} died (exit code {process.exitcode})") from None
            continue
        if kind == "error":
            raise RuntimeError(f"simulation worker {worker} failed: {payload}")
        return payload


def iter_blocks(config: SimulationConfig) -> Iterator[Block]:
    """Blocks in global order 0, 1, 2, ... (block ``g`` comes from worker ``g % K``); infinite iterator.

    ``workers == 1`` runs in this process. Otherwise K spawned processes each run an :class:`EventStream`
    seeded from ``(seed, worker)``; each stays at most two blocks ahead (one queued, one in progress).
    Closing the iterator terminates them.
    """
    if config.workers == 1:
        stream = EventStream(config, stream=0)
        index = 0
        while True:
            yield stream.block(index)
            index += 1
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    queues = [ctx.Queue(maxsize=1) for _ in range(config.workers)]
    processes = [
        ctx.Process(target=_worker_main, args=(config, w, queues[w], stop), daemon=True, name=f"simulate-{w}")
        for w in range(config.workers)
    ]
    for process in processes:
        process.start()
    try:
        index = 0
        while True:
            worker = index % config.workers
            yield _receive(queues[worker], processes[worker], worker)
            index += 1
    finally:
        stop.set()
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)
        for q in queues:
            q.cancel_join_thread()
            q.close()
