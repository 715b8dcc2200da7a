"""A design probe for issue 22, item 4: what a V-cycle whose coarse weights flow as values would cost to start.

Today's compiled V-cycle (:func:`keras_multilevel.optimizers.cycle.v_cycle`)
keeps every level's weights in the level model's variables: each smoothing
step, restriction and correction reads and assigns them in the traced step,
so the step's graph grows by about 290 ops per level (2,320 at 8 levels,
``first_fit_split.md``) and its Python tracing and TensorFlow's preparation
grow with it. This script measures two alternatives before anyone rewrites
the cycle for them. Both run the same V-cycle as the solver (MG/OPT, one
minibatch, plain SGD at rate 0.1, the correction bound of 3, the solver's
hierarchy and shared relaxed-shape gradient function); only the finest
model's variables are read and assigned, the coarse weights are tensors.

* ``values L``: the cycle unrolled in Python as today, its elementwise
  pieces (an SGD step, the restriction with ``R grad H``, the coupling
  ``R grad H - grad L_c(Pi x)``, the bounded correction) as ``tf.function`` s
  traced once with the weights' sizes left open and shared by all levels,
  called from the outer step (as is the gradient: a nested function called
  from several parent functions is instantiated and optimized once per
  parent), their per-level constants passed as tensors read from a
  variable, never as graph constants (grappler specializes a function per
  call site for constant inputs).
* ``loop L``: the cycle compiled in Python into a list of events (a step
  with the received gradient or a new one, a descent, a coupling, a
  correction; :func:`schedule`) and run as one ``tf.while_loop`` over them,
  every level's state in ``TensorArray`` s indexed by level: one gradient
  call site for the whole cycle, whatever the number of levels.
* ``keras L``: the same loop with the solver's own state, each level's
  weights in its model's variables and each step its Keras optimizer,
  through a ``tf.switch_case`` over the levels wherever an event touches a
  level's state (a Keras optimizer cannot step values on TensorFlow).

The product's loop cycle (:mod:`keras_multilevel.optimizers.cycle_loop`)
grew out of ``loop L``; since it exists, ``solver L`` runs it for this
set-up, and the committed tables' ``solver`` rows (measured before) are the
unrolled cycle's.

A probe, not a second implementation: it leaves out what the product's cycle
does besides (iteration counts, momentum, Keras optimizers, MLSGD's guards,
loss scaling, replicas). ``--check`` trains the same network from the same
weights with each for 15 cycles at 8 levels and prints the training loss
after every other cycle: they agree with the solver's to four digits. Each
configuration runs in a fresh process, alternating: one ``tf.function`` of
the step, as ``first_fit.py --split`` (a probe's tracing of its shared
functions, before the step's, counts as tracing), or with ``--fit`` compile
and a one-epoch ``fit``, as ``first_fit.py`` but without metrics (a probe
runs as the network's ``train_step``, its hierarchy built in the timed part):

    python benchmarks/first_step_design.py --repeats 3 --out benchmarks/results/first_step_design.md
    python benchmarks/first_step_design.py --fit --repeats 3 --out benchmarks/results/first_step_design_fit.md
    python benchmarks/first_step_design.py --check
    python benchmarks/first_step_design.py --fit --repeats 3 --configurations plain "solver 8" "loop 8" "keras 2" "keras 8" --out benchmarks/results/first_step_design_keras.md
"""

import argparse
import json
import os
import shlex
import subprocess
import sys

import numpy as np

from _report import spread, write

STEPS = {1: "[{1}]", 2: "[(1),{2}]", 4: "[(1),1,1,{2}]", 8: "[(1),1,1,1,2,2,2,{2}]"}
CONFIGURATIONS = ("plain", "solver 2", "values 2", "loop 2", "solver 4", "values 4", "loop 4",
                  "solver 8", "values 8", "loop 8")


