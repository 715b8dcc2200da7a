"""Coarse to fine (Haber et al., 2018, Algorithm 1) against one level at equal work, with the zoo presets' recipe.

``zoo_tables.py`` asks how much work each method needs to reach a target
with a constant learning rate, checked once per epoch, where Adam's
validation error swings by about 15 % from one epoch to the next. This asks
the same question the way the presets are now trained, which removes those
swings: Adam's rate on a cosine decay to 0 (``zoo_tables.recipe(...,
decay="cosine")``), and a fixed budget of work units for both methods. For
each resolution N and seed, from the same initial weights:

* coarse to fine: ``--coarse-epochs`` epochs at N/2 (a quarter of a work
  unit per batch), the stencils moved to N with their values kept, then
  ``--epochs`` epochs at N with the rate decaying over them (the presets'
  recipe);
* one level: ``--single-epochs`` epochs at N with the rate decaying over
  them (default ``--epochs + ceil(--coarse-epochs / 4)``, at least as many
  work units as coarse to fine; several values measure how much work one
  level needs to catch up).

The table gives the validation relative L2 at the end (median [min-max]
over seeds), the work units and the wall time (training, tracing and the
per-epoch validation pass), and the one-level error over the coarse-to-fine
error, seed by seed (above 1: coarse to fine is better).

Usage::

    python benchmarks/zoo_budget.py --problem poisson --resolutions 16 32 --seeds 0 1 2 \\
        --out benchmarks/results/zoo/budget
    python benchmarks/zoo_budget.py --problem poisson --resolutions 16 --single-epochs 12 14 \\
        --out benchmarks/results/zoo/budget/longer
"""

import argparse
import json
import math
import pathlib
import sys
import time

import _report  # benchmarks/_report.py, beside this script
import zoo_tables  # the zoo's architecture and recipe, beside this script

from keras_multilevel.zoo import training


def run(recipe):
    """Trains ``recipe`` to the end; returns its final and lowest validation relative L2, work units and seconds."""
    started = time.perf_counter()
    _, record = training.train_recipe(recipe, progress=False)
    errors = [epoch["val_relative_l2"] for epoch in record["epochs"]]
    return {"final": errors[-1], "lowest": min(errors), "work_units": record["work_units"],
            "seconds": time.perf_counter() - started, "epochs": record["epochs"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    zoo_tables.add_schedule_arguments(parser, resolutions=[16, 32], epochs="epochs at N of coarse to fine")
    parser.add_argument("--single-epochs", type=int, nargs="+",
                        help="one level's epochs at N, one run per value (default: --epochs + ceil(--coarse-epochs / 4))")
    parser.add_argument("--out", default="benchmarks/results/zoo/budget")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    single_epochs = args.single_epochs or [args.epochs + math.ceil(args.coarse_epochs / 4)]
    rows = []
    for resolution in args.resolutions:
        row = {"preset": f"{args.problem}_unet_n{resolution}", "seeds": args.seeds, "multilevel": [],
               "single": {str(epochs): [] for epochs in single_epochs}}
        for seed in args.seeds:
            multilevel = zoo_tables.recipe(args.problem, resolution, seed, args.coarse_epochs, args.epochs, "identity",
                                           decay="cosine", pyramid=args.pyramid, learning_rate=args.learning_rate,
                                           grow=args.grow, levels=args.levels)
            row["multilevel"].append(run(multilevel))
            for epochs in single_epochs:
                row["single"][str(epochs)].append(run(zoo_tables.one_level(args.problem, resolution, seed, epochs, "cosine", args.pyramid, args.learning_rate)))
            print(row["preset"], seed, f"coarse to fine {row['multilevel'][-1]['final']:.4f}",
                  *(f"one level {epochs}: {runs[-1]['final']:.4f}" for epochs, runs in row["single"].items()), flush=True)
        rows.append(row)
    command = " ".join(["python", *sys.argv])
    (out / f"{args.problem}.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    _report.write(table(args, rows, command), out / f"{args.problem}.md")


def table(args, rows, command):
    def cell(runs, key, spec):
        return _report.spread([run[key] for run in runs], spec)

    coarsest = f" (N/2^{args.levels - 1} first)" if args.levels > 2 else " (N/2)"
    coarse_to_fine = (
        "the U-Net without its finest grid there, grown the grid (coarsening='pyramid': it starts as the coarse "
        "prediction prolongated)" if args.grow else "the stencils moved to N with their values kept"
    )
    lines = [
        f"# Zoo U-Nets, {args.problem}: coarse to fine against one level at equal work, cosine-decayed Adam",
        "",
        f"Command: `{command}`",
        "",
        f"{zoo_tables.architecture(args)}, Adam from {args.learning_rate:g} on a cosine decay to 0, batch 64, the same initial weights per "
        f"seed. Coarse to fine: {args.coarse_epochs} epochs on each coarse level{coarsest}, {coarse_to_fine}, "
        f"{args.epochs} epochs at N (the presets' recipe). One level: the epochs at N in its column. Cells: median "
        "[min-max] over seeds; validation relative L2 at the end and the lowest after any epoch; wall time includes "
        "tracing and each epoch's validation pass at N; the error ratio is one level's final error over coarse to "
        "fine's, seed by seed (above 1: coarse to fine is better).",
        "",
        "| U-Net | seeds | coarse to fine: WU | final val rel. L2 | lowest | s | one level: epochs at N | WU "
        "| final val rel. L2 | lowest | s | error ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        multilevel = row["multilevel"]
        for epochs, single in row["single"].items():
            ratios = [s["final"] / m["final"] for s, m in zip(single, multilevel)]
            lines.append(
                f"| {row['preset']} | {len(row['seeds'])} | {cell(multilevel, 'work_units', '.0f')} | "
                f"{cell(multilevel, 'final', '.4f')} | {cell(multilevel, 'lowest', '.4f')} | "
                f"{cell(multilevel, 'seconds', '.0f')} | {epochs} | {cell(single, 'work_units', '.0f')} | "
                f"{cell(single, 'final', '.4f')} | {cell(single, 'lowest', '.4f')} | {cell(single, 'seconds', '.0f')} | "
                f"{_report.spread(ratios, '.2f')} |"
            )
    return lines


if __name__ == "__main__":
    main()
