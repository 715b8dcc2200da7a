"""What a FAS V-cycle costs beyond its work units: wall time and peak memory against plain ``model.fit``.

Issue 11's targets: a V-cycle's wall time no more than 1.1x its work units
times the time of one plain ``model.fit`` SGD step, and a FAS run's peak
memory no more than 1.2x that of plain ``model.fit`` on the same data. Each
configuration trains in a fresh process (so peak resident memory is its
own), on the same arrays and the same ``tf.data`` pipeline as
``benchmarks/fas_tables.py``; plain SGD and FAS alternate, ``--repeats``
times, so that load on this shared machine hits both alike. Time per work
unit is measured after the first epoch (which traces); tracing is reported
apart.

Usage::

    python benchmarks/fas_overhead.py --problem poisson --levels 2 3 --work-units 1500 --repeats 3 \\
        --out benchmarks/results/fas/overhead_poisson.md
"""

import argparse
import json
import pathlib
import shlex
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _report  # noqa: E402  (benchmarks/_report.py)


def measure(problem, levels, work_units, seed):
    """In this process: one run; prints a JSON line with its timings and peak memory."""
    import resource

    import fas_tables

    settings = fas_tables.SETTINGS[problem]
    data = (
        fas_tables.arrays(problem, "train", settings["target"], 32),
        fas_tables.arrays(problem, "validation", settings["target"], 32),
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    record = fas_tables.train(levels, settings["networks"]["dense"], settings, data, work_units, 100, seed)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "levels": levels,
        "seconds_per_work_unit": record["seconds_per_work_unit"],
        "first_epoch_seconds": record["train_seconds"][0],
        "first_epoch_work_units": record["work_units"][0],
        "peak_mb": peak / 1024, "data_mb": before / 1024,
        "cycle_work_units": record["cycle_work_units"],
    }))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", choices=("poisson", "darcy"), default="poisson")
    parser.add_argument("--levels", type=int, nargs="+", default=[2])
    parser.add_argument("--work-units", type=float, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # internal: one run in this process
    args = parser.parse_args(argv)
    if args.measure is not None:
        measure(args.problem, args.measure, args.work_units, seed=0)
        return
    runs = {levels: [] for levels in [1, *args.levels]}
    for repeat in range(args.repeats):
        for levels in runs:
            output = subprocess.run(
                [sys.executable, __file__, "--problem", args.problem, "--work-units", str(args.work_units), "--measure", str(levels)],
                check=True, capture_output=True, text=True,
            ).stdout
            runs[levels].append(json.loads(output.strip().splitlines()[-1]))
            print(f"repeat {repeat}, {levels} level(s): {runs[levels][-1]}", flush=True)
    plain = runs[1]
    lines = [
        f"# FAS overhead on the {args.problem.capitalize()} N=32 dense network: wall time and peak memory against plain `model.fit`",
        "",
        "Command: `python " + " ".join(shlex.quote(a) for a in ["benchmarks/fas_overhead.py", *(argv if argv is not None else sys.argv[1:])]) + "`",
        "",
        f"Median [min-max] of {args.repeats} alternating runs, each in its own process, {args.work_units:g} work units each. "
        "Time per work unit after the first epoch (which traces) and its ratio to plain SGD's in the same repeat; "
        "the first epoch (tracing included) apart; peak resident memory of the process, and of it what was "
        "resident once the data were loaded.",
        "",
        "| levels | work units / cycle | ms / work unit | vs plain fit | first epoch (s) | peak memory (MB) | vs plain fit | of it, data loaded (MB) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for levels, records in runs.items():
        time_ratio = [r["seconds_per_work_unit"] / p["seconds_per_work_unit"] for r, p in zip(records, plain)]
        memory_ratio = [r["peak_mb"] / p["peak_mb"] for r, p in zip(records, plain)]
        lines.append(
            f"| {levels} | {records[0]['cycle_work_units']:.2f} | {_report.spread([1e3 * r['seconds_per_work_unit'] for r in records], '.1f')} | "
            f"{_report.spread(time_ratio, '.2f')}x | {_report.spread([r['first_epoch_seconds'] for r in records], '.1f')} | "
            f"{_report.spread([r['peak_mb'] for r in records], '.0f')} | {_report.spread(memory_ratio, '.2f')}x | "
            f"{_report.spread([r['data_mb'] for r in records], '.0f')} |"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        _report.write(lines, args.out)
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