def _probe_setup(solver):
    """What both probes start from: the levels, their steps, the weights' relaxed specs, the finest transfer (every
    level's is alike in depth) and the level gradient as one ``tf.function`` traced with open sizes."""
    import tensorflow as tf

    from keras_multilevel.optimizers.objective import loss_gradient
    from keras_multilevel.optimizers.steps import CycleSteps
    from keras_multilevel.optimizers.traces import relaxed_specs

    levels = list(solver.hierarchy)
    steps = CycleSteps.parse(STEPS[len(levels)], len(levels))
    models = [level.model for level in levels]
    specs = relaxed_specs(models)
    data_spec = (tf.TensorSpec([None, 2], tf.float32), tf.TensorSpec([None, 2], tf.float32), None)
    representative = models[1]
    gradient = tf.function(lambda values, data: loss_gradient(representative, data, None, values)[2],
                           autograph=False, experimental_attributes={"_noinline": True})
    gradient.get_concrete_function(specs, data_spec)
    return levels, steps, specs, levels[0].transfer, gradient


def _sgd(x, gradients, weights, rate):
    """One SGD step in the level inner product (``weights`` per variable, a list of scalars)."""
    return [v - rate * g / w for v, g, w in zip(x, gradients, weights)]


def _bounded(x, correction, bound):
    """``x + P e`` where the solver's safeguard allows it (``within_bound``), else ``x``."""
    import tensorflow as tf

    from keras_multilevel.optimizers.mgopt import within_bound

    allowed = within_bound(correction, x, bound)
    return [v + tf.where(allowed, c, tf.zeros_like(c)) for v, c in zip(x, correction)]


def values_step(solver, rate=0.1, bound=3.0):
    """The probe's V-cycle over ``solver``'s hierarchy: ``step(batch)`` with the coarse weights as values."""
    import tensorflow as tf

    levels, steps, specs, transfer, gradient = _probe_setup(solver)
    vector = tf.TensorSpec([len(specs)], tf.float32)

    def shared(function, *signature):
        traced = tf.function(function, autograph=False, experimental_attributes={"_noinline": True})
        traced.get_concrete_function(*signature)
        return traced

    def coupled(gradients, shift):
        return gradients if shift is None else [g + s for g, s in zip(gradients, shift)]

    def update(x, gradients, shift, weights):  # an SGD step on H = L + <shift, x> in the level inner product
        return _sgd(x, coupled(gradients, shift), tf.unstack(weights, num=len(x)), rate)

    def restrict(x, gradients, shift):  # Pi x and R grad H
        return transfer.restrict(x), transfer.restrict_gradient(coupled(gradients, shift))

    def coupling(restricted, coarse):  # the coarse level's shift -tau = R grad H - grad L_c(Pi x)
        return [r - c for r, c in zip(restricted, coarse)]

    def correct(x, start, final):  # x + P (x_c - Pi x), unless it is not finite or longer than bound * ||x||
        return _bounded(x, transfer.prolong([f - s for f, s in zip(final, start)]), bound)

    pieces = {
        "update": shared(update, specs, specs, specs, vector),
        "update finest": shared(update, specs, specs, None, vector),
        "restrict": shared(restrict, specs, specs, specs),
        "restrict finest": shared(restrict, specs, specs, None),
        "coupling": shared(coupling, specs, specs),
        "correct": shared(correct, specs, specs, specs),
    }
    weights = [tf.Variable(level.inner_product, dtype=tf.float32, trainable=False) for level in levels]

    def smooth(x, index, shift, data, count, received=None):
        for step in range(count):
            if step == 0 and received is not None:  # the received gradient already includes the coupling
                x = pieces["update finest"](x, received, None, weights[index].value())
            else:
                name = "update finest" if shift is None else "update"
                x = pieces[name](x, gradient(x, data), shift, weights[index].value())
        return x

    def step(batch):
        data = (batch[0], batch[1], None)
        x = [tf.convert_to_tensor(variable.value) for variable in levels[0].model.trainable_variables]
        shift, received, above = None, gradient(x, data), []
        for index in range(len(levels) - 1):
            x = smooth(x, index, shift, data, steps.pre[index], received)
            start, restricted = pieces["restrict finest" if shift is None else "restrict"](
                x, gradient(x, data), shift)
            above.append((x, start, shift))
            x, shift, received = start, pieces["coupling"](restricted, gradient(start, data)), restricted
        x = smooth(x, len(levels) - 1, shift, data, steps.coarsest, received)
        for index in reversed(range(len(levels) - 1)):
            fine, start, fine_shift = above[index]
            x = smooth(pieces["correct"](fine, start, x), index, fine_shift, data, steps.post[index])
        for variable, value in zip(levels[0].model.trainable_variables, x):
            variable.assign(value)
        return x[0][0, 0]

    return tf.autograph.experimental.do_not_convert(step)


