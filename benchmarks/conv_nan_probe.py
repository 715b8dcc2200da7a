"""Which level of a deep MG/OPT hierarchy blows up first on the conv digits problem (issue 22, 5(a)/(b)).

Trains the network of ``conv_depth.py`` (128 conv blocks of width 8, 16x16
digits, minibatch 64) one V-cycle at a time with ``train_on_batch`` and, after
every cycle, prints the logged loss and, per level, the largest absolute weight
and whether all weights are finite (the coarse models keep the weights their
last cycle left them). One line per configuration ``levels:rate[:divisors]``,
``divisors`` a comma-separated per-level list for ``learning_rate_divisor``.

    python benchmarks/conv_nan_probe.py 8:0.1 7:0.1 6:0.1 8:0.1:1,1,1,1,1,2,4,8
"""

import sys

import numpy as np
import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
import keras  # noqa: E402

import keras_multilevel as kml  # noqa: E402
from conv_depth import images  # noqa: E402


def probe(configuration, cycles=int(__import__("os").environ.get("PROBE_CYCLES", 21)), blocks=128, seed=0):
    parts = configuration.split(":")
    levels, rate = int(parts[0]), float(parts[1])
    divisor = [float(d) for d in parts[2].split(",")] if len(parts) > 2 else 1.0
    (x, y), _ = images(seed, 2)
    keras.utils.set_random_seed(seed)
    model = kml.models.residual_network(x.shape[1:], outputs=10, width=8, blocks=blocks, kind="conv")
    optimizer = kml.MultilevelOptimizer(levels=levels, smoother=keras.optimizers.SGD(rate), learning_rate_divisor=divisor)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    order = np.random.default_rng(seed).permutation(len(x))
    print(f"{configuration}: steps {optimizer.steps}", flush=True)
    for cycle in range(cycles):
        batch = order[(cycle * 64) % len(x):][:64]
        logs = model.train_on_batch(x[batch], y[batch], return_dict=True)
        cells = []
        for index, level in enumerate(optimizer.hierarchy):
            values = [np.asarray(v) for v in level.variables]
            finite = all(np.isfinite(v).all() for v in values)
            largest = max(float(np.nanmax(np.abs(v))) for v in values)
            cells.append(f"L{index}({sum(s.blocks for s in kml.hierarchy.depth.residual_stacks(level.model))}b) "
                         f"{'ok' if finite else 'NaN'} {largest:.3g}")
        print(f"  cycle {cycle + 1}: loss {logs['loss']:.4g} | " + " | ".join(cells), flush=True)
        if not np.isfinite(logs["loss"]):
            break


if __name__ == "__main__":
    for configuration in sys.argv[1:]:
        probe(configuration)
