"""Coarse to fine by growing the pyramid U-Net a finer grid, against one level at equal work.

The resolution hierarchy runs the *same* network at N/2, so every stencil
spans twice the physical distance there. Growing keeps the physical scale
instead: the coarse network is the pyramid U-Net without its finest grid,
``kml.models.unet(N/2, filters[1:], pyramid=True)``, trained on the
2x2-averaged data; the fine network ``kml.models.unet(N, filters,
pyramid=True)`` then takes its weights grid by grid (the coarse network's
depth ``d`` is the fine one's ``d + 1``), with the fine grid's output layer and
the first coarse stencil's rows for the pooled fine features at zero, so that
it starts exactly as the coarse prediction prolongated (bilinearly) to N.

For each seed, from the same data: ``--coarse-epochs`` epochs of the coarse
network, the growth, ``--epochs`` epochs at N (Adam on a cosine decay over
each phase's ``--epochs`` epochs, as the presets' recipe), against
``--single-epochs`` epochs of the fine network alone. A coarse batch costs
its multiply-adds over the fine network's (the table gives the ratio). The
table: the validation relative L2 right after the growth, at the end, and the
work units.

Usage::

    python benchmarks/grown_unet.py --problem poisson --resolutions 16 32 --seeds 0 1 2 \\
        --out benchmarks/results/zoo/grown_poisson.md
"""

import argparse
import json
import pathlib
import sys

import keras
import numpy as np

import _report  # benchmarks/_report.py, beside this script
import zoo_tables  # the zoo's architecture and recipe, beside this script

import keras_multilevel as kml
from keras_multilevel.hierarchy.resolution import _weighted
from keras_multilevel.hierarchy.stencil import restrict_image
from keras_multilevel.hierarchy.width import multiply_adds
from keras_multilevel.zoo import training
from keras_multilevel.zoo.metrics import measure
from keras_multilevel.zoo.recipe import dataset_description


def shifted(name):
    """The fine network's name of the coarse network's layer ``name`` (one grid deeper)."""
    if name == "output":
        return "output_1"
    kind, depth, *rest = name.split("_")
    return "_".join([kind, str(int(depth) + 1), *rest])


def grow(coarse, fine):
    """Sets ``fine``'s weights from ``coarse`` (see the module docstring); its finest grid's output layer at zero."""
    for layer in coarse.layers:
        if not layer.weights:
            continue
        target = fine.get_layer(shifted(layer.name))
        kernel, bias = layer.get_weights()
        wide = np.zeros(target.kernel.shape, kernel.dtype)
        wide[:, :, : kernel.shape[2], :] = kernel  # R x first, then the pooled finer features (zero)
        target.set_weights([wide, bias])
    output = fine.get_layer("output")
    output.set_weights([np.zeros_like(w) for w in output.get_weights()])


def fit(model, train, validation, epochs, decay_epochs, learning_rate):
    """``epochs`` epochs of Adam on a cosine decay over ``decay_epochs`` epochs; the validation error after each."""
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_epochs * zoo_tables.BATCHES_PER_EPOCH)
    model.compile(keras.optimizers.Adam(schedule), "mse")
    errors = []
    for _ in range(epochs):
        model.fit(train, epochs=1, verbose=0, shuffle=False)  # the data set shuffles itself
        if validation is not None:
            errors.append(measure(model, validation)["relative_l2"])
    return errors


def run(args, resolution, seed):
    filters = tuple(zoo_tables.ARCHITECTURE["filters"])
    dataset = dataset_description(zoo_tables.one_level(args.problem, resolution, seed, args.single_epochs))
    train = training._data(dataset, "train", None, 64, shuffle=True)
    validation = training._data(dataset, "validation", None, 64)
    keras.utils.set_random_seed(seed)
    fine = kml.models.unet(resolution, filters=filters, pyramid=True)
    coarse = kml.models.unet(resolution // 2, filters=filters[1:], pyramid=True)
    cost = multiply_adds(_weighted(coarse)) / multiply_adds(_weighted(fine))
    fit(coarse, train.map(lambda x, y: (restrict_image(x), restrict_image(y))), None, args.coarse_epochs, args.epochs,
        args.learning_rate)
    grow(coarse, fine)
    start = measure(fine, validation)["relative_l2"]
    grown = fit(fine, train, validation, args.epochs, args.epochs, args.learning_rate)
    keras.utils.set_random_seed(seed)
    alone = kml.models.unet(resolution, filters=filters, pyramid=True)
    single = fit(alone, train, validation, args.single_epochs, args.single_epochs, args.learning_rate)
    batches = zoo_tables.BATCHES_PER_EPOCH
    return {"cost": cost, "grown_start": start, "grown": grown[-1], "single": single[-1],
            "grown_work_units": (args.coarse_epochs * cost + args.epochs) * batches,
            "single_work_units": args.single_epochs * batches}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    zoo_tables.add_schedule_arguments(parser, resolutions=[16, 32], epochs="epochs at N after the growth")
    parser.add_argument("--single-epochs", type=int, default=10, help="one level's epochs at N")
    parser.add_argument("--out", required=True)
    parser.set_defaults(pyramid=True)  # only the pyramid U-Net can grow a grid: its coarser grids read R^i x
    args = parser.parse_args(argv)
    rows = []
    for resolution in args.resolutions:
        runs = [run(args, resolution, seed) for seed in args.seeds]
        rows.append({"resolution": resolution, "runs": runs})
        print(resolution, json.dumps(runs), flush=True)
    command = " ".join(["python", *sys.argv])
    lines = [
        f"# Growing the pyramid U-Net a finer grid ({args.problem}) against one level at equal work",
        "",
        f"Command: `{command}`",
        "",
        f"Pyramid U-Net filters {tuple(zoo_tables.ARCHITECTURE['filters'])}; grown: {args.coarse_epochs} epochs of "
        f"the network without its finest grid at N/2, then {args.epochs} at N; one level: {args.single_epochs} epochs "
        f"at N. Adam from {args.learning_rate:g} on a cosine decay over each phase's epochs at N, batch 64. Cells: "
        "median [min-max] over seeds; validation relative L2; error ratio: one level's over the grown network's, "
        "seed by seed (above 1: growing is better).",
        "",
        "| N | seeds | coarse batch cost (WU) | grown: WU | right after growing | final | one level: WU | final | error ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        runs = row["runs"]

        def cell(key, spec):
            return _report.spread([r[key] for r in runs], spec)

        ratios = [r["single"] / r["grown"] for r in runs]
        lines.append(
            f"| {row['resolution']} | {len(runs)} | {cell('cost', '.2f')} | {cell('grown_work_units', '.0f')} | "
            f"{cell('grown_start', '.4f')} | {cell('grown', '.4f')} | {cell('single_work_units', '.0f')} | "
            f"{cell('single', '.4f')} | {_report.spread(ratios, '.2f')} |"
        )
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    _report.write(lines, args.out)


if __name__ == "__main__":
    main()
