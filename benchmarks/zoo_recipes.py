"""Recipes for the zoo's presets, side by side on the FNO table's metric: test relative L2.

Each call trains one recipe (the options of ``zoo_tables.py``: architecture, log κ input, epochs, rate,
coarse to fine or one level) for every seed on the preset's data set and measures it as the preset's card
and ``benchmarks/peers/fno_against_zoo.py`` do (``kml.zoo.metrics`` on the test split, 1,000 examples,
after the last epoch). The record of every call goes into ``<out>/<problem>_n<N>.json`` under its
``--label`` (the same label is replaced), and the table ``<out>/<problem>_n<N>.md`` lists them all with
the FNO's row of ``benchmarks/results/peers/fno_zoo_n<N>.json`` when there is one. ``--reuse`` and
``--reuse-preset`` take a seed's run from an earlier row or a preset's card made with the same recipe
(the table says which) instead of training it again. Time: wall and
process CPU seconds of ``fit`` (validation included), with the load average at the start.

Usage::

    python benchmarks/zoo_recipes.py --problem poisson --resolution 16 --seeds 0 --label "log κ" \\
        --pyramid --log-input --epochs 10 --coarse-epochs 0 --learning-rate 0.004 \\
        --data-dir /tmp/fno/data --out benchmarks/results/zoo/logk
"""

import argparse
import json
import os
import pathlib
import shlex
import sys

import _report  # benchmarks/_report.py, beside this script
import numpy as np
import zoo_tables  # the zoo's recipes, beside this script

from keras_multilevel.zoo import training
from keras_multilevel.zoo.metrics import measure
from keras_multilevel.zoo.recipe import dataset_description

PEERS = pathlib.Path(__file__).parent / "results" / "peers"


def build(args, seed):
    """The recipe of the options for ``seed`` (one level when ``--coarse-epochs 0``)."""
    if args.coarse_epochs:
        return zoo_tables.recipe(args.problem, args.resolution, seed, args.coarse_epochs, args.epochs, "identity",
                                 args.decay, args.pyramid, args.learning_rate, args.grow, args.levels, args.filters,
                                 args.log_input)
    return zoo_tables.one_level(args.problem, args.resolution, seed, args.epochs, args.decay, args.pyramid,
                                args.learning_rate, args.filters, args.log_input)


def run(recipe, data_dir):
    """Trains ``recipe``; returns its parameters, times, work units, epochs and test metrics."""
    load = os.getloadavg()[0]
    model, record = training.train_recipe(recipe, data_dir, progress=False)
    dataset = dataset_description(recipe)
    test = measure(model, training._data(dataset, "test", data_dir, recipe["batch_size"]))
    return {"seed": recipe["seed"], "parameters": model.count_params(), "load_at_start": load,
            "wall_time_s": record["wall_time_s"], "cpu_time_s": record["cpu_time_s"],
            "work_units": record["work_units"], "epochs": record["epochs"], "test": test}


def same_recipe(a, b):
    """Whether two recipes train the same network the same way (their ``why`` aside)."""
    return {k: v for k, v in a.items() if k != "why"} == {k: v for k, v in b.items() if k != "why"}


def reused(args, seed, earlier):
    """A measured run of ``seed`` with this recipe, without training: from ``earlier`` (the rows of the table, with
    ``--reuse``) or from the metadata of a preset given by ``--reuse-preset`` (made by ``zoo_tables.py
    --create-presets`` with the same recipe: its card's test metrics and training record); else None."""
    recipe = build(args, seed)
    if args.reuse:
        for row in earlier:
            for run_ in row["runs"]:
                if run_["seed"] == seed and same_recipe(row["recipe"], build(args, row["recipe"]["seed"])):
                    return dict(run_, reused_from=row["label"])
    for folder in args.reuse_preset or []:
        meta = json.loads((pathlib.Path(folder) / "metadata.json").read_text())
        if meta["recipe"] is not None and same_recipe(meta["recipe"], recipe):
            training_ = meta["training"]
            return {"seed": seed, "parameters": meta["parameter_count"], "load_at_start": None,
                    "wall_time_s": training_["wall_time_s"], "cpu_time_s": training_.get("cpu_time_s"),
                    "work_units": training_["work_units"], "epochs": training_["epochs"],
                    "test": meta["metrics"]["test"], "reused_from": f"{folder}/metadata.json ({meta['date']})"}
    return None


def fno_row(problem, resolution):
    """The FNO's test relative L2 and CPU seconds over its seeds, from the peers' table, or None."""
    path = PEERS / f"fno_zoo_n{resolution}.json"
    if not path.exists():
        return None
    runs = json.loads(path.read_text())["fno"].get(problem, [])
    if not runs:
        return None
    return {"seeds": len(runs), "parameters": runs[0]["parameters"],
            "relative_l2": [r["test"]["relative_l2"] for r in runs], "cpu_time_s": [r["train_cpu_s"] for r in runs]}


