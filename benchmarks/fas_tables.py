"""Ponce et al. (2022, Tables 1-3): one-level SGD against multilevel-in-width FAS on the PDE data.

For one problem and one network, trains the same initial weights with plain
``model.fit`` and SGD (1 level) and with ``kml.MultilevelOptimizer(scheme="fas",
coarsening="width")`` on 2.. levels, each for the same budget of work units
(a forward and backward pass over one minibatch of 200, Ponce et al., 2022, §8), side by side
in one process. Every ``--every`` work units it measures, on the validation
split, the L2 loss (the mean squared error the networks are trained on) and
the L∞ loss (the largest absolute error over all validation samples and grid
points), for the network and for its first auxiliary (once-coarsened)
network, and records the training wall time (evaluations untimed). Writes a
markdown table of the best losses (as the paper's tables), the time per work
unit against plain ``model.fit``, and a plot of the validation curves.

Settings (Ponce et al., 2022, §8): SGD learning rate 0.01 (``--learning-rate``), momentum 0.9, minibatch 200.
Poisson (§8.1): 4 smoothing steps per level, re-matching every 50 cycles,
learning rate divided by sqrt 2 per level. Darcy (§8.2-8.3): 2 smoothing
steps, re-matching every 10 cycles, weight decay 1e-6 (as Tikhonov
regularization), with the §8.3 stability settings alpha_m = 0.2,
gamma = 0.125 and eta = 2 sqrt 2 for the first three levels. Tau is averaged
over m = 4 (Poisson) or 2 (Darcy) minibatches (Ponce et al., 2022, eq 35); each fine smoothing
step and each restriction draws fresh minibatches of 200 (Ponce et al., 2022, §6.1.1), so a
FAS batch holds ``optimizer.minibatches`` of them.

Usage::

    python benchmarks/fas_tables.py --problem poisson --network dense --levels 1 2 3 4 \\
        --work-units 3000 --out benchmarks/results/fas
"""

import argparse
import json
import math
import os
import pathlib
import shlex
import sys
import time

import numpy as np

# This script owns its process: the TensorFlow backend and quiet TensorFlow (the library sets neither).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_multilevel as kml  # noqa: E402

MINIBATCH = 200

SETTINGS = {
    "poisson": {
        "target": "target",
        "steps": 4,
        "tau_batches": 4,
        "rematch_every": 50,
        "divisor": lambda levels: [math.sqrt(2) ** i for i in range(levels)],
        "scheme": {},
        "weight_decay": 0.0,
        "networks": {"dense": {"hidden": (400, 400)}, "conv": {"hidden": (400, 400), "conv": ((200, 7, 2), (200, 7, 2))}},
    },
    "darcy": {
        "target": "pressure",
        "steps": 2,
        "tau_batches": 2,
        "rematch_every": 10,
        "divisor": lambda levels: [(2 * math.sqrt(2)) ** min(i, 2) for i in range(levels)],
        "scheme": {"momentum_scale": 0.2, "tau_scale": 0.125},
        "weight_decay": 1e-6,
        "networks": {
            "dense": {"hidden": (1024, 1024, 1024)},
            "conv": {"hidden": (2048, 2048), "conv": ((100, 11, 2), (200, 7, 1), (400, 3, 1))},
        },
    },
}


def arrays(problem, split, target, resolution):
    """The split as NumPy arrays: inputs (n, N, N, 3), flat targets (n, N*N)."""
    dataset = kml.datasets.load(problem, resolution, split, target=target, batch_size=1000, progress=False)
    inputs, targets = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    inputs, targets = np.concatenate(inputs), np.concatenate(targets)
    return inputs, targets.reshape(len(targets), -1)


