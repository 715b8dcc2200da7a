"""What a user waits for before the first V-cycle: the CPU seconds of a first ``fit``, tracing included.

The circles network of Gaedke-Merzhäuser et al. (2021, §4) (2,048 residual
blocks, width 3, 2,000 points, one batch), one epoch, plain Keras SGD against
``MultilevelOptimizer`` with 1, 2, 4 and 8 levels. Each measurement runs in a
fresh Python process (nothing traced before), the configurations alternate
within each repeat so that the machine's load hits them alike, and the table
gives CPU seconds (``time.process_time``, all threads) as ``median [min-max]``
and each ratio to plain Keras. The same process then measures a second
``fit``, one after ``evaluate``, one after a learning-rate change and one
after another model was compiled and fitted: none of those may trace again.

    python benchmarks/first_fit.py --repeats 3 --out benchmarks/results/first_fit.md

``--against COMMIT`` measures the package as of ``COMMIT`` too (a temporary
git worktree), alternating with this tree, each row's ratio to its own plain
Keras run:

    python benchmarks/first_fit.py --repeats 3 --against 2fab22d --out benchmarks/results/first_fit_loop.md

``--split`` says where a first step's time goes, without Keras' ``fit``
around it: one ``tf.function`` of the training step (plain Keras SGD, or
:class:`keras_multilevel.MultilevelSolver`'s ``step``), its Python tracing
(``get_concrete_function``), its first call (TensorFlow's graph optimization,
grappler, and the instantiation of the graph and its functions, plus one
step) and its second call (one step), with grappler on and switched off
(``disable_meta_optimizer``, in the measuring process only):

    python benchmarks/first_fit.py --split --repeats 3 --out benchmarks/results/first_fit_split.md
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np

from _report import spread, write

CONFIGURATIONS = ("plain", 1, 2, 4, 8)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One measurement, run as `python -c MEASURE <configuration>`; prints a JSON dict of CPU seconds.
MEASURE = r"""
import json, os, sys, time
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras
import keras_multilevel as kml

configuration = sys.argv[1]
x, y = kml.datasets.concentric_circles(2000, seed=0)
keras.utils.set_random_seed(0)


def network():
    return kml.models.residual_network((2,), outputs=2, width=3, blocks=2048)


def optimizer():
    if configuration == "plain":
        return keras.optimizers.SGD(0.1)
    levels = int(configuration)
    steps = {1: "[{1}]", 2: "[(1),{2}]", 4: "[(1),1,1,{2}]", 8: "[(1),1,1,1,2,2,2,{2}]"}[levels]
    return kml.MultilevelOptimizer(levels=levels, smoother=keras.optimizers.SGD(0.1), steps=steps)


def timed(work):
    start = time.process_time()
    work()
    return time.process_time() - start


model = network()
seconds = {}
seconds["compile and first fit"] = timed(lambda: (
    model.compile(optimizer=optimizer(), loss="categorical_crossentropy", metrics=["accuracy"]),
    model.fit(x, y, batch_size=2000, epochs=1, verbose=0)))
seconds["second fit"] = timed(lambda: model.fit(x, y, batch_size=2000, epochs=1, verbose=0))
model.evaluate(x, y, batch_size=2000, verbose=0)
seconds["fit after evaluate"] = timed(lambda: model.fit(x, y, batch_size=2000, epochs=1, verbose=0))
model.optimizer.learning_rate = 0.05
seconds["fit after a learning-rate change"] = timed(lambda: model.fit(x, y, batch_size=2000, epochs=1, verbose=0))
other = network()
other.compile(optimizer="sgd", loss="categorical_crossentropy")
other.fit(x, y, batch_size=2000, epochs=1, verbose=0)
seconds["fit after another model's fit"] = timed(lambda: model.fit(x, y, batch_size=2000, epochs=1, verbose=0))
print(json.dumps(seconds))
"""


# The --split measurement, run as `python -c SPLIT <configuration> <grappler on|off> <this folder>`:
# first_step_design.measure_here, with grappler switched off first if asked.
SPLIT = r"""
import json, os, sys
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import tensorflow as tf

configuration, grappler, folder = sys.argv[1:]
if grappler == "off":
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
sys.path.insert(0, folder)
from first_step_design import measure_here

