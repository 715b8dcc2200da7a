"""CPU and wall seconds per work unit of one training step on the conv digits problem, without validation (issue 22, 5(a)).

The network of ``conv_depth.py`` (128 conv blocks of width 8, 16x16 digits,
minibatches of 64). For each configuration (``plain`` Keras SGD, or
``MultilevelOptimizer`` with ``L`` levels) it times ``--steps`` calls of
``train_on_batch`` after two warm-up calls (tracing excluded): training steps
only, no validation and no ``fit`` loop. The configurations alternate
``--repeats`` times in one process per thread setting:

    python benchmarks/conv_step_cost.py --threads 1 --steps 20 plain 1 4 8
"""

import argparse
import time

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (0: TensorFlow's default)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("configurations", nargs="+")
    args = parser.parse_args()
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    import keras_multilevel as kml
    from conv_depth import images

    (x, y), _ = images(0, 2)
    models = {}
    for configuration in args.configurations:
        keras.utils.set_random_seed(0)
        model = kml.models.residual_network(x.shape[1:], outputs=10, width=8, blocks=args.blocks, kind="conv")
        if configuration == "plain":
            optimizer, units = keras.optimizers.SGD(0.1), 1.0
        else:
            optimizer = kml.MultilevelOptimizer(levels=int(configuration), smoother=keras.optimizers.SGD(0.05))
        model.compile(optimizer=optimizer, loss="categorical_crossentropy")
        for _ in range(2):
            model.train_on_batch(x[:64], y[:64])
        units = 1.0 if configuration == "plain" else optimizer.cycle_work_units
        models[configuration] = (model, units, [])
    for _ in range(args.repeats):
        for configuration, (model, units, measured) in models.items():
            wall, cpu = time.perf_counter(), time.process_time()
            for step in range(args.steps):
                batch = slice((step * 64) % 1216, (step * 64) % 1216 + 64)
                model.train_on_batch(x[batch], y[batch])
            measured.append(((time.perf_counter() - wall) / args.steps / units,
                             (time.process_time() - cpu) / args.steps / units))
    print(f"threads {args.threads or 'default'}, {args.blocks} blocks, {args.steps} steps x {args.repeats} repeats")
    plain = None
    for configuration, (model, units, measured) in models.items():
        wall = float(np.median([m[0] for m in measured]))
        cpu = float(np.median([m[1] for m in measured]))
        plain = plain or cpu
        print(f"  {configuration:>5}: U_c {units:.3f}; per WU: wall {wall * 1e3:.1f} ms, CPU {cpu * 1e3:.1f} ms "
              f"({cpu / plain:.2f}x the first row's CPU)")


if __name__ == "__main__":
    main()
