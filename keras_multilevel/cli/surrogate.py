"""The ``demo`` command: a PDE surrogate trained to a target accuracy, grown coarse to fine against one level.

The multilevel run is a zoo preset's own recipe (by default
``poisson_unet_n32``: the pyramid U-Net with log κ input on Ponce et al.'s
(2022, §8.1) Poisson data at N = 32, grown from its coarsest grid, Haber et
al.'s (2018) Algorithm 1, through ``kml.MultilevelOptimizer(levels=3,
coarsening="pyramid", schedule=...)``: 6 epochs on the 8×8 grid, 6 on the
16×16 and 8×8 grids, then the whole network), with the finest grid at the
recipe's rate divided by ``--finest-rate-divisor`` (default 2; see
:func:`grown`). The one-level run is the same network from the same initial
weights, on the same data, at the recipe's Adam rate (its best of the rates
measured) on a cosine decay stretched over ``--epochs``. Each stops after the
first epoch whose validation relative L2 is at or below ``--target``. The
multilevel run goes first, so it pays the process's first-time costs.

Why this problem: on the circles and the digits (the depth hierarchy of
Gaedke-Merzhäuser et al. (2021)) one level at its tuned rate needs so few
steps that a multilevel cycle's cost cannot be recovered in seconds, while a
U-Net's coarse grids are cheap and learn the smooth large-scale part of a
solution operator, which the finest grid then only corrects, as a multigrid
cycle does. Measured in the repository (``benchmarks/results/demo/``, this
command with ``--seeds 0 1 2`` on a 2-core machine, one level at its best
rate of ``benchmarks/results/zoo/seconds/``): to 0.02 the grown U-Net needed
2.04x [2.01-2.36] fewer wall-clock seconds (median [min-max] over the seeds);
with its finest grid at the recipe's full rate 1.39x [1.27-1.71]. On a 16×16
grid (one seed, the full rate, one batch per call) the two were even.

Both runs take ``--steps-per-execution`` batches per call of Keras' train
function (Keras' ``steps_per_execution``; the same training): one at a time,
Keras' per-batch cost paced the coarse grids' small steps.
"""

import copy
import json
import pathlib
import statistics
import sys


def one_level(recipe, epochs):
    """The recipe's network trained on its finest grid alone for ``epochs`` epochs: no hierarchy, and a cosine
    decay of the rate (if the recipe has one) stretched over those epochs."""
    from keras_multilevel.zoo.recipe import batches_per_epoch

    single = {key: value for key, value in copy.deepcopy(recipe).items()
              if key not in ("coarsening", "schedule", "learning_rate_divisor", "why")}
    rate = single["smoother"]["config"]["learning_rate"]
    if isinstance(rate, dict) and rate.get("class_name") == "CosineDecay":
        rate["config"]["decay_steps"] = epochs * batches_per_epoch(recipe)
    return dict(single, levels=1, epochs=epochs)


def grown(recipe, finest_rate_divisor):
    """The preset's coarse-to-fine recipe with its finest grid's learning rate divided by ``finest_rate_divisor``
    (``learning_rate_divisor=[d, 1, ..., 1]``, finest first; Ponce et al., 2022, §6.1.4, set a rate per level).

    The finest grid starts from the grown network, which already predicts the coarser grids' solution
    prolongated; its own Adam, started there at the full rate, moved the validation error up again (0.024 to
    0.031 within the first fine epochs). At half the rate the demo's 3 seeds reached 0.02 with 1.4-1.6x fewer
    work units (``benchmarks/results/demo/``).
    """
    if finest_rate_divisor == 1:
        return recipe
    if "learning_rate_divisor" in recipe:
        raise ValueError(
            f"The recipe already sets learning_rate_divisor={recipe['learning_rate_divisor']!r}: "
            "give --finest-rate-divisor 1 to train it as it is."
        )
    return dict(recipe, learning_rate_divisor=[finest_rate_divisor] + [1] * (recipe["levels"] - 1))


def _reached(record, target):
    """Whether the run's last epoch reached ``target``."""
    return record["epochs"][-1]["val_relative_l2"] <= target


RATIO_KEYS = ("training_wall_time_s", "training_cpu_time_s", "work_units")