class Validation(keras.callbacks.Callback):
    """Every epoch: validation L2 and L∞ of the network (and its first auxiliary network)."""

    def __init__(self, x, y, record):
        super().__init__()
        self.x, self.y, self.record = x, y, record
        self.started = None

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = time.perf_counter() - self.started
        optimizer = self.model.optimizer
        work_units = float(logs.get("work_units", (epoch + 1) * self.params["steps"]))
        self.record["work_units"].append(work_units)
        self.record["paper_work_units"].append(work_units * self.record["paper_cycle_work_units"] / self.record["cycle_work_units"])
        self.record["train_seconds"].append(self.record["train_seconds"][-1] + elapsed if self.record["train_seconds"] else elapsed)
        self.record["train_l2"].append(float(logs["loss"]))
        networks = [("", self.model)]
        hierarchy = getattr(optimizer, "hierarchy", None)
        if hierarchy is not None and len(hierarchy) > 1:
            networks.append(("aux_", hierarchy[1].model))
        for prefix, network in networks:
            prediction = np.concatenate([network(self.x[i : i + 500], training=False).numpy() for i in range(0, len(self.x), 500)])
            error = prediction - self.y
            self.record[prefix + "val_l2"].append(float(np.mean(error**2)))
            self.record[prefix + "val_linf"].append(float(np.max(np.abs(error))))
        self.started = time.perf_counter()


def paper_cycle_work_units(optimizer):
    """The optimizer's V-cycle charged as Ponce et al. (2022, §8) charge it: level ``i`` costs ``4^-i`` of the finest."""
    paper_costs = [4.0**-index for index in range(len(optimizer.hierarchy))]
    scheme = optimizer.scheme
    return kml.optimizers.work_units(
        optimizer.steps, paper_costs, optimizer.layout, coupled=scheme.tau_scale > 0, tested=scheme.correction_test
    )


def train(levels, network_args, settings, data, work_units, every, seed, learning_rate=0.01, weighted_projection=False):
    """One run; returns its record. ``weighted_projection``: the norm-weighted ``P~`` of Ponce et al. (2022, eq 34)
    (``WidthCoarsening(scaled=True)``, the default of MTNN's examples) instead of ``P`` of eq 32."""
    (x, y), validation = data
    keras.utils.set_random_seed(seed)
    model = kml.models.feedforward_network(x.shape[1:], y.shape[1], **network_args)
    if levels == 1:
        optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9, weight_decay=settings["weight_decay"] or None)
    else:
        steps = settings["steps"]
        optimizer = kml.MultilevelOptimizer(
            levels=levels,
            smoother=keras.optimizers.SGD(learning_rate, momentum=0.9),
            steps=[steps] * (levels - 1) + [steps],
            scheme="fas",
            coarsening=kml.hierarchy.WidthCoarsening(rematch_every=settings["rematch_every"], scaled=weighted_projection),
            tau_batches=settings["tau_batches"],
            learning_rate_divisor=settings["divisor"](levels),
            regularization=settings["weight_decay"] / 2,  # beta ||x||^2 has gradient 2 beta x
            **settings["scheme"],
        )
    model.compile(optimizer=optimizer, loss="mse")
    multilevel = levels > 1
    cycle_units = model.optimizer.cycle_work_units if multilevel else 1.0
    batch = MINIBATCH * (model.optimizer.minibatches if multilevel else 1)
    steps_per_epoch = max(1, round(every / cycle_units))
    epochs = max(1, round(work_units / (steps_per_epoch * cycle_units)))
    dataset = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    record = {k: [] for k in ("work_units", "paper_work_units", "train_seconds", "train_l2", "val_l2", "val_linf", "aux_val_l2", "aux_val_linf")}
    record.update(levels=levels, cycle_work_units=cycle_units, steps_per_epoch=steps_per_epoch,
                  paper_cycle_work_units=paper_cycle_work_units(model.optimizer) if multilevel else 1.0)
    if multilevel:
        record["hierarchy"] = str(model.optimizer.hierarchy)
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=0, callbacks=[Validation(*validation, record)])
    # The first epoch includes tracing; time per work unit from the others.
    seconds = np.diff(record["train_seconds"])
    units = np.diff(record["work_units"])
    record["seconds_per_work_unit"] = float(np.sum(seconds) / np.sum(units)) if len(units) else float("nan")
    return record


