"""The model zoo's presets and their benchmark: coarse-to-fine (Haber et al., 2018, Algorithm 1) against one level.

For each resolution N and seed it trains a U-Net of the zoo's architecture
coarse to fine through the resolution hierarchy (``kml.MultilevelOptimizer(
levels=2, coarsening={"name": "resolution", "stencil_prolongation": ...},
schedule=[...])``: ``--coarse-epochs`` epochs on the 2x2-averaged data at
N/2, then the weights prolongated to N and training there), and the same
network from the same initial weights on one level (the recipe with
``levels=1``), side by side in one process. Both stop at the end of the
first epoch whose validation relative L2 reaches the shipped preset's (its
card's ``metrics.validation``), or after ``--epochs`` epochs at N. The table
gives, per run, the work units (fine gradient evaluations; a step at N/2
costs 1/4) and the wall time (training, tracing and the per-epoch
validation pass) to that target: median [min-max] over seeds, and the
one-level cost divided by the coarse-to-fine cost, seed by seed.

With ``--create-presets DIR`` it instead trains the zoo's presets, coarse to
fine with the same options and the first seed, and writes them to
``DIR/<problem>_unet_n<N>`` (``kml.zoo.create``); the shipped ones in ``zoo/``
were made so (their recipes are in their metadata, and ``keras-multilevel zoo
train NAME`` retrains one from it). The tables compare against the presets
shipped when they were measured: their targets are in the tables.

Usage::

    python benchmarks/zoo_tables.py --problem poisson --resolutions 16 32 --seeds 0 1 2 \\
        --out benchmarks/results/zoo
    python benchmarks/zoo_tables.py --problem poisson --resolutions 16 32 64 --seeds 0 --epochs 8 \\
        --decay cosine --create-presets zoo
"""

import argparse
import json
import pathlib
import sys
import time

import _report  # benchmarks/_report.py, beside this script
import keras

import keras_multilevel as kml
from keras_multilevel.zoo import training

ARCHITECTURE = {"filters": [8, 16, 32], "convolutions": 2, "kernel_size": 3, "activation": "gelu"}
BATCHES_PER_EPOCH = 8000 // 64


def recipe(problem, resolution, seed, coarse_epochs, epochs, stencil_prolongation, decay="constant", pyramid=False,
           learning_rate=0.002, grow=False, levels=2, filters=None, log_input=False, why=None):
    """The coarse-to-fine recipe (the format of a preset's metadata; ``zoo train`` runs it).

    ``pyramid=True``: the U-Net reads the input at every grid and sums a prediction from every grid
    (``kml.models.unet(..., pyramid=True)``). ``grow=True`` (needs it): the coarse level is that U-Net
    without its finest grid (``coarsening="pyramid"``), which then grows the grid, instead of the same
    U-Net at N/2 (``stencil_prolongation`` is then unused). ``levels``: the hierarchy's depth; each of its
    ``levels - 1`` coarse levels trains ``coarse_epochs`` epochs, coarsest first.

    ``decay="cosine"``: Adam's rate follows ``CosineDecay(learning_rate, epochs x batches)``, which each
    level evaluates at its own step count, so the finest level's rate reaches 0 at the end of its epochs
    (and the coarse level's falls to ``(1 + cos(pi coarse_epochs / epochs)) / 2`` of it by the end of its own).

    ``filters`` (default the zoo's ``(8, 16, 32)``) and ``log_input`` (the U-Net reads log κ, ``kml.models.unet(...,
    log_input=True)``) change the architecture; ``why``, a sentence, goes into the recipe and the preset's card.
    """
    if grow and not pyramid:
        raise ValueError("Only the pyramid U-Net grows a grid: pass pyramid=True (--pyramid) with grow=True (--grow).")
    if decay == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * BATCHES_PER_EPOCH)
        learning_rate = keras.saving.serialize_keras_object(schedule)
    return {
        "problem": problem,
        "target": "target" if problem == "poisson" else "pressure",
        "resolution": resolution,
        "architecture": unet_architecture(pyramid, filters, log_input),
        "smoother": {"class_name": "Adam", "config": {"learning_rate": learning_rate}},
        "levels": levels,
        "coarsening": (
            {"name": "pyramid"} if grow
            else {"name": "resolution", "interpolation": "constant", "stencil_prolongation": stencil_prolongation}
        ),
        "schedule": [coarse_epochs * BATCHES_PER_EPOCH] * (levels - 1),
        "epochs": coarse_epochs * (levels - 1) + epochs,
        "batch_size": 64,
        "seed": seed,
        "dataset_seed": 0,
        **({"why": why} if why else {}),
    }


def one_level(problem, resolution, seed, epochs, decay="constant", pyramid=False, learning_rate=0.002, filters=None,
              log_input=False, why=None):
    """The recipe's U-Net trained on one level: ``epochs`` epochs at N (the rate decaying over them with
    ``decay="cosine"``), the same initial weights and data as :func:`recipe` for ``seed``."""
    single = recipe(problem, resolution, seed, 0, epochs, "identity", decay, pyramid, learning_rate,
                    filters=filters, log_input=log_input, why=why)
    single = {key: value for key, value in single.items() if key not in ("coarsening", "schedule")}
    return dict(single, levels=1, epochs=epochs)


