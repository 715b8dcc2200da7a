"""The model zoo's presets and their benchmark: coarse-to-fine (004 Algorithm 1) against one level.

For each resolution it trains the preset's recipe, a U-Net trained coarse to
fine through the resolution hierarchy (``kml.MultilevelOptimizer(levels=2,
coarsening="resolution", schedule=[...])``: the first batches on the
2x2-averaged data at N/2, then the weights prolongated by 004 §3.2 and
training at N), writes it as a preset (``kml.zoo.create``), and trains the
same network from the same initial weights on one level (the recipe with
``levels=1``) for the same number of epochs, side by side in one process.
The table gives, for each, the work units (fine gradient evaluations; a
step at N/2 costs 1/4) and the wall time (training and the per-epoch
validation pass) to first reach the preset's validation relative L2 error,
measured at the end of each epoch; the single-level run stops there.

Usage::

    python benchmarks/zoo_tables.py --problem poisson --resolutions 16 32 64 \\
        --presets zoo --out benchmarks/results/zoo
"""

import argparse
import json
import pathlib
import sys
import time

import keras

import keras_multilevel as kml
from keras_multilevel.zoo import training

ARCHITECTURE = {"filters": [8, 16, 32], "convolutions": 2, "kernel_size": 3, "activation": "gelu"}
BATCHES_PER_EPOCH = 8000 // 64
# epochs in all, epochs of them at N/2 (coarse to fine); fewer at the larger, slower grids.
EPOCHS = {16: (8, 2), 32: (6, 2), 64: (6, 2)}


def recipe(problem, resolution):
    """The preset's training recipe (stored in its metadata, retrained by ``keras-multilevel zoo train``)."""
    epochs, coarse_epochs = EPOCHS[resolution]
    return {
        "problem": problem,
        "target": "target" if problem == "poisson" else "pressure",
        "resolution": resolution,
        "architecture": ARCHITECTURE,
        "smoother": {"class_name": "Adam", "config": {"learning_rate": 0.002}},
        "levels": 2,
        "coarsening": "resolution",
        "schedule": [coarse_epochs * BATCHES_PER_EPOCH],
        "epochs": epochs,
        "batch_size": 64,
        "seed": 0,
        "dataset_seed": 0,
    }


class EpochClock(keras.callbacks.Callback):
    """Cumulative wall time at the end of each epoch (after the validation pass); stops
    training once the validation relative L2 reaches ``target`` (if given)."""

    def __init__(self, target=None):
        super().__init__()
        self.target = target

    def on_train_begin(self, logs=None):
        self.start, self.seconds = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)
        if self.target is not None and logs["val_relative_l2"] <= self.target:
            self.model.stop_training = True


def first_reaching(epochs, seconds, target):
    """``(work units, seconds)`` at the first epoch whose validation relative L2 is <= target, else None."""
    for row, elapsed in zip(epochs, seconds):
        if row["val_relative_l2"] <= target * (1 + 1e-9):
            return row["work_units"], elapsed
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", choices=["poisson", "darcy"], required=True)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[16, 32, 64], choices=sorted(EPOCHS))
    parser.add_argument("--presets", default="zoo")
    parser.add_argument("--out", default="benchmarks/results/zoo")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", *sys.argv])
    results = out / f"{args.problem}.json"
    # Rows of other resolutions measured by an earlier command are kept (each row names its command).
    kept = [row for row in json.loads(results.read_text())] if results.exists() else []
    rows = []
    for resolution in args.resolutions:
        multilevel = recipe(args.problem, resolution)
        clock = EpochClock()
        metadata = training.create(multilevel, args.presets, progress=True, callbacks=[clock])
        target = metadata["training"]["epochs"][-1]["val_relative_l2"]
        single = {key: value for key, value in multilevel.items() if key not in ("coarsening", "schedule")}
        single["levels"] = 1
        single_clock = EpochClock(target)
        _, record = training.train_recipe(single, progress=True, callbacks=[single_clock])
        rows.append({
            "preset": metadata["name"],
            "resolution": resolution,
            "target": target,
            "multilevel": first_reaching(metadata["training"]["epochs"], clock.seconds, target),
            "single": first_reaching(record["epochs"], single_clock.seconds, target),
            "single_final": record["epochs"][-1]["val_relative_l2"],
            "single_epochs": len(record["epochs"]),
            "epochs": multilevel["epochs"],
            "coarse_epochs": EPOCHS[resolution][1],
            "test": metadata["metrics"]["test"],
            "command": command,
        })
        print(json.dumps(rows[-1]), flush=True)
    measured = {row["preset"] for row in rows}
    rows = sorted([row for row in kept if row["preset"] not in measured] + rows, key=lambda row: row["resolution"])
    results.write_text(json.dumps(rows, indent=1))
    (out / f"{args.problem}.md").write_text(table(args.problem, rows))
    print(table(args.problem, rows))


def table(problem, rows):
    def cost(reached):
        return "not reached" if reached is None else f"{reached[0]:.0f} WU, {reached[1]:.0f} s"

    lines = [
        f"# Zoo presets, {problem}: coarse-to-fine (004 Algorithm 1) vs one level",
        "",
        "Commands (each row names its own in the .json beside this table):",
        "",
        *[f"- `{command}`" for command in dict.fromkeys(row["command"] for row in rows)],
        "",
        "U-Net filters (8, 16, 32), Adam 2e-3, batch 64, same initial weights; the first epochs of the "
        "multilevel run train at N/2 (1/4 WU per batch). Cost to first reach the preset's validation "
        "relative L2 (checked at the end of each epoch; wall time includes each epoch's validation pass).",
        "",
        "| preset | epochs (at N/2) | preset val rel. L2 | multilevel cost | single-level cost | single-level epochs, last val rel. L2 | preset test rel. L2 | preset test L∞ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['preset']} | {row['epochs']} ({row['coarse_epochs']}) | {row['target']:.4f} | {cost(row['multilevel'])} | "
            f"{cost(row['single'])} | {row['single_epochs']}, {row['single_final']:.4f} | {row['test']['relative_l2']:.4f} | "
            f"{row['test']['linf']:.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
