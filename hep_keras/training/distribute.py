"""``tf.distribute`` for ``hep_keras.fit``: strategies, the cluster description, the chief, input sharding.

* :func:`make_strategy` creates the strategy **before TensorFlow runs any op** (``MultiWorkerMirroredStrategy``
  configures collective ops at program start-up and fails later) and turns a missing or malformed
  ``TF_CONFIG`` or an absent TPU into one :class:`~hep_keras.errors.ConfigError` line.
* ``cpu_replicas``: split the host CPU into N logical devices so that ``--strategy mirrored`` runs N replicas
  on a machine without accelerators (tests, benchmarks, trying the distributed path on a laptop).
* :func:`is_chief`: only the chief writes the run directory and the export; other workers write into a
  temporary directory that is deleted at the end (they must still run every collective step).
* :func:`distributed_input`: under ``MultiWorkerMirroredStrategy`` every worker builds its own input pipeline
  with ``(num_shards, shard_index) = (workers, this worker)`` and the per-replica batch
  ``batch_size // replicas`` (``strategy.distribute_datasets_from_function``), so each worker reads only its
  own share of the file. With one worker the pipeline is built once with the global batch and Keras splits
  every batch over the local replicas.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Callable
from typing import Any

from hep_keras.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


# ------------------------------------------------------------------------------------------------ TF_CONFIG
def read_tf_config(environ=None) -> dict[str, Any]:
    """Parse and check ``TF_CONFIG`` (``{"cluster": {type: ["host:port", ...]}, "task": {"type", "index"}}``)."""
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "")
    if not text.strip():
        raise ConfigError("--strategy multi_worker needs the TF_CONFIG environment variable (cluster and task)")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"TF_CONFIG is not valid JSON: {err}") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError('TF_CONFIG: "cluster" must map task types to lists of "host:port" addresses')
    for kind, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(_is_address(a) for a in addresses):
            raise ConfigError(f'TF_CONFIG: cluster["{kind}"] needs a non-empty list of "host:port"; got {addresses!r}')
    if not {"worker", "chief"} & set(cluster):
        raise ConfigError('TF_CONFIG: the cluster needs "worker" (and optionally "chief") tasks')
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ConfigError(f'TF_CONFIG: "task" must name a type of the cluster ({", ".join(cluster)}), got {task!r}')
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task["type"]]):
        raise ConfigError(f"TF_CONFIG: task index must be in [0, {len(cluster[task['type']])}), got {index!r}")
    return config


def _is_address(value) -> bool:
    if not isinstance(value, str) or ":" not in value:
        return False
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit()


def worker_position(tf_config: dict[str, Any]) -> tuple[int, int]:
    """``(workers, this worker's index)`` in the order TensorFlow uses (the chief first, then the workers)."""
    cluster, task = tf_config["cluster"], tf_config["task"]
    order = [("chief", i) for i in range(len(cluster.get("chief", [])))]
    order += [("worker", i) for i in range(len(cluster.get("worker", [])))]
    return len(order), order.index((task["type"], task["index"])) if task["type"] in ("chief", "worker") else 0


# ------------------------------------------------------------------------------------------------ strategies
def configure_cpu_replicas(n: int | None) -> None:
    """Split the (first) CPU into ``n`` logical devices; must run before TensorFlow is initialised."""
    if not n or n <= 1:
        return
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        current = tf.config.get_logical_device_configuration(cpus[0])
        if current is None or len(current) != n:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        raise ConfigError(
            f"cpu_replicas={n}: TensorFlow was already initialised in this process; set it before any TF op"
        ) from None


def make_strategy(name: str, cpu_replicas: int | None = None):
    """The ``tf.distribute`` strategy for ``name`` (see :data:`STRATEGIES`); call it first, before any TF op.

    ``mirrored``: every local GPU (or ``cpu_replicas`` logical CPUs when there is no GPU); ``multi_worker``:
    the cluster in ``TF_CONFIG``; ``tpu``: the TPU found by ``TPUClusterResolver`` (``TPU_NAME`` or local).
    """
    if name not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}; got {name!r}")
    if name == "multi_worker":
        read_tf_config()  # one clear line instead of a TensorFlow traceback
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "tpu":
        return _tpu_strategy(tf)
    if not tf.config.list_physical_devices("GPU"):
        configure_cpu_replicas(cpu_replicas)
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.MultiWorkerMirroredStrategy()


