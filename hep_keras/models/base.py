"""One training step for every hep_keras model: each model states its losses once, this class does the rest.

A model subclasses :class:`LossModel`, lists the names of its loss terms with :meth:`LossModel.track_losses`
and implements ``compute_losses(data, training) -> dict`` of float32 scalars, one of them ``"loss"`` (the
quantity minimised); ``data`` is ``unpack(batch)``, by default the batch as the dataset yields it.
Every term must be the **mean over the events of the batch it is given**. The shared
:meth:`LossModel.train_step` / :meth:`LossModel.test_step` then make a step that is correct under any
``tf.distribute`` strategy:

* **Global-batch mean.** Under ``MirroredStrategy`` / ``MultiWorkerMirroredStrategy`` / ``TPUStrategy`` each
  replica sees ``n_r`` of the ``N = Σ n_r`` events of a global batch and the gradients are *summed* over the
  replicas. Each replica therefore minimises ``loss_r · n_r / N`` (``N`` from an all-reduce), so the summed
  gradient is exactly the gradient of the global-batch mean, also when a batch does not split evenly over the
  replicas (103 + 102 events) or a replica gets no event at all (its share is 0, never NaN). On one replica
  this is ``loss`` itself.
* **Mixed precision.** The loss share goes through ``optimizer.scale_loss`` (a ``LossScaleOptimizer`` under
  ``mixed_float16``, which Keras inserts at ``compile``) before the gradient, so small float16 gradients do not
  underflow; the optimizer unscales them.
* **Trackers.** One ``keras.metrics.Mean`` per loss term, updated with weight ``n_r``: the epoch value is the
  mean over events, exact across replicas (metric variables are summed on read).
* **Hooks.** :meth:`LossModel.step_variables` (what the optimizer updates; default all trainable weights) and
  :meth:`LossModel.after_step` (e.g. an EMA of the weights), which runs where variables may be written:
  in cross-replica context through ``merge_call``, or — inside an XLA-compiled multi-replica step, where
  TensorFlow updates mirrored variables replica by replica — through ``strategy.extended.update`` on each
  replica's own copy. Write it with :meth:`LossModel.assign_variables`.
* **Randomness.** :meth:`LossModel.random_normal` / :meth:`LossModel.random_uniform` draw *stateless* noise
  seeded by ``(seed, salt, optimizer step, replica id)``: no random-generator state is read or written inside
  the compiled step (a ``keras.random.SeedGenerator`` state is a mirrored variable that XLA would read from
  another replica's device), replicas draw different noise, and the same seed reproduces a run.
"""

from __future__ import annotations

import keras
import tensorflow as tf

_SEED_STRIDE = 1_000_003  # keeps (seed, salt) pairs apart in the first seed word


def uniform_from_bits(bits) -> tf.Tensor:
    """``uint32`` random bits → float32 in the open interval (0, 1): the top 23 bits ``k`` give ``(k + 0.5) / 2**23``.

    Exact in float32 (24 significant bits), so the result is never 0 or 1 and ``erfinv(2u - 1)`` stays finite.
    (With 24 bits, ``k + 0.5`` rounds to ``2**24`` for the largest ``k``: u = 1, an infinite normal draw about once
    in 2**24 numbers — once every few training steps of the full-resolution diffusion model.)
    """
    return (tf.cast(tf.bitwise.right_shift(bits, 9), tf.float32) + 0.5) * (1.0 / 2**23)


def stateless_uniform(shape, seed) -> tf.Tensor:
    """Uniform (0, 1) float32 noise from a ``(2,)`` integer seed, **bit-identical with and without XLA**.

    ``tf.random.stateless_uniform/normal`` turn the same Philox bits into different floats under XLA; here the
    Philox ``uint32`` bits (identical everywhere) are mapped by :func:`uniform_from_bits` explicitly.
    """
    bits = tf.random.stateless_uniform(shape, seed, minval=None, maxval=None, dtype=tf.uint32, alg="philox")
    return uniform_from_bits(bits)


def stateless_normal(shape, seed) -> tf.Tensor:
    """Standard-normal float32 noise from a ``(2,)`` integer seed, the same with and without XLA (to rounding):
    ``sqrt(2) · erfinv(2u - 1)`` of :func:`stateless_uniform` (finite: |x| < 5.5)."""
    return tf.math.sqrt(2.0) * tf.math.erfinv(2.0 * stateless_uniform(shape, seed) - 1.0)


def _replica_context():
    """The replica context when running replicated (``None`` in cross-replica or one-replica code)."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def _collective_multi_worker() -> bool:
    strategy = tf.distribute.get_strategy()
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()


def events_in(data) -> tf.Tensor:
    """Number of events (leading dimension of the first tensor) of a batch ``x`` or ``(x, y, ...)``, float32."""
    first = tf.nest.flatten(data)[0]
    return tf.cast(tf.shape(first)[0], tf.float32)


def global_mean_share(value, n_local):
    """This replica's share ``value · n_r / N`` of the global-batch mean (``value`` itself on one replica)."""
    value = tf.cast(value, tf.float32)
    ctx = _replica_context()
    if ctx is None:
        return value
    n_global = ctx.all_reduce(tf.distribute.ReduceOp.SUM, n_local)
    return tf.where(n_local > 0, value * n_local / tf.maximum(n_global, 1.0), 0.0)


