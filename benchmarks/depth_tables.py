"""Gaedke-Merzhäuser et al.'s (2021) depth experiments on the co-centric circles, several seeds per row.

Studies (``--study``):

* ``table1``: Gaedke-Merzhäuser et al. (2021, Table 1), V-cycles and work units to the stopping rule for
  1, 2, 4, 6 and 8 levels (the set-ups of Gaedke-Merzhäuser et al., 2021, §4.1) at 2,048 blocks.
* ``table2``: Gaedke-Merzhäuser et al. (2021, Table 2), the six 8-level step set-ups.
* ``fig5``: Gaedke-Merzhäuser et al. (2021, Fig 5), the cost for 256 to 2,048 blocks, one level and 6 levels.
* ``coarse_steps``: 8 levels at 2,048 blocks with larger steps on the coarse
  levels (``learning_rate_divisor`` eta = 1, 1/sqrt 2, 1/2: level ``i`` uses
  the learning rate times ``eta^-i``), with and without the acceptance test on
  coarse corrections, against one level. Gaedke-Merzhäuser et al.'s (2021) Euclidean gradients
  amount to eta = 1/2 in the L2(0, T) inner product (a block's Euclidean
  gradient is ``h_i`` times its L2 one, and ``h_i`` doubles per level).
* ``digits``: Gaedke-Merzhäuser et al.'s (2021, Table 1) MNIST row on the closest real image set a package
  ships (MNIST cannot be downloaded here and no registry package ships it):
  scikit-learn's 8x8 digits (1,797 images; 1,297 to train, 500 to validate,
  pixels scaled to [0, 1] and centred as Gaedke-Merzhäuser et al. (2021, §4) do), width 10, Tikhonov
  1e-5, stop at validation accuracy 0.93. The training set is smaller than
  two of Gaedke-Merzhäuser et al.'s (2021) mini-batches of 1,000, so each step takes the whole set;
  learning rate 0.1 (Gaedke-Merzhäuser et al. (2021) use 0.01 with Euclidean gradients).
* ``safeguards``: what keeps a diverging coarse level from wrecking the fine
  weights, across learning rates 0.1, 0.5 and 1.0 and ``learning_rate_divisor``
  1 and 1/sqrt 2 (8 levels, against one level at each rate): only non-finite
  corrections discarded, a bound on a correction's size relative to the
  weights (``correction_bound`` 3 and 10), or the acceptance test
  (``correction_test``); with the number of discarded corrections per run.
* ``sensitivity``: Gaedke-Merzhäuser et al. (2021, §4.1), learning rate in {0.05, 0.1, 0.5} x Tikhonov beta
  in {1e-3, 1e-4, 1e-5}, one level against 8 levels; and each method at its
  best learning rate (the ratio a user gains).

Every run is full-batch gradient descent (``keras_multilevel.cli.circles.train_circles``:
2,000 training and 1,000 validation points of the source problem, seed ``s``
for the data and the initial weights), with the default L2(0, T) level inner
products, and stops when the validation accuracy reaches ``--target`` or the
work units reach ``--budget``. Wall time to the target *includes* the first
cycle's tracing and compilation. Cells are ``median [min-max]`` over seeds;
"-" means not reached within the budget.

Usage::

    python benchmarks/depth_tables.py --study table1 --seeds 0 1 2 --out benchmarks/results/depth
"""

import argparse
import json
import pathlib
import sys

import numpy as np

import _report  # benchmarks/_report.py, beside this script

from keras_multilevel.cli import circles

LEVEL_SETUPS = {1: "[{1}]", 2: "[(1),{2}]", 4: "[(1),1,2,{2}]", 6: "[(1),1,1,2,2,{2}]", 8: "[(1),1,1,1,2,2,2,{2}]"}
TABLE2_SETUPS = [
    "[1,1,1,1,1,1,1,{1}]", "[1,1,1,1,1,1,1,{2}]", "[1,1,1,1,1,1,1,{5}]",
    "[1,1,1,1,1,1,1,{10}]", "[1,1,1,1,2,2,2,{2}]", "[(1),1,1,1,2,2,2,{2}]",
]
THRESHOLDS = (0.95, 0.98, 0.99, 1.0)


def record(run, target):
    """What a table needs of one run: work units, cycles and seconds (tracing included) to each threshold."""
    seconds = np.cumsum(run.durations)
    reached = {}
    for threshold in sorted({*THRESHOLDS, target}):
        hit = run.first_reaching(accuracy=threshold)
        reached[str(threshold)] = None if hit is None else {
            "cycles": hit + 1, "work_units": run.work_units[hit], "seconds": float(seconds[hit]),
        }
    return {
        "levels": run.levels, "steps": run.steps, "cycle_work_units": run.cycle_work_units,
        "reached": reached, "best_accuracy": max(run.val_accuracy), "trace_seconds": run.trace_seconds,
        "seconds_per_cycle": run.seconds_per_cycle, "work_units": run.work_units, "val_accuracy": run.val_accuracy,
        "discarded_corrections": run.discarded_corrections,
    }