def schedule(steps, levels):
    """The probe's cycle as a list of ``(event, level)``, in order (see :func:`loop_step`)."""
    events = []
    for index in range(levels - 1):
        events += [("smooth received", index)] + [("smooth", index)] * (steps.pre[index] - 1)
        events += [("descend", index), ("couple", index)]
    events += [("smooth received", levels - 1)] + [("smooth", levels - 1)] * (steps.coarsest - 1)
    for index in reversed(range(levels - 1)):
        events += [("correct", index)] + [("smooth", index)] * steps.post[index]
    return events


def loop_step(solver, rate=0.1, bound=3.0):
    """The same V-cycle as :func:`values_step`, run as one ``tf.while_loop`` over its events.

    Every level's weights, shift, restriction start and received gradient live
    in ``TensorArray`` s indexed by level (their sizes differ); each iteration
    evaluates the one shared gradient function (one call site in the whole
    step) where its event needs it and applies the event through
    ``tf.switch_case``: an SGD step (with the received gradient or a new
    one), a descent (``Pi x`` and ``R grad H``), the coupling of the coarse
    level, or the bounded correction. Needs every level's pre-smoothing to
    take at least one step (the received gradient serves the first).
    """
    import tensorflow as tf

    levels, steps, specs, transfer, gradient = _probe_setup(solver)
    count = len(levels)
    kinds = ("smooth received", "smooth", "descend", "couple", "correct")
    events = schedule(steps, count)
    table = tf.Variable([[kinds.index(kind), level] for kind, level in events], dtype=tf.int32, trainable=False)
    weights = tf.Variable([level.inner_product for level in levels], dtype=tf.float32, trainable=False)

    def step(batch):
        data = (batch[0], batch[1], None)
        finest = [tf.convert_to_tensor(variable.value) for variable in levels[0].model.trainable_variables]

        def arrays():
            return [tf.TensorArray(tf.float32, size=count, infer_shape=False, element_shape=tf.TensorShape(None))
                    for _ in specs]

        def write(state, level, values):
            return [array.write(level, value) for array, value in zip(state, values)]

        def read(state, level):
            return [tf.ensure_shape(array.read(level), spec.shape) for array, spec in zip(state, specs)]

        x, shift, start, received = write(arrays(), 0, finest), arrays(), arrays(), arrays()
        shift = write(shift, 0, [tf.zeros_like(v) for v in finest])
        received = write(received, 0, gradient(finest, data))
        table_value = table.value()
        weight_table = weights.value()

        def body(event, x, shift, start, received):
            kind, level = table_value[event][0], table_value[event][1]
            # the coupling evaluates the coarse level, the correction prolongs its change
            at = tf.where(tf.logical_or(tf.equal(kind, 3), tf.equal(kind, 4)), level + 1, level)
            point = read(x, at)
            needs = tf.logical_and(tf.not_equal(kind, 0), tf.not_equal(kind, 4))
            evaluated = tf.cond(needs, lambda: gradient(point, data), lambda: [tf.zeros_like(v) for v in point])
            level_weights = tf.unstack(weight_table[level], num=len(specs))
            level_shift = read(shift, level)

            def smooth_received():
                return write(x, level, _sgd(point, read(received, level), level_weights, rate)), shift, start, received

            def smooth():
                g = [gi + si for gi, si in zip(evaluated, level_shift)]
                return write(x, level, _sgd(point, g, level_weights, rate)), shift, start, received

            def descend():
                g = [gi + si for gi, si in zip(evaluated, level_shift)]
                coarse = transfer.restrict(point)
                return (write(x, level + 1, coarse), shift, write(start, level, coarse),
                        write(received, level + 1, transfer.restrict_gradient(g)))

            def couple():
                restricted = read(received, level + 1)
                return x, write(shift, level + 1, [r - c for r, c in zip(restricted, evaluated)]), start, received

            def correct():
                correction = transfer.prolong([c - s for c, s in zip(point, read(start, level))])
                return write(x, level, _bounded(read(x, level), correction, bound)), shift, start, received

            branches = [smooth_received, smooth, descend, couple, correct]
            outputs = tf.switch_case(kind, branches)
            return (event + 1, *outputs)

        state = tf.while_loop(lambda event, *rest: event < len(events), body,
                              (tf.constant(0), x, shift, start, received))
        final = read(state[1], 0)
        for variable, value in zip(levels[0].model.trainable_variables, final):
            variable.assign(value)
        return final[0][0, 0]

    return tf.autograph.experimental.do_not_convert(step)