def table(records, command, title):
    base = records[0]
    lines = [
        f"# {title}",
        "",
        f"Command: `{command}`",
        "",
        "Best validation losses within the budget (L2: mean squared error; L∞: largest absolute error over "
        "all validation samples and grid points), the training loss at the end, and the training wall time "
        "per work unit against plain `model.fit` with SGD (first epoch, which traces, excluded).",
        "",
        "| levels | network | best val L2 | best val L∞ | final train L2 | work units | s / work unit | vs SGD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for record in records:
        levels, speed = record["levels"], record["seconds_per_work_unit"]
        lines.append(
            f"| {levels} | fine | {min(record['val_l2']):.3e} | {min(record['val_linf']):.3f} | "
            f"{record['train_l2'][-1]:.3e} | {record['work_units'][-1]:.0f} | {speed * 1e3:.1f} ms | "
            f"{speed / base['seconds_per_work_unit']:.2f}x |"
        )
        if record["aux_val_l2"]:
            lines.append(
                f"| {levels}aux | aux | {min(record['aux_val_l2']):.3e} | {min(record['aux_val_linf']):.3f} | "
                f"| {record['work_units'][-1]:.0f} |  |  |"
            )
    lines += ["", "Hierarchies:", ""]
    for record in records[1:]:
        lines += ["```", record["hierarchy"], "```", ""]
    return "\n".join(lines)


def plot(records, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for record in records:
        label = "SGD" if record["levels"] == 1 else f"FAS {record['levels']} levels"
        for axis, key in zip(axes, ("val_l2", "val_linf")):
            (line,) = axis.plot(record["work_units"], record[key], label=label)
            if record["aux_" + key]:
                axis.plot(record["work_units"], record["aux_" + key], "--", color=line.get_color(), label=label + " (aux)")
    finish_plot(figure, axes, title, path)


def finish_plot(figure, axes, title, path, names=("validation L2", "validation L∞")):
    """Labels the two panels (validation L2 and L∞ against work units, log scale) and writes the figure."""
    for axis, name in zip(axes, names):
        axis.set_xlabel("work units")
        axis.set_ylabel(name)
        axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def add_run_arguments(parser):
    """The options of one run's budget and set-up that :func:`train` takes, shared with ``peers/fas_against_mtnn.py``."""
    parser.add_argument("--work-units", type=float, default=10_000)
    parser.add_argument("--every", type=float, default=100, help="work units between validations")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument(
        "--learning-rate", type=float, default=0.01,
        help="the finest level's (Ponce et al., 2022, §8: 0.01); other values add _lr<value> to the output names",
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--network", choices=("dense", "conv"), default="dense")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4])
    add_run_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--stable", action="store_true",
        help="use the §8.3 stability settings (gamma 0.125, alpha_m 0.2, eta 2 sqrt 2 for three levels) "
        "whatever the problem; the outputs get the suffix _stable",
    )
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    settings = dict(SETTINGS[args.problem])
    if args.stable:
        settings.update(scheme=SETTINGS["darcy"]["scheme"], divisor=SETTINGS["darcy"]["divisor"])
    train_data = arrays(args.problem, "train", settings["target"], args.resolution)
    validation = arrays(args.problem, "validation", settings["target"], args.resolution)
    records = []
    for levels in args.levels:
        started = time.perf_counter()
        records.append(train(levels, settings["networks"][args.network], settings, (train_data, validation), args.work_units, args.every, args.seed, args.learning_rate))
        print(f"levels={levels}: {time.perf_counter() - started:.0f} s, best val L2 {min(records[-1]['val_l2']):.3e}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{args.problem}_{args.network}" + ("_stable" if args.stable else "") + (f"_lr{args.learning_rate:g}" if args.learning_rate != 0.01 else "")
    title = f"{args.problem.capitalize()} N={args.resolution}, {args.network} network: SGD vs width FAS (Ponce et al., 2022)" + (
        ", §8.3 stability settings" if args.stable else ""
    ) + (f", learning rate {args.learning_rate:g}" if args.learning_rate != 0.01 else "")
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/fas_tables.py", *(argv if argv is not None else sys.argv[1:])])
    (args.out / f"{stem}.md").write_text(table(records, command, title) + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(records, indent=1))
    plot(records, args.out / f"{stem}.png", title)


if __name__ == "__main__":
    main()
