"""Two checks behind the demo's settings (``keras-multilevel demo``, issue 22, 5(a)).

``batches``: what Keras' per-batch cost does to the zoo's ``poisson_unet_n32`` U-Net. 100 batches of the
coarsest level alone (the 8×8 grid of the grown recipe's first phase) and of the full network on one level,
at 1 and at ``--per-call`` batches per call of Keras' train function (``compile(steps_per_execution=...)``),
after a first epoch that traces; each a fresh process, 2 repeats, CPU and wall seconds.

``one-level``: the demo's one-level run at other Adam rates (its recipe's cosine decay over 30 epochs, 25
batches per call, stopped at validation relative L2 0.02), one run per seed: is the demo's rate (the recipe's
0.004) one level's best?

Usage::

    python benchmarks/demo_checks.py batches --data-dir /tmp/fno/data --out benchmarks/results/demo/batches_per_call.md
    python benchmarks/demo_checks.py one-level --rates 0.002 --seeds 0 1 2 --data-dir /tmp/fno/data \\
        --out benchmarks/results/demo/one_level_rates.md
"""

import argparse
import copy
import json
import shlex
import subprocess
import sys
import time

import _report  # benchmarks/_report.py, beside this script

PRESET = "poisson_unet_n32"


def _recipe():
    from keras_multilevel import zoo

    return zoo.metadata(PRESET)["recipe"]


def batches_one(levels, per_call, data_dir):
    """CPU and wall seconds of 100 batches (twice, after a first traced epoch), in this process."""
    import keras

    import keras_multilevel as kml
    from keras_multilevel.zoo import training

    recipe = _recipe()
    train = training._data(training.dataset_description(recipe), "train", data_dir, recipe["batch_size"],
                           shuffle=True).take(100)
    keras.utils.set_random_seed(0)
    model = kml.models.unet(recipe["resolution"], **recipe["architecture"])
    # levels == 3: a schedule longer than the run, so every batch trains the coarsest level (the 8×8 grid).
    settings = dict(levels=3, coarsening="pyramid", schedule=[10**6, 10**6]) if levels == 3 else dict(levels=1)
    model.compile(optimizer=kml.MultilevelOptimizer(smoother=keras.optimizers.Adam(1e-3), **settings), loss="mse",
                  steps_per_execution=per_call)
    model.fit(train, epochs=1, verbose=0)
    seconds = []
    for _ in range(2):
        cpu, wall = time.process_time(), time.perf_counter()
        model.fit(train, epochs=1, verbose=0)
        seconds.append({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall})
    return seconds


def batches(args):
    rows = []
    for name, levels in (("coarsest level (8×8 grid) alone", 3), ("one level (the 32×32 network)", 1)):
        for per_call in (1, args.per_call):
            command = [sys.executable, __file__, "--one-batches", str(levels), str(per_call), "--data-dir", args.data_dir]
            output = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
            seconds = json.loads(output.strip().splitlines()[-1])
            rows.append(f"| {name} | {per_call} | {_report.spread([s['cpu'] for s in seconds], '.2f')} "
                        f"| {_report.spread([s['wall'] for s in seconds], '.2f')} |")
    return [
        f"# {PRESET}: 100 batches at 1 and {args.per_call} batches per call of Keras' train function\n",
        f"Command: `python {shlex.join(sys.argv)}`\n",
        "Each row a fresh process: a first epoch of 100 batches (tracing), then two more, timed (median [min-max] "
        "of the two).\n",
        "| trains | batches per call | CPU s | wall s |",
        "|---|---|---|---|",
        *rows,
    ]


def one_level(args):
    from keras_multilevel.cli.surrogate import one_level as single
    from keras_multilevel.zoo import training

    rows = []
    for rate in args.rates:
        for seed in args.seeds:
            recipe = single(dict(_recipe(), seed=seed), 30)
            recipe["smoother"]["config"]["learning_rate"]["config"]["initial_learning_rate"] = rate
            _, record = training.train_recipe(copy.deepcopy(recipe), args.data_dir, progress=False, target=0.02,
                                              steps_per_execution=25)
            last = record["epochs"][-1]
            rows.append(f"| {rate:g} | {seed} | {last['epoch']} | {last['work_units']:,.0f} "
                        f"| {last['training_cpu_time_s']:.1f} | {last['training_wall_time_s']:.1f} "
                        f"| {last['val_relative_l2']:.4f} |")
            print(rows[-1], flush=True)
    return [
        f"# {PRESET}: the demo's one-level run at other Adam rates, to validation relative L2 0.02\n",
        f"Command: `python {shlex.join(sys.argv)}`\n",
        "The demo's one-level recipe (cosine decay over 30 epochs, 25 batches per call) with its initial rate "
        "replaced; training seconds as in the demo's table (tracing in, validation out).\n",
        "| Adam rate | seed | epochs | work units | training CPU s | training wall s | val rel. L2 |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("check", nargs="?", choices=["batches", "one-level"])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--per-call", type=int, default=10)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.002])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out")
    parser.add_argument("--one-batches", nargs=2, type=int, metavar=("LEVELS", "PER_CALL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_batches:
        print(json.dumps(batches_one(*args.one_batches, args.data_dir)))
        return
    if args.check is None or args.out is None:
        parser.error("give a check (batches or one-level) and --out")
    lines = batches(args) if args.check == "batches" else one_level(args)
    _report.write(lines, args.out)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