def keras_loop_step(solver, rate=0.1, bound=3.0):
    """The loop of :func:`loop_step` with the solver's own state: each level's weights stay in its model's
    variables and each step is the level's Keras optimizer (``level.smoother``, SGD at ``rate``).

    A Keras optimizer cannot step values on TensorFlow (``stateless_apply``
    refuses this backend), so every event that touches a level's state is a
    ``tf.switch_case`` over the levels, each branch traced with its own
    variables and optimizer; the shared gradient function keeps its one call
    site. The coupling, start and received gradient of each level are
    variables too.
    """
    import tensorflow as tf

    from keras_multilevel.optimizers.inner_product import riesz
    from keras_multilevel.optimizers.loss_scale import apply_step

    levels, steps, specs, _, gradient = _probe_setup(solver)
    count = len(levels)
    kinds = ("smooth received", "smooth", "descend", "couple", "correct")
    events = schedule(steps, count)
    table = tf.Variable([[kinds.index(kind), level] for kind, level in events], dtype=tf.int32, trainable=False)

    def like(variables, name):
        return [tf.Variable(tf.zeros_like(v), trainable=False, name=name) for v in variables]

    shift = [like(level.variables, "shift") for level in levels]
    received = [like(level.variables, "received") for level in levels]
    start = [like(coarse.variables, "start") for coarse in levels[1:]]

    def assign(variables, values):
        for variable, value in zip(variables, values):
            variable.assign(value)
        return tf.constant(0)

    def step(batch):
        data = (batch[0], batch[1], None)
        table_value = table.value()
        assign(received[0], gradient([tf.convert_to_tensor(v.value) for v in levels[0].variables], data))

        def body(event):
            kind, level = table_value[event][0], table_value[event][1]
            at = tf.where(tf.logical_or(tf.equal(kind, 3), tf.equal(kind, 4)), level + 1, level)
            point = tf.switch_case(at, [lambda l=l: [tf.identity(v) for v in levels[l].variables] for l in range(count)])
            point = [tf.ensure_shape(p, spec.shape) for p, spec in zip(point, specs)]
            needs = tf.logical_and(tf.not_equal(kind, 0), tf.not_equal(kind, 4))
            evaluated = tf.cond(needs, lambda: gradient(point, data), lambda: [tf.zeros_like(v) for v in point])

            def smooth(l):
                def run():
                    g = [tf.where(tf.equal(kind, 0), r, e + s) for r, e, s in zip(received[l], evaluated, shift[l])]
                    apply_step(levels[l].smoother, riesz(g, levels[l].inner_product), levels[l].variables)
                    return tf.constant(0)
                return run

            def descend(l):
                def run():
                    transfer = levels[l].transfer
                    coarse = transfer.restrict(levels[l].variables)
                    assign(levels[l + 1].variables, coarse)
                    assign(start[l], coarse)
                    return assign(received[l + 1], transfer.restrict_gradient([e + s for e, s in zip(evaluated, shift[l])]))
                return run

            def couple(l):
                return lambda: assign(shift[l + 1], [r - c for r, c in zip(received[l + 1], evaluated)])

            def correct(l):
                def run():
                    correction = levels[l].transfer.prolong([c - s for c, s in zip(levels[l + 1].variables, start[l])])
                    return assign(levels[l].variables, _bounded([tf.convert_to_tensor(v) for v in levels[l].variables],
                                                                correction, bound))
                return run

            def per_level(make, top):
                return lambda: tf.switch_case(level, [make(l) for l in range(top)])

            branches = [per_level(smooth, count), per_level(descend, count - 1), per_level(couple, count - 1),
                        per_level(correct, count - 1)]
            tf.switch_case(tf.maximum(kind - 1, 0), branches)  # both smoothing kinds take the same branch
            return (event + 1,)

        tf.while_loop(lambda event: event < len(events), body, (tf.constant(0),))
        return levels[0].variables[0][0, 0]

    return tf.autograph.experimental.do_not_convert(step)