print(json.dumps(measure_here("plain" if configuration == "plain" else f"solver {configuration}")))
"""


def measure(configuration, split=False, grappler="on", tree=None):
    """One measurement in a fresh process; ``tree``: the source tree to import ``keras_multilevel`` from."""
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if tree is not None:
        environment["PYTHONPATH"] = os.pathsep.join([tree, environment.get("PYTHONPATH", "")])
    folder = os.path.dirname(os.path.abspath(__file__))
    command = [sys.executable, "-c", SPLIT, str(configuration), grappler, folder] if split else [
        sys.executable, "-c", MEASURE, str(configuration)]
    # `python -c` puts the working directory first on sys.path: run in the tree to import from it.
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=True, cwd=tree)
    return json.loads(result.stdout.strip().splitlines()[-1])


def split_table(arguments):
    """The --split table: per configuration and grappler setting, the three parts of a first step."""
    runs = {(configuration, grappler): [] for grappler in ("on", "off") for configuration in CONFIGURATIONS}
    for repeat in range(arguments.repeats):
        for key in runs:
            runs[key].append(measure(key[0], split=True, grappler=key[1]))
            print(f"repeat {repeat}, {key}: {runs[key][-1]}", file=sys.stderr)
    columns = ["Python tracing", "first call", "second call"]
    lines = [
        "# First step: where the CPU seconds go (Python tracing, graph optimization and instantiation, the step)",
        "",
        f"`{shlex.join(['python', *sys.argv])}` ({arguments.repeats} repeats, each run a fresh process, "
        "configurations alternating; circles, 2,048 blocks, 2,000 points, one batch; one `tf.function` of the "
        "step, no `fit`). \"first call\" minus \"second call\" is what TensorFlow spends preparing the graph "
        "(grappler, then instantiating it and its functions).",
        "",
        "| configuration | grappler | graph ops | " + " | ".join(columns)
        + " | first call - second call | tracing + first call / plain Keras |",
        "|---" * (len(columns) + 5) + "|",
    ]
    for (configuration, grappler), measured in runs.items():
        name = "plain Keras SGD" if configuration == "plain" else f"MultilevelSolver, {configuration} level(s)"
        plain = [run["Python tracing"] + run["first call"] for run in runs[("plain", grappler)]]
        total = [run["Python tracing"] + run["first call"] for run in measured]
        cells = [spread([run[column] for run in measured], ".2f") for column in columns]
        preparing = spread([run["first call"] - run["second call"] for run in measured], ".2f")
        lines.append(f"| {name} | {grappler} | {measured[0]['graph ops']} | " + " | ".join(cells)
                     + f" | {preparing} | {np.median(total) / np.median(plain):.2f}x |")
    write(lines, arguments.out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--split", action="store_true", help="where a first step's time goes (see the docstring)")
    parser.add_argument("--out", default="benchmarks/results/first_fit.md")
    parser.add_argument("--against", metavar="COMMIT",
                        help="also measure the package as of COMMIT (checked out in a temporary git worktree), "
                             "alternating with this tree, side by side")
    arguments = parser.parse_args()
    if arguments.split:
        split_table(arguments)
        return
    if arguments.against:
        known = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{arguments.against}^{{commit}}"],
                               cwd=ROOT, capture_output=True)
        if known.returncode != 0:
            parser.error(f"--against {arguments.against!r} is not a commit of this repository")
        with tempfile.TemporaryDirectory() as folder:
            subprocess.run(["git", "worktree", "add", "--detach", folder, arguments.against], check=True,
                           capture_output=True)
            try:
                fit_table(arguments, {"": ROOT, f" at {arguments.against}": folder})
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", folder], check=True)
        return
    fit_table(arguments, {"": None})


def fit_table(arguments, trees):
    """The first-fit table: every configuration with every source tree in ``trees`` (label -> path), alternating."""
    runs = {(configuration, label): [] for configuration in CONFIGURATIONS for label in trees}
    for repeat in range(arguments.repeats):
        for configuration, label in runs:
            runs[configuration, label].append(measure(configuration, tree=trees[label]))
            print(f"repeat {repeat}, {configuration}{label}: {runs[configuration, label][-1]}", file=sys.stderr)
    columns = list(runs["plain", ""][0])
    lines = [
        "# First fit: CPU seconds of compile + one epoch (tracing included), and of the fits after it",
        "",
        f"`{shlex.join(['python', *sys.argv])}` ({arguments.repeats} repeats, each run a fresh process, "
        "configurations alternating; circles, 2,048 blocks, 2,000 points, one batch).",
        "",
        "| configuration | " + " | ".join(columns) + " | first fit / plain Keras |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for (configuration, label), measured in runs.items():
        name = "plain Keras SGD" if configuration == "plain" else f"MultilevelOptimizer, {configuration} level(s)"
        cells = [spread([run[column] for run in measured], ".2f") for column in columns]
        plain = np.median([run[columns[0]] for run in runs["plain", label]])
        ratio = np.median([run[columns[0]] for run in measured]) / plain
        lines.append(f"| {name}{label} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    write(lines, arguments.out)


if __name__ == "__main__":
    main()
