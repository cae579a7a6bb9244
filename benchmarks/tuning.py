"""Random vs Bayesian search on the VAE at a fixed small budget: best objective reached and wall time.

Both searches use ``tuning/vae.toml``, the same data, seed, epochs per trial and number of trials, and the
default objective ``val_emd_ratio`` (per-event EMD of the reconstructions / that of the mean-image baseline on
the same validation events; 1 = no better than the mean image). Beside them, the untuned default config
trained with the same budget. Prints a markdown table (paste it into tuning/README.md)::

    python benchmarks/tuning.py [--trials 12] [--epochs 3] [--max-events 800] [--out runs/tuning_benchmark]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run(
    model: str,
    tuner: str,
    trials: int,
    common: list[str],
    out: Path,
    project: str,
    space: Path,
    initial_points: int = 4,
) -> dict:
    from hep_keras.commands.tune import main as tune_main

    args = [model, "--tuner", tuner, "--max-trials", str(trials), "--directory", str(out), "--project-name", project]
    args += ["--space", str(space), "--no-export", "--overwrite", *common]
    if tuner == "bayesian":
        args += ["--initial-points", str(initial_points)]
    start = time.perf_counter()
    tune_main(args)
    seconds = time.perf_counter() - start
    rows = list(csv.DictReader(open(out / project / "trials.csv")))
    values = [float(r["objective"]) for r in rows]
    best_after = {k: min(values[:k]) for k in (4, 8, 12) if k <= len(values)}
    return {"tuner": tuner, "trials": len(rows), "best": min(values), "best_after": best_after, "seconds": seconds}


def default_space(model: str, out: Path) -> Path:
    """A one-point search space: the recipe's defaults for the keys of tuning/<model>.toml."""
    import tomllib

    from hep_keras.training.recipes import get_recipe, recipe_defaults
    from hep_keras.training.tuning.space import default_space_path

    defaults = recipe_defaults(get_recipe(model))
    keys = tomllib.loads(default_space_path(model).read_text())
    lines = [f'[{k}]\ntype = "choice"\nvalues = [{json.dumps(defaults[k])}]\n' for k in keys]
    path = out / "defaults.toml"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vae")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-events", type=int, default=800)
    parser.add_argument("--objective-events", type=int, default=64)
    parser.add_argument("--initial-points", type=int, default=4, help="random trials before Bayesian optimisation")
    parser.add_argument("--data", help="default: the shipped sample")
    parser.add_argument("--out", default="runs/tuning_benchmark", help="search directories (deleted first)")
    args = parser.parse_args()

    from hep_keras.training.tuning.space import default_space_path

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    common = ["--epochs", str(args.epochs), "--max-events", str(args.max_events), "--verbose", "0"]
    common += ["--objective-events", str(args.objective_events), "--set", "eval_events=64"]
    if args.data:
        common += ["--data", args.data]
    space = default_space_path(args.model)
    results = [run(args.model, "random", 1, common, out, "defaults", default_space(args.model, out))]
    results[0]["tuner"] = "defaults"
    for tuner in ("random", "bayesian"):
        results.append(run(args.model, tuner, args.trials, common, out, tuner, space, args.initial_points))
    load = os.getloadavg()[0]
    print(
        f"\n{args.model}: {args.epochs} epochs per trial on {args.max_events} events (80/10/10 split), objective "
        f"val_emd_ratio on {args.objective_events} validation events; Bayesian: {args.initial_points} random initial "
        f"points; load average {load:.1f} on {os.cpu_count()} cores (shared)\n"
    )
    print("| search | trials | best val_emd_ratio | best after 4 / 8 / 12 | wall time (s) | s per trial |")
    print("|---|---|---|---|---|---|")
    print("| mean-image baseline | - | 1 (by definition of the ratio) | - | - | - |")
    for r in results:
        after = " / ".join(f"{r['best_after'][k]:.3f}" for k in sorted(r["best_after"])) or "-"
        name = "untuned defaults" if r["tuner"] == "defaults" else f"{r['tuner']} search"
        print(
            f"| {name} | {r['trials']} | {r['best']:.3f} | {after} | {r['seconds']:.0f} | "
            f"{r['seconds'] / r['trials']:.0f} |"
        )
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
