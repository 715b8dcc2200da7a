"""keras-multilevel's width FAS against Ponce et al.'s (2022) own code (LLNL/MTNN), side by side.

For each seed, both codes train the same dense network from the same initial
weights (drawn by Keras with that seed) on the same regenerated data set,
with Ponce et al.'s (2022, §8) settings, for the same budget of work units: plain SGD
(1 level) and FAS V-cycles over width hierarchies of 2.. levels. Ours runs
in this process (``benchmarks/fas_tables.py``'s ``train``); MTNN runs in its
own environment through ``mtnn_fas.py`` (``--mtnn-python``, ``--mtnn``), so
it is never a dependency of the package. Writes one table (median and range
over the seeds) of the best validation L2 and L∞ within the budget, the
work units under both accountings (``measured``: a level costs its
parameter count over the finest's, which is what the budget is spent in;
``paper``: Ponce et al.'s (2022, §8) ``4^-i``) and the training seconds per work unit.

MTNN always builds its operators with the norm-weighted projection (its
examples' ``weighted_projection=True``, Ponce et al., 2022, eq 34); ours uses ``P`` of eq 32
unless ``--weighted-projection`` is given.

L2 here is the mean squared error per grid point, the loss both codes
train on; MTNN's own validation callback reports the *sum* over the
``N^2`` grid points per example (1,024 times this at N = 32). L∞ is the
largest absolute error over all validation examples and grid points in both.

Usage (from the repository root, with the package's environment)::

    python benchmarks/peers/fas_against_mtnn.py --problem poisson --levels 1 2 --seeds 0 1 2 \\
        --mtnn-python /work/peers/mtnn-venv/bin/python --mtnn /work/peers/MTNN \\
        --out benchmarks/results/peers
"""

import argparse
import json
import math
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import _report  # noqa: E402  (benchmarks/_report.py)
import fas_tables  # noqa: E402  (benchmarks/fas_tables.py)
import keras  # noqa: E402
import keras_multilevel as kml  # noqa: E402


def write_inputs(path, data, network_args, seed):
    """The data set (flattened inputs) and the initial weights Keras draws for ``seed``, for MTNN."""
    (x, y), (x_val, y_val) = data
    keras.utils.set_random_seed(seed)
    model = kml.models.feedforward_network(x.shape[1:], y.shape[1], **network_args)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    weights = {}
    for index, layer in enumerate(dense):
        kernel, bias = layer.get_weights()
        weights[f"kernel_{index}"], weights[f"bias_{index}"] = kernel, bias
    np.savez(
        path, x_train=x.reshape(len(x), -1), y_train=y, x_val=x_val.reshape(len(x_val), -1), y_val=y_val,
        layers=len(dense), **weights,
    )


def run_mtnn(args, settings, inputs, levels, seed):
    """One MTNN run in its own environment; returns its record."""
    rates = [args.learning_rate / divisor for divisor in settings["divisor"](levels)]
    scheme = settings["scheme"]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [
            args.mtnn_python, str(HERE / "mtnn_fas.py"), "--mtnn", args.mtnn, "--inputs", inputs,
            "--levels", str(levels), "--seed", str(seed), "--work-units", str(args.work_units),
            "--every", str(args.every), "--steps", str(settings["steps"]),
            "--learning-rates", *map(str, rates), "--weight-decay", str(settings["weight_decay"]),
            "--rematch-every", str(settings["rematch_every"]),
            "--tau-scaling", str(scheme.get("tau_scale", 1.0)), "--momentum-scale", str(scheme.get("momentum_scale", 1.0)),
            "--out", out.name,
        ]
        subprocess.run(command, check=True)
        return json.loads(pathlib.Path(out.name).read_text())