def measure_here(configuration):
    """One measurement in this process: Python tracing (with the probes' tracing of their shared functions
    before the step's), first and second call of the step's ``tf.function``."""
    import time

    import keras
    import tensorflow as tf

    import keras_multilevel as kml

    x, y = kml.datasets.concentric_circles(2000, seed=0)
    keras.utils.set_random_seed(0)
    model = kml.models.residual_network((2,), outputs=2, width=3, blocks=2048)
    tracing = 0.0
    if configuration == "plain":
        optimizer = keras.optimizers.SGD(0.1)
        model.compile(optimizer=optimizer, loss="categorical_crossentropy")
        optimizer.build(model.trainable_variables)

        def step(batch):
            with tf.GradientTape() as tape:
                loss = model.compute_loss(x=batch[0], y=batch[1], y_pred=model(batch[0], training=True))
            optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            return loss
    else:
        kind, levels = configuration.split()
        solver = kml.MultilevelSolver(model, loss="categorical_crossentropy", levels=int(levels),
                                      smoother=keras.optimizers.SGD(0.1), steps=STEPS[int(levels)])
        start = time.process_time()  # the probes trace their shared functions here
        step = BUILDERS[kind](solver)
        tracing = time.process_time() - start
    batch = (tf.constant(x), tf.constant(y))
    function = tf.function(step)
    seconds = {}
    start = time.process_time()
    graph = function.get_concrete_function(batch).graph
    seconds["Python tracing"] = tracing + time.process_time() - start
    for name in ("first call", "second call"):
        start = time.process_time()
        function(batch)
        seconds[name] = time.process_time() - start
    seconds["graph ops"] = len(graph.get_operations())
    return seconds


BUILDERS = {"solver": lambda solver: lambda batch: solver.step(batch).loss, "values": values_step, "loop": loop_step,
            "keras": keras_loop_step}


def measure_fit_here(configuration):
    """CPU seconds of building the optimizer, ``compile`` and a first one-epoch ``fit`` (as ``first_fit.py``).

    ``plain``: Keras SGD; ``solver L``: ``MultilevelOptimizer``; ``values L`` and ``loop L``: the probe's step
    as the network's ``train_step`` (the hierarchy built by a ``MultilevelSolver`` inside the timed part).
    """
    import time

    import keras

    import keras_multilevel as kml

    x, y = kml.datasets.concentric_circles(2000, seed=0)
    keras.utils.set_random_seed(0)
    model = kml.models.residual_network((2,), outputs=2, width=3, blocks=2048)
    start = time.process_time()
    if configuration == "plain":
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    else:
        kind, levels = configuration.split()
        if kind == "solver":
            model.compile(optimizer=kml.MultilevelOptimizer(levels=int(levels), smoother=keras.optimizers.SGD(0.1),
                                                            steps=STEPS[int(levels)]), loss="categorical_crossentropy")
        else:
            solver = kml.MultilevelSolver(model, loss="categorical_crossentropy", levels=int(levels),
                                          smoother=keras.optimizers.SGD(0.1), steps=STEPS[int(levels)])
            step = BUILDERS[kind](solver)
            model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
            model.train_step = lambda data: {"loss": step(data)}
    model.fit(x, y, batch_size=2000, epochs=1, verbose=0)
    return {"compile and first fit": time.process_time() - start}


def check(cycles=15, levels=8):
    """Prints the training loss after every other cycle of the solver and of both probes, from the same weights."""
    import keras
    import tensorflow as tf

    import keras_multilevel as kml

    x, y = kml.datasets.concentric_circles(2000, seed=0)
    batch = (tf.constant(x), tf.constant(y))
    for kind, build in BUILDERS.items():
        keras.utils.set_random_seed(0)
        model = kml.models.residual_network((2,), outputs=2, width=3, blocks=2048)
        solver = kml.MultilevelSolver(model, loss="categorical_crossentropy", levels=levels,
                                      smoother=keras.optimizers.SGD(0.1), steps=STEPS[levels])
        step, losses = tf.function(build(solver)), []
        for cycle in range(cycles):
            step(batch)
            if cycle % 2 == 0:
                losses.append(float(keras.ops.mean(keras.losses.categorical_crossentropy(y, model(x)))))
        print(f"{kind:>6}: " + " ".join(f"{loss:.4f}" for loss in losses))


