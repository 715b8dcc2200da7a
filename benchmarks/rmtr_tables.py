"""RMTR with L-SR1 (Kopaničáková and Krause, 2023) on the co-centric circles against MG/OPT, a single-level L-SR1 trust region and SGD.

The depth set-up of ``depth_tables.py`` (Gaedke-Merzhäuser et al., 2021, §4: the circles ResNet of
width 3, 2,000 training and 1,000 validation points, full batch, seed ``s``
for the data and the initial weights, L2(0, T) level inner products), run to
the same validation accuracy ``--target`` (or ``--budget`` work units), each
row for every seed:

* ``SGD, lr r``: one level, gradient descent at learning rates 0.1 and 0.5
  (0.5 is one level's best of Gaedke-Merzhäuser et al.'s (2021, §4.1) grid, see results/depth/sensitivity_k512.md);
* ``MG/OPT``: ``--levels`` levels, Gaedke-Merzhäuser et al.'s (2021, §4.1) set-up, SGD(0.1) smoother;
* ``L-SR1 TR``: ``scheme="rmtr"`` with one level (four trust-region steps
  per cycle: five gradients);
* ``RMTR``: ``scheme="rmtr"`` with ``--levels`` levels and Gaedke-Merzhäuser et al.'s (2021, §4.1) set-up.

Wall time includes each run's tracing. The default trust-region constants
(:class:`keras_multilevel.optimizers.TrustRegion`) are used untuned.

``--problem poisson``: one PDE regression problem, Ponce et al.'s (2022) Poisson data at
N = 16 (1,000 training and 500 validation examples of the generated set, the
3 input fields flattened to 768 numbers, the 256 values of ``u`` the
outputs), a dense residual network (width 32, ``--blocks`` blocks, linear
head, MSE), full batch, ``--budget`` work units for every method. SGD runs at
learning rates 0.05, 0.1, 0.2 and 0.4 (a first run with 0.02, 0.05, 0.1 had
its best at the edge, 0.1), MG/OPT at the rate of SGD's best row; the
target is the median final validation MSE of SGD's best row, and the table
gives each method's work units and seconds to reach it.

Usage::

    python benchmarks/rmtr_tables.py --seeds 0 1 2 --out benchmarks/results/rmtr
    python benchmarks/rmtr_tables.py --problem poisson --blocks 16 --budget 200 --seeds 0 1 2 --out benchmarks/results/rmtr
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np

import _report  # benchmarks/_report.py, beside this script
import depth_tables  # the circles runs, their records and tables

METHODS = {
    "SGD, lr 0.1": {"levels": 1, "steps": "[{1}]", "learning_rate": 0.1},
    "SGD, lr 0.5": {"levels": 1, "steps": "[{1}]", "learning_rate": 0.5},
    "MG/OPT": {"levels": None, "learning_rate": 0.1},
    "L-SR1 TR": {"levels": 1, "steps": "[{4}]", "learning_rate": None, "scheme": "rmtr"},
    "RMTR": {"levels": None, "learning_rate": None, "scheme": "rmtr"},
}


SGD_RATES = (0.05, 0.1, 0.2, 0.4)


def poisson_data():
    """Ponce et al.'s (2022) Poisson set at N = 16: the first 1,000 training and 500 validation examples, flattened."""
    from keras_multilevel import datasets

    def arrays(split, count):
        x, u = next(iter(datasets.load("poisson", resolution=16, split=split, batch_size=count)))
        return x.numpy().reshape(count, -1), u.numpy().reshape(count, -1)

    return arrays("train", 1000), arrays("validation", 500)


def train_poisson(data, levels, seed, steps, learning_rate, blocks, budget, scheme="mgopt"):
    """Full-batch training to ``budget`` work units; the validation MSE and seconds (tracing included) per cycle."""
    import keras

    import keras_multilevel as kml

    (x, y), (x_val, y_val) = data
    keras.utils.set_random_seed(seed)
    model = kml.models.residual_network(x.shape[1:], outputs=y.shape[1], width=32, blocks=blocks,
                                        output_activation=None)
    smoother = None if learning_rate is None else keras.optimizers.SGD(learning_rate)
    optimizer = kml.MultilevelOptimizer(levels=levels, scheme=scheme, smoother=smoother, steps=steps)
    model.compile(optimizer=optimizer, loss="mse")
    work, losses, seconds, started = [], [], [], time.perf_counter()
    while not work or work[-1] < budget:
        logs = model.train_on_batch(x, y, return_dict=True)
        seconds.append(time.perf_counter() - started)  # validation not counted
        losses.append(float(model.evaluate(x_val, y_val, batch_size=len(x_val), verbose=0)))
        work.append(float(logs["work_units"]))
        started = time.perf_counter() - seconds[-1]
        if not np.isfinite(losses[-1]):
            break
    return {"levels": levels, "steps": str(optimizer.steps), "cycle_work_units": optimizer.cycle_work_units,
            "seed": seed, "learning_rate": learning_rate, "scheme": scheme, "work_units": work,
            "val_loss": losses, "seconds": seconds}