@keras.saving.register_keras_serializable(package="hep_keras")
class LossModel(keras.Model):
    """Base class of the hep_keras models: ``compute_losses`` in, a distribution-correct train/test step out.

    Subclasses call :meth:`track_losses` in ``__init__`` and implement :meth:`compute_losses`; see the module
    docstring for what the shared step guarantees.

    Examples:
    ```python
    class Tiny(LossModel):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(1)
            self.track_losses(["loss"])

        def compute_losses(self, data, training=False):
            x, y = data
            return {"loss": keras.ops.mean(keras.ops.square(self.dense(x)[:, 0] - y))}
    ```
    """

    #: seed of :meth:`random_normal` / :meth:`random_uniform`; subclasses set it from their constructor
    rng_seed: int = 0

    def track_losses(self, names) -> None:
        """Create one ``Mean`` tracker per loss term (``names`` must contain ``"loss"``)."""
        names = list(names)
        if "loss" not in names:
            raise ValueError(f"the tracked losses must include 'loss', got {names}")
        self.loss_trackers = [keras.metrics.Mean(name=name) for name in names]

    @property
    def metrics(self):
        return list(getattr(self, "loss_trackers", []))

    # --- what a model states ------------------------------------------------------------------------------
    def compute_losses(self, data, training: bool = False) -> dict:
        """Loss terms of a batch (each a mean over its events); must contain ``"loss"``."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_losses(data, training)")

    def unpack(self, data):
        """What ``compute_losses`` receives from a batch as the dataset yields it (default: unchanged)."""
        return data

    def step_variables(self) -> list:
        """Variables the optimizer updates (default: every trainable weight)."""
        return self.trainable_weights

    def after_step(self) -> None:
        """Runs after every optimizer update; write variables only through :meth:`assign_variables`."""

    # --- the shared step ----------------------------------------------------------------------------------
    def train_step(self, data):
        n_local = events_in(data)
        variables = self.step_variables()
        with tf.GradientTape() as tape:
            losses = self.compute_losses(self.unpack(data), training=True)
            share = global_mean_share(losses["loss"], n_local)
            scaled = self.optimizer.scale_loss(share)
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.after_step()
        return self._update_trackers(losses, n_local)

    def test_step(self, data):
        return self._update_trackers(self.compute_losses(self.unpack(data), training=False), events_in(data))

    def _update_trackers(self, losses, n_local):
        for tracker in self.loss_trackers:
            value = tf.cast(losses[tracker.name], tf.float32)
            # an empty replica (n = 0) has NaN means: it contributes weight 0 and value 0
            tracker.update_state(tf.where(n_local > 0, value, 0.0), sample_weight=n_local)
        results = {tracker.name: tracker.result() for tracker in self.loss_trackers}
        if _collective_multi_worker():
            # Keras 3.15 reduces step outputs of MultiWorkerMirroredStrategy with reduce(MEAN, axis=0), which
            # fails on scalars; (1,)-vectors reduce to the scalar the callbacks expect
            results = {name: tf.reshape(value, (1,)) for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15 (TF backend) builds a model from its first distributed batch *averaged over the replicas*,
        # which fails ("AddN ... [17,16,16,3] != [16,16,16,3]") when that batch does not split evenly. A
        # LossModel creates its weights in __init__ and has no compiled loss or metrics: only the optimizer is
        # left to build (as Keras's _symbolic_build would), in the strategy's scope.
        if getattr(self, "_distribute_strategy", None) is None or not self.built:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        with self.distribute_strategy.scope():
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)
            self._post_build()

    # --- cross-replica-safe variable updates --------------------------------------------------------------
    @staticmethod
    def assign_variables(pairs, fn) -> None:
        """``target.assign(fn(target, source))`` for every ``(target, source)`` pair, safe on every strategy.

        ``fn`` must give the same result on every replica (it does when ``target`` and ``source`` are mirrored
        and their updates identical, e.g. an EMA ``decay · target + (1 - decay) · source``).
        """
        pairs = [(_tf_variable(t), _tf_variable(s)) for t, s in pairs]

        def update(strategy):
            for target, source in pairs:
                strategy.extended.update(target, lambda t, s: t.assign(fn(t, s)), args=(source,), group=False)

        ctx = tf.distribute.get_replica_context()
        if ctx is None:  # cross-replica context
            update(tf.distribute.get_strategy())
        else:  # merge_call, or per-replica updates inside XLA (as Keras's own optimizers do)
            tf.__internal__.distribute.interim.maybe_merge_call(update, tf.distribute.get_strategy())

    # --- stateless randomness -----------------------------------------------------------------------------
    def step_seed(self, salt: int) -> tf.Tensor:
        """Stateless seed ``(2,)`` int32 for this step, replica and use (``salt``)."""
        step = self.optimizer.iterations if getattr(self, "optimizer", None) is not None else 0
        ctx = tf.distribute.get_replica_context()
        replica = 0 if ctx is None else ctx.replica_id_in_sync_group
        replicas = 1 if ctx is None else ctx.num_replicas_in_sync
        first = (int(self.rng_seed or 0) * _SEED_STRIDE + int(salt)) % (2**31 - 1)
        second = tf.cast(step, tf.int64) * replicas + tf.cast(replica, tf.int64)
        return tf.stack([tf.constant(first, tf.int32), tf.cast(second % (2**31 - 1), tf.int32)])

    def random_normal(self, shape, salt: int):
        """Standard-normal float32 noise of ``shape`` (see :meth:`step_seed`)."""
        return stateless_normal(shape, self.step_seed(salt))

    def random_uniform(self, shape, salt: int):
        """Uniform [0, 1) float32 noise of ``shape`` (see :meth:`step_seed`)."""
        return stateless_uniform(shape, self.step_seed(salt))


def _tf_variable(variable):
    """The ``tf.Variable`` (or distributed variable) behind a Keras variable."""
    return variable.value if isinstance(variable, keras.Variable) else variable
