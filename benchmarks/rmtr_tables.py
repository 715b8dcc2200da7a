"""RMTR with L-SR1 (003) on the co-centric circles against MG/OPT, a single-level L-SR1 trust region and SGD.

The depth set-up of ``depth_tables.py`` (paper 000 §4: the circles ResNet of
width 3, 2,000 training and 1,000 validation points, full batch, seed ``s``
for the data and the initial weights, L2(0, T) level inner products), run to
the same validation accuracy ``--target`` (or ``--budget`` work units), each
row for every seed:

* ``SGD, lr r``: one level, gradient descent at learning rates 0.1 and 0.5
  (0.5 is one level's best of 000 §4.1's grid, see results/depth/sensitivity_k512.md);
* ``MG/OPT``: ``--levels`` levels, 000 §4.1's set-up, SGD(0.1) smoother;
* ``L-SR1 TR``: ``scheme="rmtr"`` with one level (four trust-region steps
  per cycle: five gradients);
* ``RMTR``: ``scheme="rmtr"`` with ``--levels`` levels and 000 §4.1's set-up.

Wall time includes each run's tracing. The default trust-region constants
(:class:`keras_multilevel.optimizers.TrustRegion`) are used untuned.

Usage::

    python benchmarks/rmtr_tables.py --seeds 0 1 2 --out benchmarks/results/rmtr
"""

import argparse
import json
import pathlib
import sys

import _report  # benchmarks/_report.py, beside this script
import depth_tables  # the circles runs, their records and tables

METHODS = {
    "SGD, lr 0.1": {"levels": 1, "steps": "[{1}]", "learning_rate": 0.1},
    "SGD, lr 0.5": {"levels": 1, "steps": "[{1}]", "learning_rate": 0.5},
    "MG/OPT": {"levels": None, "learning_rate": 0.1},
    "L-SR1 TR": {"levels": 1, "steps": "[{4}]", "learning_rate": None, "scheme": "rmtr"},
    "RMTR": {"levels": None, "learning_rate": None, "scheme": "rmtr"},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--blocks", type=int, default=64)
    parser.add_argument("--levels", type=int, default=4, choices=sorted(depth_tables.LEVEL_SETUPS))
    parser.add_argument("--regularization", type=float, default=1e-4)
    parser.add_argument("--target", type=float, default=0.99, help="validation accuracy that stops a run")
    parser.add_argument("--budget", type=float, default=300.0, help="work units at most per run")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--out", default="benchmarks/results/rmtr")
    args = parser.parse_args(argv)
    args.study, args.learning_rate, args.learning_rate_divisor = "circles", 0.1, 1.0  # what depth_tables.train reads
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/rmtr_tables.py " + " ".join(sys.argv[1:] if argv is None else argv)

    results = []
    for method in args.methods:
        settings = dict(METHODS[method])
        levels = settings.pop("levels") or args.levels
        settings.setdefault("steps", depth_tables.LEVEL_SETUPS[levels])
        for seed in args.seeds:
            print(method, flush=True)
            result = depth_tables.train(args, levels, seed, **settings)
            result["method"] = method
            results.append(result)
    groups = depth_tables.rows_by(results, lambda r: r["method"])
    lines = [
        "# RMTR with L-SR1 (003) against MG/OPT, a single-level L-SR1 trust region and SGD, co-centric circles\n",
        f"Command: `{command}`\n\n{args.blocks} residual blocks of width 3 (T = 1), full batch (2,000 points), "
        f"Tikhonov beta {args.regularization}, L2(0, T) level inner products, {args.levels} levels for MG/OPT and RMTR; "
        f"stop at validation accuracy {args.target:g} or {args.budget:g} work units; seeds {args.seeds}. "
        "Trust-region constants: the defaults of `TrustRegion`, untuned. "
        "Cells: median [min-max] over seeds; speed-ups against the first row. Times include tracing.\n",
        *depth_tables.cost_table(groups, "method", next(iter(groups)), args.target),
    ]
    name = f"circles_k{args.blocks}_l{args.levels}"
    _report.write(lines, out / f"{name}.md")
    (out / f"{name}.json").write_text(json.dumps({"command": command, "results": results}, indent=1))


if __name__ == "__main__":
    main()
