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
"""

import argparse
import json
import os
import shlex
import subprocess
import sys

import numpy as np

from _report import spread, write

CONFIGURATIONS = ("plain", 1, 2, 4, 8)

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


def measure(configuration):
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(configuration)], capture_output=True, text=True, env=environment, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/first_fit.md")
    arguments = parser.parse_args()
    runs = {configuration: [] for configuration in CONFIGURATIONS}
    for repeat in range(arguments.repeats):
        for configuration in CONFIGURATIONS:
            runs[configuration].append(measure(configuration))
            print(f"repeat {repeat}, {configuration}: {runs[configuration][-1]}", file=sys.stderr)
    columns = list(runs["plain"][0])
    plain = np.median([run[columns[0]] for run in runs["plain"]])
    lines = [
        "# First fit: CPU seconds of compile + one epoch (tracing included), and of the fits after it",
        "",
        f"`{shlex.join(['python', *sys.argv])}` ({arguments.repeats} repeats, each run a fresh process, "
        "configurations alternating; circles, 2,048 blocks, 2,000 points, one batch).",
        "",
        "| configuration | " + " | ".join(columns) + " | first fit / plain Keras |",
        "|---" * (len(columns) + 2) + "|",
    ]
    for configuration, measured in runs.items():
        name = "plain Keras SGD" if configuration == "plain" else f"MultilevelOptimizer, {configuration} level(s)"
        cells = [spread([run[column] for run in measured], ".2f") for column in columns]
        ratio = np.median([run[columns[0]] for run in measured]) / plain
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio:.2f}x |")
    write(lines, arguments.out)


if __name__ == "__main__":
    main()