def add_schedule_arguments(parser, resolutions, epochs):
    """The options of which U-Nets to train and how (problem, resolutions, seeds, epochs at N/2 and at N),
    shared with ``zoo_budget.py``; ``epochs`` is the help of ``--epochs``."""
    parser.add_argument("--problem", choices=["poisson", "darcy"], required=True)
    parser.add_argument("--resolutions", type=int, nargs="+", default=resolutions, choices=[16, 32, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--coarse-epochs", type=int, default=6, help="epochs at N/2 before N (--create-presets: 0 = one level)")
    parser.add_argument("--epochs", type=int, default=8, help=epochs)
    parser.add_argument("--learning-rate", type=float, default=0.002, help="Adam's (initial) learning rate")
    parser.add_argument("--pyramid", action="store_true",
                        help="the multiscale U-Net (kml.models.unet(..., pyramid=True)) instead of the plain one")
    parser.add_argument("--levels", type=int, default=2,
                        help="levels of coarse to fine, each coarse one trained --coarse-epochs epochs, coarsest first")
    parser.add_argument("--grow", action="store_true",
                        help="coarse to fine by growing the pyramid U-Net a grid (coarsening='pyramid'; needs --pyramid)")
    parser.add_argument("--filters", type=int, nargs="+", default=None,
                        help=f"the U-Net's channels per grid, finest first (default {ARCHITECTURE['filters']})")
    parser.add_argument("--log-input", action="store_true",
                        help="the U-Net reads log of the coefficient (kml.models.unet(..., log_input=True); Poisson only: "
                        "Darcy's input already is log k)")
    parser.add_argument("--data-dir", default=None, help="folder of the data sets (TFDS' default when not given)")


def unet_architecture(pyramid, filters=None, log_input=False):
    """``kml.models.unet``'s arguments for the zoo's U-Net (the plain one's without a ``pyramid`` key, as the
    recipes of the plain presets were written; ``log_input`` only when True, likewise)."""
    architecture = dict(ARCHITECTURE, pyramid=True) if pyramid else dict(ARCHITECTURE)
    if filters:
        architecture["filters"] = list(filters)
    if log_input:
        architecture["log_input"] = True
    return architecture


def architecture(args):
    """The U-Net the options name, for a table's caption."""
    filters = tuple(getattr(args, "filters", None) or ARCHITECTURE["filters"])
    return (f"U-Net filters {filters}{', pyramid (input and prediction on every grid)' if args.pyramid else ''}"
            f"{', log κ input' if getattr(args, 'log_input', False) else ''}")


class EpochClock(keras.callbacks.Callback):
    """Cumulative wall time at the end of each epoch (after the validation pass); stops
    training once the validation relative L2 reaches ``target``."""

    def __init__(self, target):
        super().__init__()
        self.target = target

    def on_train_begin(self, logs=None):
        self.start, self.seconds = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
        if logs["val_relative_l2"] <= self.target:
            self.model.stop_training = True


def first_reaching(epochs, seconds, target):
    """``(work units, seconds)`` at the first epoch whose validation relative L2 is <= target, else None."""
    for row, elapsed in zip(epochs, seconds):
        if row["val_relative_l2"] <= target * (1 + 1e-9):
            return row["work_units"], elapsed
    return None


def run(recipe_, target, data_dir=None):
    """Trains ``recipe_`` until ``target``; returns ``{"reached": (WU, s) or None, "epochs": [...]}``."""
    clock = EpochClock(target)
    _, record = training.train_recipe(recipe_, data_dir, progress=False, callbacks=[clock])
    return {"reached": first_reaching(record["epochs"], clock.seconds, target), "epochs": record["epochs"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_schedule_arguments(parser, resolutions=[16, 32, 64], epochs="at most this many epochs at N (both runs)")
    parser.add_argument("--stencil-prolongation", choices=["inverse", "identity"], default="identity")
    parser.add_argument(
        "--decay", choices=["constant", "cosine"], default="constant",
        help="Adam's learning rate: 2e-3 throughout (the tables), or a cosine decay to 0 over the epochs at N (the presets)",
    )
    parser.add_argument("--out", default="benchmarks/results/zoo")
    parser.add_argument("--why", help="--create-presets: why this recipe was chosen (a sentence for each card)")
    parser.add_argument(
        "--create-presets", metavar="DIR",
        help="train the presets of --resolutions coarse to fine with these options and the first seed into DIR "
        "(the shipped ones: zoo) instead of measuring the tables",
    )
    args = parser.parse_args(argv)
    if args.create_presets:
        for resolution in args.resolutions:
            preset = (
                recipe(args.problem, resolution, args.seeds[0], args.coarse_epochs, args.epochs,
                       args.stencil_prolongation, args.decay, args.pyramid, args.learning_rate, args.grow, args.levels,
                       args.filters, args.log_input, args.why)
                if args.coarse_epochs
                else one_level(args.problem, resolution, args.seeds[0], args.epochs, args.decay, args.pyramid,
                               args.learning_rate, args.filters, args.log_input, args.why)
            )
            metadata = kml.zoo.create(preset, args.create_presets, args.data_dir, overwrite=True)  # retrains the shipped ones
            print(metadata["name"], json.dumps(metadata["metrics"]["validation"]), flush=True)
        return
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", *sys.argv])
    results = out / f"{args.problem}.json"
    # Rows of other resolutions measured by an earlier command are kept (each row names its command);
    # rows of this script's first version (one seed, no "seeds") are in the git history.
    kept = [row for row in json.loads(results.read_text()) if "seeds" in row] if results.exists() else []
    rows = []
    for resolution in args.resolutions:
        name = f"{args.problem}_unet_n{resolution}"
        target = kml.zoo.metadata(name)["metrics"]["validation"]["relative_l2"]
        row = {"preset": name, "resolution": resolution, "target": target, "coarse_epochs": args.coarse_epochs,
               "epochs": args.epochs, "stencil_prolongation": args.stencil_prolongation, "decay": args.decay, "pyramid": args.pyramid, "grow": args.grow, "levels": args.levels, "learning_rate": args.learning_rate, "seeds": args.seeds,
               "multilevel": [], "single": [], "command": command}
        for seed in args.seeds:
            multilevel = recipe(args.problem, resolution, seed, args.coarse_epochs, args.epochs, args.stencil_prolongation,
                                args.decay, args.pyramid, args.learning_rate, args.grow, args.levels, args.filters,
                                args.log_input)
            single = one_level(args.problem, resolution, seed, args.epochs, args.decay, args.pyramid, args.learning_rate,
                               args.filters, args.log_input)
            row["multilevel"].append(run(multilevel, target, args.data_dir))
            row["single"].append(run(single, target, args.data_dir))
            print(name, seed, json.dumps({key: row[key][-1]["reached"] for key in ("multilevel", "single")}), flush=True)
        rows.append(row)
    measured = {row["preset"] for row in rows}
    rows = sorted([row for row in kept if row["preset"] not in measured] + rows, key=lambda row: row["resolution"])
    results.write_text(json.dumps(rows, indent=1))
    _report.write(table(args.problem, rows), out / f"{args.problem}.md")


def table(problem, rows):
    def at(runs, index):
        return [None if run["reached"] is None else run["reached"][index] for run in runs]

    def ratio(row, index):
        pairs = zip(at(row["single"], index), at(row["multilevel"], index))
        return _report.spread([None if s is None or m is None else s / m for s, m in pairs], ".2f")

    def best(runs):
        return _report.spread([min(epoch["val_relative_l2"] for epoch in run["epochs"]) for run in runs], ".4f")

    lines = [
        f"# Zoo presets, {problem}: coarse-to-fine (Haber et al., 2018, Algorithm 1) vs one level",
        "",
        "Commands (each row names its own in the .json beside this table):",
        "",
        *[f"- `{command}`" for command in dict.fromkeys(row["command"] for row in rows)],
        "",
        "U-Net filters (8, 16, 32), Adam 2e-3 (unless the row says), batch 64, the same initial weights per seed. Coarse to fine: "
        "the first epochs at N/2 (1/4 WU per batch), then the stencils prolongated to N (inverse: Haber et al.'s (2018, §3.2) "
        "G⁺; identity: unchanged). Both runs stop at the first epoch-end whose validation relative L2 reaches "
        "that of the preset shipped when the row was measured (the target column), or after the given epochs at N. Cells: median [min-max] over seeds; wall time "
        "includes tracing and each epoch's validation pass (a coarse epoch still pays a full-resolution one); "
        "the speed-up is the one-level cost over the coarse-to-fine cost, seed by seed.",
        "",
        "| preset | target val rel. L2 | epochs at N/2, stencil prolongation, max epochs at N | seeds "
        "| coarse-to-fine WU | one-level WU | speed-up in WU | coarse-to-fine s | one-level s | speed-up in time "
        "| lowest val rel. L2 (runs stop at the target), coarse-to-fine | the same, one level |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['preset']}{' (pyramid U-Net)' if row.get('pyramid') else ''}"
            f"{'' if row.get('learning_rate', 0.002) == 0.002 else ', Adam ' + format(row['learning_rate'], 'g')} | {row['target']:.4f} | {row['coarse_epochs']}, {'grown a grid' if row.get('grow') else row['stencil_prolongation']}, "
            f"{row['epochs']}{', cosine decay' if row.get('decay') == 'cosine' else ''} | {len(row['seeds'])} | {_report.spread(at(row['multilevel'], 0))} | "
            f"{_report.spread(at(row['single'], 0))} | {ratio(row, 0)} | {_report.spread(at(row['multilevel'], 1))} | "
            f"{_report.spread(at(row['single'], 1))} | {ratio(row, 1)} | {best(row['multilevel'])} | {best(row['single'])} |"
        )
    return lines


if __name__ == "__main__":
    main()