def speed_ups(pair, target):
    """``pair`` = ``{grown name: (recipe, record), one-level name: (recipe, record)}``: how many times sooner the
    grown run reached ``target`` in wall-clock seconds, CPU seconds and work units, or ``None`` unless both did."""
    (_, multilevel), (_, alone) = pair.values()
    if not (_reached(multilevel, target) and _reached(alone, target)):
        return None
    return [alone["epochs"][-1][key] / multilevel["epochs"][-1][key] for key in RATIO_KEYS]


def table(runs, target):
    """The comparison as markdown: per seed and run, what it took to reach ``target`` (or all it did), each seed's
    speed-ups and, over several seeds, their median [min-max]. ``runs``: ``{seed: {name: (recipe, record)}}``."""
    lines = [
        "| seed | run | levels | epochs | work units | training CPU s | training wall s | val rel. L2 | reached |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, pair in runs.items():
        for name, (recipe, record) in pair.items():
            last = record["epochs"][-1]
            lines.append(
                f"| {seed} | {name} | {recipe['levels']} | {last['epoch']} | {last['work_units']:,.0f} | "
                f"{last['training_cpu_time_s']:.1f} | {last['training_wall_time_s']:.1f} | "
                f"{last['val_relative_l2']:.4f} | {'yes' if _reached(record, target) else 'no'} |"
            )
    lines.append("")
    grown_name, single_name = next(iter(runs.values()))
    ratios = {}
    for seed, pair in runs.items():
        ratio = speed_ups(pair, target)
        if ratio is None:
            lines.append(f"- seed {seed}: not both runs reached {target:g}: no speed-up to report "
                         "(raise --epochs or the target).")
            continue
        ratios[seed] = ratio
        lines.append(f"- seed {seed}: {grown_name} reached {target:g} {ratio[0]:.2f}x sooner than {single_name} in "
                     f"wall-clock seconds ({ratio[1]:.2f}x in CPU seconds, {ratio[2]:.2f}x in work units).")
    if len(ratios) > 1:
        spread = [f"{statistics.median(column):.2f}x [{min(column):.2f}-{max(column):.2f}]" for column in zip(*ratios.values())]
        lines += ["", f"Over the {len(ratios)} seeds where both reached {target:g} (median [min-max]): "
                      f"{spread[0]} sooner in wall-clock seconds, {spread[1]} in CPU seconds, {spread[2]} in work units."]
    return lines


def _coarse_epochs(recipe):
    """How many of the recipe's first epochs train the coarse levels alone (its ``schedule``, in batches)."""
    from keras_multilevel.zoo.recipe import batches_per_epoch

    return sum(recipe.get("schedule", [])) // batches_per_epoch(recipe)


def plot(runs, target, path):
    """Saves the validation relative L2 of each run against training seconds and against work units (one line per
    seed, one colour per kind of run); the epochs in which only the coarse levels train (the full network's error
    waits) are shaded, for the first seed."""
    from keras_multilevel.cli.circles import _pyplot

    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    colours = {}
    for axis, key, label in ((axes[0], "training_wall_time_s", "training seconds (wall clock, tracing included)"),
                             (axes[1], "work_units", "work units (fine gradient evaluations)")):
        for number, (seed, pair) in enumerate(runs.items()):
            for name, (recipe, record) in pair.items():
                rows = record["epochs"]
                (line,) = axis.plot([row[key] for row in rows], [row["val_relative_l2"] for row in rows], "o-",
                                    markersize=3, color=colours.get(name), alpha=1.0 if number == 0 else 0.6,
                                    label=f"{name}, seed {seed}")
                colours[name] = line.get_color()
                coarse = _coarse_epochs(recipe)
                if number == 0 and 0 < coarse <= len(rows):
                    axis.axvspan(0, rows[coarse - 1][key], color=line.get_color(), alpha=0.1,
                                 label="its coarse levels train (the full network waits)")
        axis.axhline(target, color="grey", linestyle=":", label=f"target {target:g}")
        axis.set_yscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("validation relative L2")
        axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def run(args):
    """Trains the preset's recipe and its one-level counterpart to the target, for each seed; writes table.md,
    runs.json and convergence.png."""
    from keras_multilevel import zoo
    from keras_multilevel.zoo import training

    recipe = zoo.metadata(args.preset, args.presets)["recipe"]
    if recipe is None or recipe.get("levels", 1) < 2 or "schedule" not in recipe:
        print(f"keras-multilevel demo: error: preset {args.preset!r} was not trained coarse to fine (its recipe has "
              "no hierarchy and schedule): choose one whose card says 'Coarse to fine'.", file=sys.stderr)
        return 2
    try:
        multilevel = grown(recipe, args.finest_rate_divisor)
    except ValueError as error:
        print(f"keras-multilevel demo: error: preset {args.preset!r}: {error}", file=sys.stderr)
        return 2
    seeds = args.seeds or [recipe["seed"]]
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        print(f"keras-multilevel demo: error: --seeds must be distinct integers >= 0, got {seeds}.", file=sys.stderr)
        return 2
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grids = recipe["levels"]
    runs = {}
    for seed in seeds:
        runs[seed] = {}
        for name, chosen in ((f"grown from its coarsest grid ({grids} levels)", dict(multilevel, seed=seed)),
                             ("one level", one_level(dict(recipe, seed=seed), args.epochs))):
            print(f"seed {seed}, {name}: training until validation relative L2 <= {args.target:g}", flush=True)
            _, record = training.train_recipe(chosen, args.data_dir, progress=True, target=args.target,
                                              steps_per_execution=args.steps_per_execution)
            runs[seed][name] = (chosen, record)
    command = " ".join(["keras-multilevel", *sys.argv[1:]])
    text = "\n".join([
        f"# {args.preset}'s recipe to validation relative L2 {args.target:g}: grown coarse to fine against one level",
        "",
        f"Command: `{command}`",
        "",
        "Training seconds: the epochs' (tracing and compilation included, the validation after each epoch "
        "excluded); work units: fine gradient evaluations (Gaedke-Merzhäuser et al., 2021, eq 10). The grown run "
        f"is the preset's recipe with its finest grid's learning rate divided by {args.finest_rate_divisor:g}, "
        "the one-level run the same network at the recipe's rate. Both runs "
        f"take {args.steps_per_execution} batch(es) per call of Keras' train function (`steps_per_execution`); "
        "for each seed the grown run goes first.",
        "",
        *table(runs, args.target),
    ]) + "\n"
    (out / "table.md").write_text(text)
    (out / "runs.json").write_text(json.dumps(
        {str(seed): {name: {"recipe": chosen, "record": record} for name, (chosen, record) in pair.items()}
         for seed, pair in runs.items()}, indent=1))
    plot(runs, args.target, out / "convergence.png")
    print(text)
    print(f"wrote {out / 'table.md'}, {out / 'runs.json'} (each run's recipe and epochs) and {out / 'convergence.png'}")
    return 0


def register(commands, positive_float, positive_int):
    """Adds the ``demo`` command to an argparse sub-parsers object."""
    demo = commands.add_parser(
        "demo", help="a PDE surrogate grown coarse to fine against one level, to a target accuracy (a few minutes)"
    )
    demo.add_argument("--preset", default="poisson_unet_n32", help="the zoo preset whose recipe the grown run trains")
    demo.add_argument("--target", type=positive_float, default=0.02, help="validation relative L2 that stops a run")
    demo.add_argument("--epochs", type=positive_int, default=30, help="at most, for the one-level run")
    demo.add_argument("--seeds", type=int, nargs="+", default=None,
                      help="train both runs for each of these seeds (default: the preset recipe's own seed)")
    demo.add_argument("--steps-per-execution", type=positive_int, default=25,
                      help="batches per call of Keras' train function, for both runs (Keras' per-batch cost "
                           "otherwise paces the coarse grids' small steps)")
    demo.add_argument("--finest-rate-divisor", type=positive_float, default=2.0,
                      help="the grown run's finest grid trains at the recipe's rate divided by this "
                           "(learning_rate_divisor=[d, 1, ..., 1]); 1 is the preset's recipe as it is")
    demo.add_argument("--data-dir", default=None, help="folder of the data sets (default: TFDS' data folder)")
    demo.add_argument("--presets", default=None, help="folder of presets (default: the shipped ones)")
    demo.add_argument("--out", default="out/demo", help="folder for table.md, runs.json and convergence.png")
    demo.set_defaults(func=run)
