"""Training throughput and memory of each model: 1 replica vs 2 replicas vs 2 workers, on this machine.

    python benchmarks/scaling.py [--models vae ae diffusion compressor] [--steps 20] [--batch-size 64]

Every configuration runs in fresh processes (logical devices and ``TF_CONFIG`` must be set before TensorFlow
starts) on the shipped sample (compressor: its ``jets/`` table):

* ``1 replica``: the default strategy;
* ``2 replicas``: ``MirroredStrategy`` over 2 logical CPU devices of one process (``cpu_replicas=2``);
* ``2 workers``: ``MultiWorkerMirroredStrategy``, two processes on 127.0.0.1 (``TF_CONFIG``), one replica each.

The global batch is the same in every case (``--batch-size``), so a step does the same arithmetic; images/s is
measured over ``--steps`` steps after one warm-up epoch of the same length (tracing, XLA compilation). Memory
is each process's peak RSS. On this 2-core CPU machine the replicas share the same two cores, so the numbers
measure the *overhead* of distribution (all-reduce, input splitting), not a speed-up: on N GPUs each replica
has its own device. Prints a Markdown table with the load average next to each row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from hep_keras.training.distribute import free_local_ports

HERE = Path(__file__).resolve().parent
MODELS = ("vae", "ae", "diffusion", "compressor")
TINY = {
    "vae": [],
    "ae": [],
    "diffusion": ["--set", "norm_events=200"],  # default 32x32 crop, small U-Net
    "compressor": ["--set", "augment=false"],
}


def run_case(model: str, mode: str, steps: int, batch_size: int) -> dict:
    """One process of one configuration; returns images/s, step time and peak RSS."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from hep_keras.commands.fit import build_parser, config_from_args
    from hep_keras.training.distribute import make_strategy
    from hep_keras.training.recipes import get_recipe

    strategy = {"1 replica": "default", "2 replicas": "mirrored", "2 workers": "multi_worker"}[mode]
    strategy = make_strategy(strategy, 2 if mode == "2 replicas" else None)
    argv = [model, "--batch-size", str(batch_size), "--steps-per-epoch", str(steps), *TINY[model]]
    recipe = get_recipe(model)
    config = config_from_args(build_parser().parse_args(argv), recipe)
    keras.utils.set_random_seed(0)
    with strategy.scope():
        data = recipe.load_data(config)
        model_ = recipe.build_model(config, data)

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timer = Timer()
    model_.fit(data.train, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    return {
        "images_per_s": steps * batch_size / timer.seconds,
        "step_ms": 1000 * timer.seconds / steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "replicas": strategy.num_replicas_in_sync,
        "jit": str(model_.jit_compile),
        "load": os.getloadavg()[0],
    }


def measure(model: str, mode: str, steps: int, batch_size: int) -> list[dict]:
    """Run ``mode`` in fresh processes; one result per process (two for ``2 workers``)."""
    cmd = [sys.executable, __file__, "--run", model, mode, str(steps), str(batch_size)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("TF_CONFIG", None)
    if mode != "2 workers":
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
        return [json.loads(out.stdout.strip().splitlines()[-1])]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_local_ports(2)]}
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**env, "TF_CONFIG": tf_config}))
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"worker failed ({proc.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--modes", nargs="+", default=["1 replica", "2 replicas", "2 workers"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--run", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        model, mode, steps, batch = args.run
        print(json.dumps(run_case(model, mode, int(steps), int(batch))))
        return
    rows = [
        f"global batch {args.batch_size}, {args.steps} timed steps after a warm-up epoch; cores: {os.cpu_count()}",
        "",
        "| model | configuration | images/s | × 1 replica | ms/step | peak RSS per process (MiB) | XLA | load avg |",
        "|:--|:--|--:|--:|--:|--:|:--|--:|",
    ]
    for model in args.models:
        base = None
        for mode in args.modes:
            results = measure(model, mode, args.steps, args.batch_size)
            rate = min(r["images_per_s"] for r in results)  # the cluster runs at its slowest worker
            base = base or rate
            rss = " / ".join(f"{r['peak_rss_mb']:.0f}" for r in results)
            step = max(r["step_ms"] for r in results)
            load = max(r["load"] for r in results)
            rows.append(
                f"| {model} | {mode} | {rate:.0f} | {rate / base:.2f} | {step:.0f} | {rss} | {results[0]['jit']} "
                f"| {load:.1f} |"
            )
            print(rows[-1], file=sys.stderr)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
