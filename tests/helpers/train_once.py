"""Train a recipe's model in a fresh process and save its weights: ``python tests/helpers/train_once.py OUT.npz
[--replicas N] [--fixed-noise] [--trace-blocks FILE] -- <hep_keras.fit arguments>``.

Used by the distributed tests (logical CPU devices and ``TF_CONFIG`` must be set before TensorFlow starts, so
every configuration runs in its own process). ``--replicas N`` trains under ``MirroredStrategy`` over N logical
CPUs; ``--fixed-noise`` replaces the models' random draws by noise that is the same for every event (a
function of the trailing shape only), so runs that split batches differently see identical noise;
``--trace-blocks FILE`` appends the HDF5 blocks this process reads to FILE. With ``--cli`` the arguments go to
``python -m hep_keras.fit`` (run directory, export, multi-worker) and OUT gets the exported model's weights.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def fixed_noise() -> None:
    import tensorflow as tf

    from hep_keras.models.base import LossModel

    def pattern(shape):
        shape = tf.convert_to_tensor(shape)
        trailing = tf.reduce_prod(shape[1:])
        values = tf.sin(tf.cast(tf.range(trailing), tf.float32) * 1.7 + 0.3)
        return tf.broadcast_to(tf.reshape(values, shape[1:]), shape)

    LossModel.random_normal = lambda self, shape, salt: pattern(shape)
    LossModel.random_uniform = lambda self, shape, salt: 0.5 + 0.45 * pattern(shape)


def trace_blocks(path: str) -> None:
    """Log ``pid pipeline block`` for every block a ``jet_images`` pipeline reads (``pipeline`` = ``i/n`` for
    shard i of n, ``all`` otherwise)."""
    from hep_keras.data import images

    pipeline = images._pipeline

    def traced_pipeline(reader, blocks, shapes, **kwargs):
        tag = "all"
        if kwargs.get("sharded"):
            tag = "sharded"

        class Traced:
            def _log(self, blocks):
                with open(path, "a") as handle:
                    handle.writelines(f"{os.getpid()} {tag} {int(b)}\n" for b in blocks)

            def __call__(self, block):
                self._log([block])
                return reader(block)

            def read_window(self, blocks, seed):
                self._log(list(blocks))
                return reader.read_window(blocks, seed)

        return pipeline(Traced(), blocks, shapes, **kwargs)

    images._pipeline = traced_pipeline


def save_weights(model, out: str, history, initial=()) -> None:
    import numpy as np

    arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(model.weights)}
    arrays.update({f"init{i}": w for i, w in enumerate(initial)})
    np.savez(out, loss=np.asarray(history.get("loss", [])), **arrays)


def control(kind: str) -> None:
    """Deliberately wrong loss shares, to show the equivalence test can fail."""
    import tensorflow as tf

    from hep_keras.models import base

    def share(value, n_local):
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        return value / replicas if kind == "divide" else value

    base.global_mean_share = share


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--replicas", type=int, default=0)
    parser.add_argument("--fixed-noise", action="store_true")
    parser.add_argument("--trace-blocks")
    parser.add_argument("--cli", action="store_true")
    parser.add_argument("--sgd", type=float, help="recompile with plain SGD at this learning rate")
    parser.add_argument("--control", choices=("divide", "none"), help="replace the global-batch mean (controls)")
    args, rest = parser.parse_known_args()
    rest = [a for a in rest if a != "--"]
    if args.fixed_noise:
        fixed_noise()
    if args.control:
        control(args.control)
    if args.trace_blocks:
        trace_blocks(args.trace_blocks)
    if args.cli:
        if args.sgd:  # the recipes compile with Adam; plain SGD keeps rounding differences small
            import keras

            keras.optimizers.Adam = lambda learning_rate, **kwargs: keras.optimizers.SGD(learning_rate)
        import keras
        import numpy as np

        from hep_keras.commands import run
        from hep_keras.commands.fit import main as fit_main
        from hep_keras.training.distribute import read_tf_config, worker_position

        initial, fit = [], keras.Model.fit

        def fit_and_remember(model, *fit_args, **fit_kwargs):
            initial.extend(np.asarray(w) for w in model.weights)
            return fit(model, *fit_args, **fit_kwargs)

        keras.Model.fit = fit_and_remember

        def main_and_save(argv):
            code = fit_main(argv)
            export = rest[rest.index("--export-dir") + 1] if "--export-dir" in rest else None
            chief = "TF_CONFIG" not in os.environ or worker_position(read_tf_config())[1] == 0
            if export and chief and os.path.isdir(export):
                from hep_keras.export import load_keras_model

                save_weights(load_keras_model(export), args.out, {}, initial)
            return code

        run(main_and_save, rest)
        return

    import keras
    import numpy as np

    from hep_keras.commands.fit import build_parser, config_from_args
    from hep_keras.training.distribute import make_strategy
    from hep_keras.training.recipes import get_recipe

    strategy = make_strategy("mirrored" if args.replicas > 1 else "default", args.replicas)
    parsed = build_parser().parse_args(rest)
    recipe = get_recipe(parsed.model)
    config = config_from_args(parsed, recipe)
    keras.utils.set_random_seed(config["seed"])
    with strategy.scope():
        data = recipe.load_data(config)
        model = recipe.build_model(config, data)
        if args.sgd:  # Adam hides gradient-scale errors and amplifies rounding; SGD shows both as they are
            model.compile(optimizer=keras.optimizers.SGD(args.sgd), jit_compile=model.jit_compile)
    initial = [np.asarray(w) for w in model.weights]
    history = model.fit(data.train, epochs=config["epochs"], verbose=0, shuffle=False)
    assert strategy.num_replicas_in_sync == max(args.replicas, 1), strategy.num_replicas_in_sync
    save_weights(model, args.out, history.history, initial)
    replicas = strategy.num_replicas_in_sync
    print("jit", model.jit_compile, "replicas", replicas, "loss", history.history["loss"], file=sys.stderr)


if __name__ == "__main__":
    main()
