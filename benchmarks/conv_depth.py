"""Seconds to a target on a conv depth problem of realistic size: one level against MG/OPT V-cycles and
shallow-to-deep (coarse-to-fine) training in depth (issue 22, 5(b)).

A convolutional ResNet (``residual_network(kind="conv")``: a 3x3 ``Conv2D``
opening, ``ConvResidualStack`` of ``--blocks`` blocks of ``--width`` channels,
T = 1, a dense softmax head) on scikit-learn's 8x8 digits (the split, scaling
and centring of ``depth_tables.digits_data``) upsampled to 16x16 by pixel
repetition, trained by ``model.fit`` with minibatches of ``--batch`` (shuffled)
and the 500 validation images evaluated after every epoch. A run stops at the
first epoch whose validation accuracy reaches ``--target`` or after
``--epochs``.

Each configuration is one of

* ``levels:rate``: ``MultilevelOptimizer(levels, scheme="mgopt",
  coarsening="depth", smoother=SGD(rate))`` with its default steps (MG/OPT
  V-cycles); ``1:rate`` is one level, plain SGD steps;
* ``growL-E:rate``: Haber et al.'s (2018, §3.3) shallow-to-deep training,
  ``MultilevelOptimizer(levels=L, coarsening="depth", smoother=SGD(rate),
  schedule=[n] * (L - 1))`` with ``n`` = ``E`` epochs of batches (``E`` may
  be fractional; rounded to whole batches): ``E`` epochs on the coarsest
  net (``blocks / 2**(L-1)`` blocks), its weights prolonged, ``E`` epochs on
  the next, ..., then every later batch on the full net. During the coarse
  epochs the full net holds the trained net's weights prolonged to its
  depth (so a run may reach the target there); tables measured before that
  change (``conv_digits_grown*.md``, ``*_divisor.md``) validated the
  untrained full net instead.
  ``growL-E:rate/d`` trains the full net at ``rate / d``
  (``learning_rate_divisor=[d, 1, ..., 1]``, finest first), as the demo's
  grown run does: it starts from the grown weights, not from scratch;
* ``adam:rate``: plain Keras Adam.

Every run is a fresh Python process with TensorFlow held to one intra-op
and one inter-op thread; the configurations alternate within each seed so
that the machine's load hits them alike. Seconds run from before
``model.compile`` to the end of the first epoch at the target, so tracing,
compilation and the per-epoch validation are included; CPU seconds are
``time.process_time`` of the process. Work units are the optimizer's
``work_units`` log (one-level gradient steps; 1 per step for one level and
Adam; ``2**-l`` per batch on coarse level ``l`` of a ``grow`` run). Cells:
median [min-max] over seeds.

Usage::

    python benchmarks/conv_depth.py --configs 1:0.2 4:0.1 --seeds 0 1 2 --blocks 128 --epochs 30 --out benchmarks/results/depth/conv_digits.md
    python benchmarks/conv_depth.py --configs 1:0.2 grow4-2:0.2 --seeds 0 1 2 --blocks 384 --target 0.97 --epochs 15 --out ...
"""

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

import numpy as np

import _report  # benchmarks/_report.py, beside this script


def images(seed, upsample):
    """``depth_tables.digits_data(seed)`` as ``(N, 8 * upsample, 8 * upsample, 1)`` images."""
    from depth_tables import digits_data

    (x, y), (x_val, y_val) = digits_data(seed)

    def grid(flat):
        square = flat.reshape(-1, 8, 8, 1)
        return np.repeat(np.repeat(square, upsample, axis=1), upsample, axis=2)

    return (grid(x), y), (grid(x_val), y_val)


def optimizer(configuration, steps_per_epoch, regularization):
    """The optimizer of a configuration ``kind:rate`` (see the module docstring)."""
    import keras

    import keras_multilevel as kml

    kind, rate = configuration.split(":")
    if kind == "adam":
        return keras.optimizers.Adam(float(rate))
    if kind.startswith("grow"):
        levels, epochs = map(float, kind[len("grow"):].split("-"))
        rate, _, divisor = rate.partition("/")
        batches = round(epochs * steps_per_epoch)
        return kml.MultilevelOptimizer(levels=int(levels), smoother=keras.optimizers.SGD(float(rate)),
                                       coarsening="depth", regularization=regularization,
                                       schedule=[batches] * (int(levels) - 1),
                                       learning_rate_divisor=[float(divisor or 1)] + [1.0] * (int(levels) - 1))
    smoother = keras.optimizers.SGD(float(rate))
    return kml.MultilevelOptimizer(levels=int(kind), smoother=smoother, scheme="mgopt", coarsening="depth",
                                   regularization=regularization)