def at(records, threshold, key):
    return [None if r["reached"][str(threshold)] is None else r["reached"][str(threshold)][key] for r in records]


def median(values):
    got = [v for v in values if v is not None]
    return float(np.median(got)) if len(got) == len(values) else None


def digits_data(seed):
    """scikit-learn's 8x8 digits, scaled to [0, 1] and centred, split 1,297 / 500 by seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    x -= x.mean(axis=0)
    y = np.eye(10, dtype="float32")[digits.target]
    order = np.random.default_rng(seed).permutation(len(x))
    return (x[order[:1297]], y[order[:1297]]), (x[order[1297:]], y[order[1297:]])


def train(args, levels, seed, **kwargs):
    data = digits_data(seed) if args.study == "digits" else circles.circles_data(seed=seed)
    settings = {"blocks": args.blocks, "learning_rate": args.learning_rate, "regularization": args.regularization,
                "learning_rate_divisor": args.learning_rate_divisor, **kwargs}
    run = circles.train_circles(levels, data, target_accuracy=args.target, budget=args.budget, seed=seed, **settings)
    result = record(run, args.target)
    result.update(seed=seed, **{key: value for key, value in settings.items() if key != "steps"})
    reached = result["reached"][str(args.target)]
    outcome = "not reached" if reached is None else f"{reached['work_units']:.1f} WU, {reached['seconds']:.1f} s"
    print(f"  L={levels} {result['steps']} seed={seed} {settings}: {outcome} "
          f"(best {result['best_accuracy']:.3f}, trace {result['trace_seconds']:.1f} s)", flush=True)
    return result


def rows_by(results, key):
    groups = {}
    for result in results:
        groups.setdefault(key(result), []).append(result)
    return groups


def cost_table(groups, label, baseline_key, target):
    """Rows: a group of seeds each; columns: cycles, U and seconds to the target, speed-ups against the baseline group."""
    base = groups[baseline_key]
    base_units, base_seconds = median(at(base, target, "work_units")), median(at(base, target, "seconds"))
    lines = [
        f"| {label} | set-up | U_c | V-cycles to {target:g} | U to {target:g} | speed-up in U (median) "
        f"| s to {target:g}, tracing included | speed-up in time (median) | U to 0.95 | U to 0.98 | best val. acc. "
        "| tracing, s | s / V-cycle |",
        "|" + "---|" * 13,
    ]
    for key, records in groups.items():
        units, seconds = median(at(records, target, "work_units")), median(at(records, target, "seconds"))
        lines.append(
            f"| {key} | `{records[0]['steps']}` | {records[0]['cycle_work_units']:.2f} "
            f"| {_report.spread(at(records, target, 'cycles'), '.0f')} | {_report.spread(at(records, target, 'work_units'), '.1f')} "
            f"| {'-' if None in (units, base_units) else f'{base_units / units:.2f}'} "
            f"| {_report.spread(at(records, target, 'seconds'), '.1f')} "
            f"| {'-' if None in (seconds, base_seconds) else f'{base_seconds / seconds:.2f}'} "
            f"| {_report.spread(at(records, 0.95, 'work_units'), '.1f')} | {_report.spread(at(records, 0.98, 'work_units'), '.1f')} "
            f"| {_report.spread([r['best_accuracy'] for r in records], '.3f')} "
            f"| {_report.spread([r['trace_seconds'] for r in records], '.1f')} | {_report.spread([r['seconds_per_cycle'] for r in records], '.3f')} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--study", choices=["table1", "table2", "fig5", "sensitivity", "digits", "coarse_steps", "safeguards"], required=True
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--blocks", type=int, default=2048)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--regularization", type=float, default=1e-4)
    parser.add_argument("--learning-rate-divisor", type=float, default=1.0,
                        help="eta: level i steps with the learning rate / eta^i (coarse_steps sets its own)")
    parser.add_argument("--target", type=float, default=0.99, help="validation accuracy that stops a run")
    parser.add_argument("--budget", type=float, default=300.0, help="work units at most per run")
    parser.add_argument("--out", default="benchmarks/results/depth")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/depth_tables.py " + " ".join(sys.argv[1:] if argv is None else argv)

    results, lines = [], []
    header = (
        f"Command: `{command}`\n\n{args.blocks} residual blocks of width 3 (T = 1), full-batch gradient descent, "
        f"learning rate {args.learning_rate} (divided by {args.learning_rate_divisor:.3f}^i on level i), "
        f"Tikhonov beta {args.regularization}, L2(0, T) level inner products; "
        f"stop at validation accuracy {args.target:g} or {args.budget:g} work units; seeds {args.seeds}. "
        "Cells: median [min-max] over seeds. Times include tracing.\n"
    )
    if args.study == "digits":
        for levels in (1, 8):
            for seed in args.seeds:
                results.append(train(args, levels, seed, width=10, steps=None if levels == 1 else LEVEL_SETUPS[levels]))
        groups = rows_by(results, lambda r: r["levels"])
        lines = ["# Gaedke-Merzhäuser et al. (2021, Table 1), MNIST row, on scikit-learn's 8x8 digits\n",
                 header.replace("of width 3", "of width 10"), *cost_table(groups, "L", 1, args.target)]
    elif args.study == "coarse_steps":
        setups = [(1, 1.0, False)] + [(8, eta, test) for eta in (1.0, 0.5**0.5, 0.5) for test in (False, True)]
        for levels, eta, test in setups:
            for seed in args.seeds:
                results.append(train(args, levels, seed, steps=None if levels == 1 else LEVEL_SETUPS[8],
                                     learning_rate_divisor=eta, correction_test=test))
        groups = rows_by(results, lambda r: f"{r['levels']}, eta {r['learning_rate_divisor']:.3f}, "
                                            f"test {'on' if r['correction_test'] else 'off'}")
        lines = ["# Larger coarse steps and the acceptance test (8 levels), co-centric circles\n", header,
                 *cost_table(groups, "L, eta, test", next(iter(groups)), args.target)]
    elif args.study == "safeguards":
        safeguards = {"finite only": {"correction_bound": None}, "bound 10": {"correction_bound": 10.0},
                      "bound 3": {"correction_bound": 3.0}, "test": {"correction_bound": None, "correction_test": True}}
        rates, etas = (0.1, 0.5, 1.0), (1.0, 0.5**0.5)
        for rate in rates:
            for seed in args.seeds:
                # alternating configurations seed by seed, so that machine load falls on all of them alike
                results.append(dict(train(args, 1, seed, learning_rate=rate, steps=None), safeguard="-"))
                for eta in etas:
                    for label, options in safeguards.items():
                        results.append(dict(train(args, 8, seed, learning_rate=rate, steps=LEVEL_SETUPS[8],
                                                  learning_rate_divisor=eta, **options), safeguard=label))
        lines = ["# Safeguards against a diverging coarse level (8 levels), co-centric circles\n",
                 header.replace(f"learning rate {args.learning_rate} (divided by {args.learning_rate_divisor:.3f}^i on "
                                "level i)", "learning rate and divisor eta as in each row"),
                 f"| learning rate | L, eta | safeguard | reached {args.target:g} | U to {args.target:g} "
                 f"| s to {args.target:g}, tracing included | best val. acc. | discarded corrections per run |",
                 "|" + "---|" * 8]
        for rate in rates:
            groups = rows_by([r for r in results if r["learning_rate"] == rate],
                             lambda r: (r["levels"], r["learning_rate_divisor"], r["safeguard"]))
            for (levels, eta, label), records in groups.items():
                reached = sum(r["reached"][str(args.target)] is not None for r in records)
                lines.append(
                    f"| {rate:g} | {levels}, {eta:.3f} | {label} | {reached}/{len(records)} "
                    f"| {_report.spread(at(records, args.target, 'work_units'), '.1f')} "
                    f"| {_report.spread(at(records, args.target, 'seconds'), '.1f')} "
                    f"| {_report.spread([r['best_accuracy'] for r in records], '.3f')} "
                    f"| {_report.spread([r['discarded_corrections'][-1] for r in records], '.0f')} |"
                )
    elif args.study in ("table1", "table2"):
        setups = LEVEL_SETUPS.items() if args.study == "table1" else [(8, steps) for steps in TABLE2_SETUPS]
        if args.study == "table2":
            setups = [(1, LEVEL_SETUPS[1]), *setups]
        for levels, steps in setups:
            for seed in args.seeds:
                results.append(train(args, levels, seed, steps=None if levels == 1 else steps))
        groups = rows_by(results, lambda r: r["levels"] if args.study == "table1" else f"{r['levels']}: `{r['steps']}`")
        title = "Gaedke-Merzhäuser et al. (2021, Table 1)" if args.study == "table1" else "Gaedke-Merzhäuser et al. (2021, Table 2) (8 levels; one level first)"
        lines = [f"# {title}, co-centric circles\n", header,
                 *cost_table(groups, "L", next(iter(groups)), args.target)]
    elif args.study == "fig5":
        for blocks in (256, 512, 1024, 2048):
            for levels in (1, 6):
                for seed in args.seeds:
                    results.append(train(args, levels, seed, blocks=blocks, steps=None if levels == 1 else LEVEL_SETUPS[6]))
        lines = [f"# Gaedke-Merzhäuser et al. (2021, Fig 5): cost against depth, co-centric circles\n", header.replace(f"{args.blocks} residual", "K residual")]
        for levels in (1, 6):
            groups = rows_by([r for r in results if r["levels"] == levels], lambda r: r["blocks"])
            lines += ["", f"## {levels} level{'s' if levels > 1 else ''}", "",
                      *cost_table(groups, "K", next(iter(groups)), args.target)]
    else:
        for beta in (1e-3, 1e-4, 1e-5):
            for rate in (0.05, 0.1, 0.5):
                for levels in (1, 8):
                    for seed in args.seeds:
                        results.append(train(args, levels, seed, learning_rate=rate, regularization=beta,
                                             steps=None if levels == 1 else LEVEL_SETUPS[8]))
        lines = ["# Gaedke-Merzhäuser et al. (2021, §4.1) sensitivity study, co-centric circles\n",
                 header.replace(f"learning rate {args.learning_rate} (divided by {args.learning_rate_divisor:.3f}^i on "
                               f"level i), Tikhonov beta {args.regularization}",
                               "learning rate and Tikhonov beta as in each row"),
                 f"| beta | learning rate | U to {args.target:g}, 1 level | U to {args.target:g}, 8 levels "
                 "| ratio of medians | s, 1 level | s, 8 levels | ratio of medians (time) |",
                 "|" + "---|" * 8]
        ratios = []
        for beta in (1e-3, 1e-4, 1e-5):
            for rate in (0.05, 0.1, 0.5):
                cell = [r for r in results if r["regularization"] == beta and r["learning_rate"] == rate]
                one, eight = ([r for r in cell if r["levels"] == n] for n in (1, 8))
                u1, u8 = median(at(one, args.target, "work_units")), median(at(eight, args.target, "work_units"))
                s1, s8 = median(at(one, args.target, "seconds")), median(at(eight, args.target, "seconds"))
                ratio = None if None in (u1, u8) else u1 / u8
                ratios.append(ratio)
                lines.append(
                    f"| {beta:g} | {rate:g} | {_report.spread(at(one, args.target, 'work_units'), '.1f')} "
                    f"| {_report.spread(at(eight, args.target, 'work_units'), '.1f')} | {'-' if ratio is None else f'{ratio:.2f}'} "
                    f"| {_report.spread(at(one, args.target, 'seconds'), '.1f')} | {_report.spread(at(eight, args.target, 'seconds'), '.1f')} "
                    f"| {'-' if None in (s1, s8) else f'{s1 / s8:.2f}'} |"
                )
        got = [r for r in ratios if r is not None]
        lines += ["", f"Ratio U(1 level) / U(8 levels) over the {len(got)} of 9 set-ups where both reach the target: "
                  f"mean {np.mean(got):.2f}, relative standard deviation {100 * np.std(got) / np.mean(got):.1f} % "
                  "(Gaedke-Merzhäuser et al., 2021, §4.1: 3.54, 8.02 %)." if got else "No set-up reached the target with both methods."]
        lines += ["", "Best against best (each method at the learning rate of this grid that reaches the target "
                  "in the fewest median work units, per beta):", "",
                  "| beta | 1 level: rate, U, s | 8 levels: rate, U, s | ratio in U | ratio in time |", "|---|---|---|---|---|"]
        for beta in (1e-3, 1e-4, 1e-5):
            best = {}
            for levels in (1, 8):
                options = []
                for rate in (0.05, 0.1, 0.5):
                    cell = [r for r in results if r["regularization"] == beta and r["learning_rate"] == rate and r["levels"] == levels]
                    units, seconds = median(at(cell, args.target, "work_units")), median(at(cell, args.target, "seconds"))
                    if units is not None:
                        options.append((units, seconds, rate))
                best[levels] = min(options) if options else None
            if None in best.values():
                lines.append(f"| {beta:g} | {best[1]} | {best[8]} | - | - |")
                continue
            (u1, s1, r1), (u8, s8, r8) = best[1], best[8]
            lines.append(f"| {beta:g} | {r1:g}, {u1:.1f}, {s1:.1f} | {r8:g}, {u8:.1f}, {s8:.1f} | {u1 / u8:.2f} | {s1 / s8:.2f} |")
    name = args.study if args.blocks == 2048 or args.study == "fig5" else f"{args.study}_k{args.blocks}"
    if args.learning_rate != 0.1 and args.study != "sensitivity":
        name += f"_lr{args.learning_rate:g}"
    if args.learning_rate_divisor != 1.0:
        name += f"_eta{args.learning_rate_divisor:.3f}"
    (out / f"{name}.json").write_text(json.dumps(results, indent=1))
    _report.write(lines, out / f"{name}.md")


if __name__ == "__main__":
    main()