def _tpu_strategy(tf):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"--strategy tpu: no TPU found ({first}); set TPU_NAME or run on a TPU VM") from None
    return tf.distribute.TPUStrategy(resolver)


def is_multi_worker(strategy) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._num_workers > 1


def is_chief(strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs
    )


def resolve_jit_compile(value, auto="auto"):
    """``jit_compile`` for ``model.compile`` under the current strategy: ``auto`` becomes ``auto`` (the model's
    preference: ``True``, ``False`` or Keras's ``"auto"``).

    XLA cannot compile a step whose replicas are CPUs: on several logical devices of one CPU (TensorFlow:
    "Trying to access resource .../replica_1 located in device CPU:1 from device CPU:0", also for a plain
    ``keras.Sequential``), nor across CPU workers ("Collectives are not yet implemented for CPU devices when
    compiling with XLA"). There ``auto`` means no XLA and an explicit ``true`` is a :class:`ConfigError`.
    GPUs, TPUs and a single CPU replica compile normally.
    """
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list: one replica
        devices = []
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and all("CPU" in d.upper() for d in devices):
        if value is True:
            raise ConfigError(
                f"jit_compile=true: XLA cannot compile a step over {replicas} CPU replicas; "
                "use jit_compile=auto or false (XLA works on GPUs, TPUs and a single CPU replica)"
            )
        return False
    return auto if value == "auto" else value


# ------------------------------------------------------------------------------------------------ input
def distributed_input(build: Callable[[int, int, int], Any], global_batch: int, repeat: bool = False):
    """A training/validation input for the current strategy (call inside ``strategy.scope()``).

    ``build(batch_size, num_shards, shard_index)`` returns a ``tf.data.Dataset`` of ``batch_size`` batches
    holding only shard ``shard_index`` of ``num_shards``. One worker: ``build(global_batch, 1, 0)``; ``repeat``
    repeats it forever (training with ``steps_per_epoch``). Several workers: one pipeline per worker with the
    per-replica batch (the global batch must divide by the number of replicas), always repeated: the shards
    differ in size, and a worker whose shard ended first would leave the others' collectives waiting for a
    step it never takes (TensorFlow aborts: "Collective instance ... expected data_type 9 but got 1"). Every
    worker instead takes the same number of steps, :func:`fit_steps`.
    """
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    if not is_multi_worker(strategy):
        dataset = build(global_batch, 1, 0)
        return dataset.repeat() if repeat else dataset
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ConfigError(f"batch_size {global_batch} must be a multiple of the {replicas} replicas of the cluster")

    def per_worker(context: tf.distribute.InputContext):
        batch = context.get_per_replica_batch_size(global_batch)
        dataset = build(batch, context.num_input_pipelines, context.input_pipeline_id)
        return dataset.repeat()

    return strategy.distribute_datasets_from_function(per_worker)


def fit_steps(strategy, config: dict[str, Any], split_events: dict[str, int]) -> dict[str, int | None]:
    """``steps_per_epoch`` and ``validation_steps`` for Keras ``fit`` under ``strategy`` (``None``: one device).

    One worker: ``config["steps_per_epoch"]`` (``None``: one pass over the training split) and one pass over
    the validation split. Several workers (their pipelines repeat, see :func:`distributed_input`): an epoch is
    ``ceil(events / batch_size)`` global steps of each split, one pass on average (a smaller shard wraps
    around within the epoch), unless ``steps_per_epoch`` is set.
    """
    steps = config["steps_per_epoch"]
    if strategy is None or not is_multi_worker(strategy):
        return {"steps_per_epoch": steps, "validation_steps": None}
    batch = config["batch_size"]
    return {
        "steps_per_epoch": steps or max(math.ceil(split_events["train"] / batch), 1),
        "validation_steps": max(math.ceil(split_events["val"] / batch), 1),
    }


def free_local_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1, e.g. for a local ``TF_CONFIG`` cluster or a tuner oracle.

    All sockets are held open until every port is chosen, so the ports differ; a port can still be taken by
    another process before it is used (fine for tests and local runs).
    """
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