def run_one(args, configuration, seed):
    """Trains one configuration in this process; returns its record (printed as JSON by ``--one``)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import keras_multilevel as kml

    (x, y), (x_val, y_val) = images(seed, args.upsample)
    keras.utils.set_random_seed(seed)
    model = kml.models.residual_network(x.shape[1:], outputs=10, width=args.width, blocks=args.blocks, kind="conv")
    steps_per_epoch = -(-len(x) // args.batch)
    chosen = optimizer(configuration, steps_per_epoch, args.regularization)
    record = {"configuration": configuration, "seed": seed, "epochs": [], "wall": [], "cpu": [], "work_units": [],
              "val_accuracy": [], "loss": [], "discarded_corrections": []}

    class Clock(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            record["epochs"].append(epoch + 1)
            record["wall"].append(time.perf_counter() - wall)
            record["cpu"].append(time.process_time() - cpu)
            units = logs.get("work_units")
            record["work_units"].append(float(units) if units is not None else float((epoch + 1) * steps_per_epoch))
            record["val_accuracy"].append(float(logs["val_accuracy"]))
            record["loss"].append(float(logs["loss"]))
            record["discarded_corrections"].append(float(logs.get("discarded_corrections", 0.0)))
            print(f"    {configuration} seed {seed} epoch {epoch + 1}: val {logs['val_accuracy']:.4f} "
                  f"loss {logs['loss']:.4f} WU {record['work_units'][-1]:.0f} {record['wall'][-1]:.0f} s",
                  file=sys.stderr, flush=True)
            if logs["val_accuracy"] >= args.target - 1e-9 or not np.isfinite(logs["loss"]):
                self.model.stop_training = True

    wall, cpu = time.perf_counter(), time.process_time()
    model.compile(optimizer=chosen, loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, validation_data=(x_val, y_val),
              validation_batch_size=len(x_val), shuffle=True, verbose=0, callbacks=[Clock()])
    if isinstance(chosen, kml.MultilevelOptimizer):
        if chosen.schedule:  # no V-cycle: its steps and cycle work units would be the unused defaults
            record["schedule"] = list(chosen.schedule)
        else:
            record["cycle_work_units"] = float(chosen.cycle_work_units)
            record["steps"] = str(chosen.steps)
    return record


def measure(args, configuration, seed):
    """``run_one`` in a fresh process (nothing traced before it)."""
    command = [sys.executable, __file__, "--one", configuration, str(seed), *args.passthrough]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def reached(record, target, key):
    hits = [i for i, accuracy in enumerate(record["val_accuracy"]) if accuracy >= target - 1e-9]
    return record[key][hits[0]] if hits else None


def table(args, results, command):
    configurations = list(dict.fromkeys(r["configuration"] for r in results))
    lines = [
        f"# Conv ResNet on the digits ({8 * args.upsample}x{8 * args.upsample}): one level against multilevel in depth, "
        f"seconds to validation accuracy {args.target:g}\n",
        f"Command: `{command}`\n",
        f"{args.blocks} `ConvResidualStack` blocks of width {args.width} (3x3, T = 1), 8x8 digits upsampled to "
        f"{8 * args.upsample}x{8 * args.upsample} (1,297 train / 500 validation), minibatch {args.batch}, "
        f"Tikhonov beta {args.regularization:g}, stop at validation accuracy {args.target:g} or {args.epochs} epochs; "
        f"seeds {args.seeds}. Each run a fresh process, configurations alternating per seed; TensorFlow limited to "
        "1 intra-op and 1 inter-op thread on a shared 2-core machine. Seconds from before `model.compile` to the end of "
        "the first epoch at the target (tracing, compilation and per-epoch validation included). "
        "Cells: median [min-max] over seeds; \"-\" means not reached.\n",
        f"| configuration | steps | U per cycle | epochs to {args.target:g} | WU to {args.target:g} | wall s | CPU s "
        "| CPU s / WU (after epoch 1) | speed-up in wall s | speed-up in CPU s | best val. acc. "
        "| discarded corrections (whole run) |",
        "|" + "---|" * 12,
    ]

    def med(records, key):
        values = [reached(r, args.target, key) for r in records]
        return None if None in values else float(np.median(values))

    groups = {c: [r for r in results if r["configuration"] == c] for c in configurations}
    one_level = [c for c in configurations if c.startswith("1:") or c.startswith("adam:")]
    base = {key: min((v for v in (med(groups[c], key) for c in one_level) if v is not None), default=None)
            for key in ("wall", "cpu")}
    for configuration, records in groups.items():
        per_unit = []
        for r in records:
            if len(r["cpu"]) > 1:
                per_unit.append((r["cpu"][-1] - r["cpu"][0]) / (r["work_units"][-1] - r["work_units"][0]))
        speed = {key: "-" if None in (base[key], med(records, key)) else f"{base[key] / med(records, key):.2f}"
                 for key in ("wall", "cpu")}
        first = records[0]
        if "schedule" in first:  # coarse-to-fine: no V-cycle, no safeguard
            steps, cycle, discarded = f"schedule `{first['schedule']}`", "-", "-"
        else:
            steps, cycle = f"`{first['steps']}`" if "steps" in first else "-", f"{first.get('cycle_work_units', 1.0):.2f}"
            discarded = _report.spread([(r.get("discarded_corrections") or [0.0])[-1] for r in records], ".0f")
        lines.append(
            f"| {configuration} | {steps} | {cycle} "
            f"| {_report.spread([reached(r, args.target, 'epochs') for r in records], '.0f')} "
            f"| {_report.spread([reached(r, args.target, 'work_units') for r in records], '.0f')} "
            f"| {_report.spread([reached(r, args.target, 'wall') for r in records], '.0f')} "
            f"| {_report.spread([reached(r, args.target, 'cpu') for r in records], '.0f')} "
            f"| {_report.spread(per_unit, '.3f') if per_unit else '-'} | {speed['wall']} | {speed['cpu']} "
            f"| {_report.spread([max(r['val_accuracy']) for r in records], '.3f')} "
            f"| {discarded} |"
        )
    lines += ["", "Configuration `L:rate`: `MultilevelOptimizer(levels=L, scheme=\"mgopt\", coarsening=\"depth\", "
              "smoother=SGD(rate))` (L = 1: one level, plain SGD steps); `growL-E:rate`: shallow-to-deep training "
              "(Haber et al., 2018, §3.3), `MultilevelOptimizer(levels=L, coarsening=\"depth\", smoother=SGD(rate), "
              "schedule=[n] * (L - 1))` with n the batches of E epochs: E epochs on each coarse net (blocks / 2, / 4, "
              "..., coarsest first, each started from the coarser one's prolonged weights), then the full net (no "
              "V-cycle, so no steps or U per cycle; epochs and WU count the coarse epochs, WU at 2^-l per batch on "
              "level l); `growL-E:rate/d`: the same with the full net at rate / d (`learning_rate_divisor=[d, 1, "
              "..., 1]`); `adam:rate`: Keras Adam. Speed-ups are against the fastest one-level (or Adam) row by median."]
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["1:0.1", "4:0.1"], help="levels:rate or adam:rate")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--blocks", type=int, default=64)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--upsample", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--regularization", type=float, default=0.0)
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", default="benchmarks/results/depth/conv_digits.md")
    parser.add_argument("--from-json", help="write the table of a saved JSON (an interrupted run's) instead of measuring")
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    raw = sys.argv[1:] if argv is None else argv
    if args.one:
        print(json.dumps(run_one(args, args.one[0], int(args.one[1]))))
        return
    # The network and stopping options go to every child process.
    args.passthrough = [f"--{name}={getattr(args, name)}" for name in
                        ("blocks", "width", "upsample", "batch", "regularization", "target", "epochs")]
    shown = [a for i, a in enumerate(raw) if not a.startswith("--from-json") and (i == 0 or raw[i - 1] != "--from-json")]
    command = shlex.join(["python", "benchmarks/conv_depth.py", *shown])
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        results = json.loads(pathlib.Path(args.from_json).read_text())
        _report.write(table(args, results, command), out)
        return
    results = []
    for seed in args.seeds:
        for configuration in args.configs:
            results.append(measure(args, configuration, seed))
            r = results[-1]
            print(f"{configuration} seed {seed}: WU {reached(r, args.target, 'work_units')}, "
                  f"wall {reached(r, args.target, 'wall')}, CPU {reached(r, args.target, 'cpu')}", flush=True)
            out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    _report.write(table(args, results, command), out)


if __name__ == "__main__":
    main()