def reaching(record, target):
    """``(work units, seconds)`` when the validation MSE first reaches ``target``, or ``None``."""
    hits = [i for i, loss in enumerate(record["val_loss"]) if loss <= target]
    return None if not hits else (record["work_units"][hits[0]], record["seconds"][hits[0]])


def poisson(args, command):
    data = poisson_data()
    rows = {}

    def run(label, levels, steps, learning_rate, scheme="mgopt"):
        rows[label] = []
        for seed in args.seeds:
            record = train_poisson(data, levels, seed, steps, learning_rate, args.blocks, args.budget, scheme)
            print(f"  {label} seed={seed}: val MSE {record['val_loss'][-1]:.4g} at {record['work_units'][-1]:.1f} WU, "
                  f"{record['seconds'][-1]:.1f} s", flush=True)
            rows[label].append(record)

    for rate in SGD_RATES:
        run(f"SGD, lr {rate:g}", 1, "[{1}]", rate)
    finals = {label: np.median([r["val_loss"][-1] for r in records]) for label, records in rows.items()}
    finals = {label: value if np.isfinite(value) else np.inf for label, value in finals.items()}
    best = min(finals, key=finals.get)
    rate = rows[best][0]["learning_rate"]
    target = float(finals[best])
    steps = depth_tables.LEVEL_SETUPS[args.levels]
    run(f"MG/OPT, lr {rate:g}", args.levels, steps, rate)
    run("L-SR1 TR", 1, "[{4}]", None, "rmtr")
    run("RMTR", args.levels, steps, None, "rmtr")
    lines = [
        "# RMTR with L-SR1 (Kopaničáková and Krause, 2023) on a PDE regression problem: Poisson N = 16\n",
        f"Command: `{command}`\n\nPonce et al.'s (2022) Poisson data at N = 16 (1,000 training, 500 validation examples, "
        f"inputs flattened to 768, outputs the 256 values of u), dense residual network of width 32 with "
        f"{args.blocks} blocks and a linear head, MSE, full batch, {args.budget:g} work units per run, "
        f"{args.levels} levels for MG/OPT and RMTR (`{steps}`); seeds {args.seeds}. Target: validation MSE "
        f"{target:.4g}, the median final validation MSE of the best SGD row ({best}). Trust-region constants: "
        "the defaults, untuned. Cells: median [min-max] over seeds. Times include tracing, not validation.\n",
        f"| method | set-up | U_c | final val. MSE | U to {target:.4g} | s to {target:.4g} | s in all |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, records in rows.items():
        hits = [reaching(r, target) for r in records]
        lines.append(
            f"| {label} | `{records[0]['steps']}` | {records[0]['cycle_work_units']:.2f} "
            f"| {_report.spread([r['val_loss'][-1] for r in records], '.4g')} "
            f"| {_report.spread([None if h is None else h[0] for h in hits], '.1f')} "
            f"| {_report.spread([None if h is None else h[1] for h in hits], '.1f')} "
            f"| {_report.spread([r['seconds'][-1] for r in records], '.1f')} |"
        )
    return lines, [r for records in rows.values() for r in records]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", choices=["circles", "poisson"], default="circles")
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

    if args.problem == "poisson":
        lines, results = poisson(args, command)
        name = f"poisson_n16_k{args.blocks}_l{args.levels}"
        _report.write(lines, out / f"{name}.md")
        (out / f"{name}.json").write_text(json.dumps({"command": command, "results": results}, indent=1))
        return
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
        "# RMTR with L-SR1 (Kopaničáková and Krause, 2023) against MG/OPT, a single-level L-SR1 trust region and SGD, co-centric circles\n",
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
