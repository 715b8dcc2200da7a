"""The plain U-Net against its pyramid form, from two ``zoo_budget.py`` runs with the same seeds.

``zoo_budget.py`` trains each U-Net coarse to fine and on one level at equal
work; run once as is and once with ``--pyramid`` (``kml.models.unet(...,
pyramid=True)``: the input on every grid, a prediction summed from every
grid), it gives both architectures the same recipe, data and seeds. This
reads the two results (no training) and writes, per U-Net and seed:

* the final validation error of the plain U-Net over the pyramid's, for one
  level and for coarse to fine (above 1: the pyramid is better);
* how many times fewer work units the pyramid needs to reach the plain
  U-Net's final coarse-to-fine error (the previous presets' recipe): the
  plain run's work units over the pyramid run's at the first epoch whose
  validation error is at or below it (checked once per epoch, so a ratio is
  exact to an epoch; an empty cell: not reached).

The pyramid costs 2.4 % more multiply-adds per batch than the plain U-Net
(the input's channels on the coarser grids and an output layer per grid),
which a work unit does not count: a work unit is a gradient of each run's own
network.

Usage::

    python benchmarks/zoo_architecture.py --plain benchmarks/results/zoo/budget \\
        --pyramid benchmarks/results/zoo/budget/pyramid --out benchmarks/results/zoo/budget/pyramid/architecture.md
"""

import argparse
import json
import pathlib
import sys

import _report  # benchmarks/_report.py, beside this script


def single(row, epochs):
    """The one-level runs of a ``zoo_budget.py`` row with ``epochs`` epochs (its first version kept one list)."""
    return row["single"] if isinstance(row["single"], list) else row["single"][str(epochs)]


def work_to_reach(run, target):
    """Work units at the first epoch whose validation relative L2 is <= ``target``, else ``None``."""
    return next((epoch["work_units"] for epoch in run["epochs"] if epoch["val_relative_l2"] <= target), None)


def compare(plain, pyramid, epochs):
    """One table row per U-Net from the two runs' rows (same presets and seeds)."""
    if [row["preset"] for row in plain] != [row["preset"] for row in pyramid] or any(
        a["seeds"] != b["seeds"] for a, b in zip(plain, pyramid)
    ):
        raise ValueError("The two zoo_budget.py results must hold the same U-Nets with the same seeds.")
    rows = []
    for a, b in zip(plain, pyramid):
        targets = [run["final"] for run in a["multilevel"]]
        rows.append({
            "preset": a["preset"],
            "seeds": a["seeds"],
            "one level": [x["final"] / y["final"] for x, y in zip(single(a, epochs), single(b, epochs))],
            "coarse to fine": [x["final"] / y["final"] for x, y in zip(a["multilevel"], b["multilevel"])],
            "reach, one level": [
                None if (wu := work_to_reach(run, target)) is None else plain_run["work_units"] / wu
                for plain_run, run, target in zip(a["multilevel"], single(b, epochs), targets)
            ],
            "reach, coarse to fine": [
                None if (wu := work_to_reach(run, target)) is None else plain_run["work_units"] / wu
                for plain_run, run, target in zip(a["multilevel"], b["multilevel"], targets)
            ],
        })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plain", required=True, help="folder of zoo_budget.py's results without --pyramid")
    parser.add_argument("--pyramid", required=True, help="folder of zoo_budget.py's results with --pyramid")
    parser.add_argument("--problems", nargs="+", default=["poisson", "darcy"])
    parser.add_argument("--single-epochs", type=int, default=10, help="the one-level runs compared")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    rows = []
    for problem in args.problems:
        plain, pyramid = (json.loads((pathlib.Path(folder) / f"{problem}.json").read_text()) for folder in (args.plain, args.pyramid))
        rows += compare(plain["rows"], pyramid["rows"], args.single_epochs)
    lines = [
        "# The plain U-Net against its pyramid form (the same recipes, data and seeds)",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}` (reads the two zoo_budget.py results, trains nothing)",
        "",
        "Cells: median [min-max] over seeds, seed by seed. Error ratios: the plain U-Net's final validation "
        "relative L2 over the pyramid's (above 1: the pyramid is better), for one level "
        f"({args.single_epochs} epochs at N) and for coarse to fine (6 epochs at N/2, 8 at N). Work-unit ratios: "
        "the plain U-Net's coarse-to-fine work units over those at which the pyramid run first reaches its final "
        "error (checked once per epoch). The pyramid costs 2.4 % more multiply-adds per batch, which work units "
        "do not count.",
        "",
        "| U-Net | seeds | error ratio, one level | error ratio, coarse to fine "
        "| fewer work units to the plain coarse-to-fine error: pyramid one level | pyramid coarse to fine |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [_report.spread(row[key], ".2f") for key in ("one level", "coarse to fine", "reach, one level", "reach, coarse to fine")]
        lines.append(f"| {row['preset']} | {len(row['seeds'])} | " + " | ".join(cells) + " |")
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    _report.write(lines, args.out)


if __name__ == "__main__":
    main()
