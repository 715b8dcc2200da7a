"""Coarse to fine from one ``zoo_budget.py`` run against one level from others (other rates), seed by seed.

``zoo_budget.py`` compares coarse to fine with one level at the *same* Adam
rate. A fair baseline is one level at *its* best rate, which may differ:
this reads a coarse-to-fine run (``--multilevel``, a ``zoo_budget.py``
results folder) and the one-level runs of any number of others
(``--single``, e.g. a rate sweep with several ``--single-epochs``), matches
them U-Net by U-Net and seed by seed, and writes for every one-level budget:
its work units, its final validation relative L2 and its error over the
coarse-to-fine run's (above 1: coarse to fine is better). Nothing is trained.

Usage::

    python benchmarks/zoo_tuned.py --problem darcy --multilevel benchmarks/results/zoo/budget/grown/lr0.004/n16 \\
        --single benchmarks/results/zoo/budget/pyramid/lr0.004 benchmarks/results/zoo/budget/pyramid/lr0.008 \\
        --out benchmarks/results/zoo/budget/grown/tuned_darcy_n16.md
"""

import argparse
import json
import pathlib
import re
import sys

import _report  # benchmarks/_report.py, beside this script


def results(folder, problem):
    """A ``zoo_budget.py`` results file: its command and rows by U-Net."""
    data = json.loads((pathlib.Path(folder) / f"{problem}.json").read_text())
    return data["command"], {row["preset"]: row for row in data["rows"]}


def rate(command):
    """The Adam rate a ``zoo_budget.py`` command trained with (its default: 0.002)."""
    found = re.search(r"--learning-rate (\S+)", command)
    return found.group(1) if found else "0.002"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", choices=["poisson", "darcy"], required=True)
    parser.add_argument("--multilevel", required=True, help="the zoo_budget.py results folder of the coarse-to-fine runs")
    parser.add_argument("--single", nargs="+", required=True, help="zoo_budget.py results folders of one-level runs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    command, multilevel = results(args.multilevel, args.problem)
    singles = [(folder, *results(folder, args.problem)) for folder in args.single]
    lines = [
        f"# Coarse to fine against one level at other rates ({args.problem}), seed by seed",
        "",
        f"Command: `{' '.join(['python', *sys.argv])}` (reads zoo_budget.py results, trains nothing)",
        "",
        f"Coarse to fine (Adam {rate(command)}): `{command}`. One level: the one-level runs of",
        "",
        *(f"- `{single_command}`" for _, single_command, _ in singles),
        "",
        "Cells: median [min-max] over seeds; the error ratio is one level's final validation relative L2 over "
        "coarse to fine's, seed by seed (above 1: coarse to fine is better).",
        "",
        "| U-Net | coarse to fine: WU | final val rel. L2 | one level: Adam rate, epochs at N | WU | final val rel. L2 "
        "| error ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder, single_command, single in singles:
        for preset, row in multilevel.items():
            if preset not in single:
                continue
            if single[preset]["seeds"] != row["seeds"]:
                raise ValueError(f"{folder}: {preset} has seeds {single[preset]['seeds']}, the coarse-to-fine run {row['seeds']}.")
            for epochs, runs in single[preset]["single"].items():
                ratios = [s["final"] / m["final"] for s, m in zip(runs, row["multilevel"])]
                lines.append(
                    f"| {preset} | {_report.spread([m['work_units'] for m in row['multilevel']], '.0f')} | "
                    f"{_report.spread([m['final'] for m in row['multilevel']], '.4f')} | {rate(single_command)}, {epochs} | "
                    f"{_report.spread([s['work_units'] for s in runs], '.0f')} | {_report.spread([s['final'] for s in runs], '.4f')} | "
                    f"{_report.spread(ratios, '.2f')} |"
                )
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    _report.write(lines, args.out)


if __name__ == "__main__":
    main()