def seconds_to(run_, target):
    """Training CPU seconds (tracing included, validation excluded) until the validation relative L2 first
    reached ``target`` after an epoch, or None (not reached, or a run recorded before these were kept)."""
    return next((epoch.get("training_cpu_time_s") for epoch in run_["epochs"] if epoch["val_relative_l2"] <= target),
                None)


def table(problem, resolution, rows, targets=()):
    lines = [
        f"# Recipes for {problem}_unet_n{resolution}: test relative L2 against the FNO's",
        "",
        "Each row: `python benchmarks/zoo_recipes.py ...` with the options of its command (in the .json beside "
        "this table). Test relative L2 (`kml.zoo.metrics`, mean over the 1,000 test examples of ||e||_2 / ||u||_2, "
        "after the last epoch), as in `benchmarks/results/peers/fno_zoo_n*.md`, on the same data set and splits. "
        "Cells: median [min-max] over the seeds. Time: `fit` (validation included), wall and process CPU seconds "
        "(Keras on a 2-core machine shared with other jobs, run under `nice -n 10`, one training at a time; "
        "the CPU seconds are the steadier measure). The FNO's CPU seconds are one torch thread's.",
        "",
        "| recipe | parameters | epochs | seeds | test rel. L2 | val rel. L2 (last epoch) | CPU s | wall s |"
        + "".join(f" training CPU s to val rel. L2 <= {target:g} |" for target in targets),
        "|---|---|---|---|---|---|---|---|" + "---|" * len(targets),
    ]
    if targets:
        lines[-3:-3] = [
            "Training CPU s to a target: the process CPU seconds of the training epochs (tracing included, the "
            "validation after each epoch excluded) until the first epoch after which the validation relative L2 "
            "is at or below the target ('-' with how many seeds got there, when not all did).",
            "",
        ]
    fno = fno_row(problem, resolution)
    if fno:
        lines.append(f"| FNO (benchmarks/results/peers/fno_zoo_n{resolution}.md) | {fno['parameters']:,} | (CPU budget) | "
                     f"{fno['seeds']} | {_report.spread(fno['relative_l2'], '.4f')} | | "
                     f"{_report.spread(fno['cpu_time_s'])} | |" + " |" * len(targets))
    for row in rows:
        runs = row["runs"]
        lines.append(
            f"| {row['label']} | {runs[0]['parameters']:,} | {row['recipe']['epochs']} | {len(runs)} | "
            f"{_report.spread([r['test']['relative_l2'] for r in runs], '.4f')} | "
            f"{_report.spread([r['epochs'][-1]['val_relative_l2'] for r in runs], '.4f')} | "
            f"{_report.spread([r['cpu_time_s'] for r in runs])} | {_report.spread([r['wall_time_s'] for r in runs])} |"
            + "".join(f" {_report.spread([seconds_to(r, target) for r in runs])} |" for target in targets)
        )
    lines += ["", "Commands:", "", *[f"- {row['label']}: `{row['command']}`" for row in rows]]
    notes = [f"- {row['label']}, seed {r['seed']}: not trained again, the run of {r['reused_from']} (the same recipe)"
             for row in rows for r in row["runs"] if r.get("reused_from")]
    lines += ["", "Reused runs:", "", *notes] if notes else []
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    zoo_tables.add_schedule_arguments(parser, resolutions=[16], epochs="epochs at N")
    parser.add_argument("--resolution", type=int, choices=[16, 32, 64], required=True)
    parser.add_argument("--decay", choices=["constant", "cosine"], default="cosine")
    parser.add_argument("--label", required=True, help="the row's name in the table (the same label is replaced)")
    parser.add_argument("--out", default="benchmarks/results/zoo/logk")
    parser.add_argument("--reuse", action="store_true",
                        help="take a seed's run from a row of the table with the same recipe instead of training it again")
    parser.add_argument("--targets", type=float, nargs="*", default=[],
                        help="columns of training CPU seconds to these validation relative L2 errors")
    parser.add_argument("--reuse-preset", nargs="+", metavar="DIR",
                        help="take a seed's run from these preset folders when their recipe is this one (their card)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{args.problem}_n{args.resolution}.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    row = {"label": args.label, "command": "python " + shlex.join(sys.argv), "recipe": build(args, args.seeds[0]),
           "runs": []}
    earlier = list(rows)
    for seed in args.seeds:
        row["runs"].append(reused(args, seed, earlier) or run(build(args, seed), args.data_dir))
        latest = row["runs"][-1]
        print(args.label, seed, f"test rel. L2 {latest['test']['relative_l2']:.4f}",
              f"CPU {latest['cpu_time_s']:.0f} s, wall {latest['wall_time_s']:.0f} s", flush=True)
        rows = [r for r in rows if r["label"] != args.label] + [row]
        path.write_text(json.dumps(rows, indent=1))  # after each seed: a stopped run keeps what it measured
    _report.write(table(args.problem, args.resolution, rows, args.targets), out / f"{args.problem}_n{args.resolution}.md")
    print("median test rel. L2", np.median([r["test"]["relative_l2"] for r in row["runs"]]))


if __name__ == "__main__":
    main()