def table(results, command, title, seeds):
    lines = [
        f"# {title}",
        "",
        f"Command: `{command}`",
        "",
        f"Median [min-max] over seeds {', '.join(map(str, seeds))}; each seed gives every run the same initial "
        "weights and data. Best validation L2 (mean squared error per grid point) and L∞ (largest absolute error) "
        "within the budget; work units spent, and the same cycles charged as Ponce et al. (2022, §8) do (coarse level i costs 4^-i); "
        "training seconds per work unit, validation excluded, tracing included (ours traces in its first cycle).",
        "",
        "| code | levels | best val L2 | best val L∞ | work units | paper's work units | ms / work unit |",
        "|---|---|---|---|---|---|---|",
    ]
    for (code, levels), records in results.items():
        lines.append(
            f"| {code} | {levels} | {_report.spread([min(r['val_l2']) for r in records], '.3e')} | "
            f"{_report.spread([min(r['val_linf']) for r in records], '.3f')} | "
            f"{_report.spread([r['work_units'][-1] for r in records], '.0f')} | "
            f"{_report.spread([r['paper_work_units'][-1] for r in records], '.0f')} | "
            f"{_report.spread([1e3 * r['train_seconds'][-1] / r['work_units'][-1] for r in records], '.1f')} |"
        )
    return lines


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, ((code, levels), records) in zip(colors, results.items()):
        for axis, key in zip(axes, ("val_l2", "val_linf")):
            for index, record in enumerate(records):
                label = f"{code}, {'SGD' if levels == 1 else f'FAS {levels} levels'}" if index == 0 else None
                axis.plot(record["work_units"], record[key], color=color, alpha=0.8, label=label,
                          linestyle="-" if code == "keras-multilevel" else "--")
    fas_tables.finish_plot(figure, axes, title, path, names=("validation L2 (MSE per grid point)", "validation L∞"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", choices=sorted(fas_tables.SETTINGS), default="poisson")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    fas_tables.add_run_arguments(parser)
    parser.add_argument(
        "--weighted-projection", action="store_true",
        help="our FAS with the norm-weighted P~ of Ponce et al. (2022, eq 34) (WidthCoarsening(scaled=True)), as MTNN's runs always use; "
        "otherwise P of eq 32",
    )
    parser.add_argument("--mtnn-python", help="the Python of an environment with PyTorch (needed with --codes MTNN)")
    parser.add_argument("--mtnn", help="folder of an LLNL/MTNN checkout (needed with --codes MTNN)")
    parser.add_argument("--codes", nargs="+", default=["keras-multilevel", "MTNN"], choices=["keras-multilevel", "MTNN"])
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    if "MTNN" in args.codes and not (args.mtnn_python and args.mtnn):
        parser.error("--codes MTNN needs --mtnn-python and --mtnn")
    settings = fas_tables.SETTINGS[args.problem]
    network_args = settings["networks"]["dense"]
    data = (
        fas_tables.arrays(args.problem, "train", settings["target"], args.resolution),
        fas_tables.arrays(args.problem, "validation", settings["target"], args.resolution),
    )
    results = {(code, levels): [] for code in args.codes for levels in args.levels}
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            inputs = str(pathlib.Path(folder) / f"inputs_{seed}.npz")
            write_inputs(inputs, data, network_args, seed)
            for levels in args.levels:
                for code in args.codes:
                    started = time.perf_counter()
                    if code == "MTNN":
                        record = run_mtnn(args, settings, inputs, levels, seed)
                    else:
                        record = fas_tables.train(
                            levels, network_args, settings, data, args.work_units, args.every, seed, args.learning_rate,
                            args.weighted_projection,
                        )
                    results[(code, levels)].append(record)
                    print(f"seed {seed}, {code}, {levels} levels: {time.perf_counter() - started:.0f} s, "
                          f"best val L2 {min(record['val_l2']):.3e}, L∞ {min(record['val_linf']):.3f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.problem}_dense_" + ("mtnn" if "MTNN" in args.codes else "seeds") + (
        f"_lr{args.learning_rate:g}" if args.learning_rate != 0.01 else ""
    ) + ("_weighted" if args.weighted_projection else "")
    title = (
        f"{args.problem.capitalize()} N={args.resolution}, dense network: {' and '.join(args.codes)}, SGD and width FAS, "
        f"learning rate {args.learning_rate:g}" + (", our P the weighted P~ of eq 34" if args.weighted_projection else "")
    )
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/peers/fas_against_mtnn.py", *(argv if argv is not None else sys.argv[1:])])
    lines = table(results, command, title, args.seeds)
    (args.out / f"{stem}.json").write_text(json.dumps({f"{code} {levels}": records for (code, levels), records in results.items()}, indent=1))
    plot(results, args.out / f"{stem}.png", title)
    _report.write(lines, args.out / f"{stem}.md")


if __name__ == "__main__":
    main()