def measure(configuration, fit=False):
    """:func:`measure_here` in a fresh process (nothing traced before)."""
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, __file__, "--one", configuration, *(["--fit"] if fit else [])]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/first_step_design.md")
    parser.add_argument("--check", action="store_true", help="the probes' losses against the solver's (see above)")
    parser.add_argument("--fit", action="store_true", help="measure compile and a first fit instead (see above)")
    parser.add_argument("--configurations", nargs="+", default=CONFIGURATIONS,
                        help="a subset, e.g. plain 'solver 8' 'keras 8' (default: all but the keras probe)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.check:
        check()
        return
    if arguments.one:
        print(json.dumps((measure_fit_here if arguments.fit else measure_here)(arguments.one)))
        return
    if "plain" not in arguments.configurations:
        parser.error("--configurations must include plain: the tables give every ratio to it")
    for configuration in arguments.configurations:
        kind, _, levels = configuration.partition(" ")
        if configuration != "plain" and (kind not in BUILDERS or not levels.isdigit() or int(levels) not in STEPS
                                         or (kind != "solver" and int(levels) < 2)):
            parser.error(f"--configurations: {configuration!r} is not plain or '<{'|'.join(BUILDERS)}> "
                         f"<{'|'.join(map(str, STEPS))}>' (the probes need 2 levels or more)")
    runs = {configuration: [] for configuration in arguments.configurations}
    for repeat in range(arguments.repeats):
        for configuration in arguments.configurations:
            runs[configuration].append(measure(configuration, fit=arguments.fit))
            print(f"repeat {repeat}, {configuration}: {runs[configuration][-1]}", file=sys.stderr)
    write((fit_table if arguments.fit else split_table)(arguments, runs), arguments.out)


def _header(arguments, title, what):
    return [
        f"# A V-cycle with its coarse weights as values: {title} (design probe)",
        "",
        f"`{shlex.join(['python', *sys.argv])}` ({arguments.repeats} repeats, each run a fresh process, "
        f"configurations alternating; circles, 2,048 blocks, 2,000 points, one batch; {what}; CPU seconds). "
        "`solver L`: `MultilevelSolver` (or `MultilevelOptimizer` in `fit`) with L levels; `values L` and "
        "`loop L`: this script's probes on the same hierarchy (see its docstring).",
        "",
    ]


def split_table(arguments, runs):
    """Per configuration: graph ops, Python tracing, the first and second call, their difference."""
    columns = ["Python tracing", "first call", "second call"]
    plain = np.median([run["Python tracing"] + run["first call"] for run in runs["plain"]])
    lines = _header(arguments, "what its first step would cost",
                    "one `tf.function` of the step, as `first_fit.py --split`; the probes' tracing of their "
                    "shared functions counts as Python tracing") + [
        "| configuration | graph ops | " + " | ".join(columns)
        + " | first call - second call | tracing + first call / plain Keras |",
        "|---" * (len(columns) + 4) + "|",
    ]
    for configuration, measured in runs.items():
        total = np.median([run["Python tracing"] + run["first call"] for run in measured])
        cells = [spread([run[column] for run in measured], ".2f") for column in columns]
        preparing = spread([run["first call"] - run["second call"] for run in measured], ".2f")
        name = "plain Keras SGD" if configuration == "plain" else f"`{configuration}`"
        lines.append(f"| {name} | {measured[0]['graph ops']} | " + " | ".join(cells)
                     + f" | {preparing} | {total / plain:.2f}x |")
    return lines


def fit_table(arguments, runs):
    """Per configuration: the CPU seconds of compile and a first fit, and their ratio to plain Keras'."""
    key = "compile and first fit"
    plain = np.median([run[key] for run in runs["plain"]])
    lines = _header(arguments, "what its first fit would cost",
                    "compile and one epoch of `fit`, as `first_fit.py`; a probe runs as the network's "
                    "`train_step`, its hierarchy built inside the timed part") + [
        f"| configuration | {key} | first fit / plain Keras |",
        "|---|---|---|",
    ]
    for configuration, measured in runs.items():
        name = "plain Keras SGD" if configuration == "plain" else f"`{configuration}`"
        ratio = np.median([run[key] for run in measured]) / plain
        lines.append(f"| {name} | {spread([run[key] for run in measured], '.2f')} | {ratio:.2f}x |")
    return lines


if __name__ == "__main__":
    main()
