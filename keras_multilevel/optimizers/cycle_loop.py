"""The V-cycle as one ``tf.while_loop`` over a table of its events: traced once, whatever the number of levels.

:func:`~keras_multilevel.optimizers.cycle.v_cycle` unrolls a cycle in Python:
the traced train step holds every level's smoothing steps, restrictions,
tau-corrections and corrections, and what TensorFlow spends tracing and
preparing it grows with the levels. Here the same cycle (MG/OPT,
Gaedke-Merzhäuser et al., 2021, Algorithm 1; FAS, Ponce et al., 2022,
Algorithm 2) is compiled in Python into a table of events
(:func:`cycle_events`), one row each:

* ``SMOOTH``: a level-optimizer step on one minibatch with the gradient the
  level received (its first step) or a new one of ``H_l``;
* ``FINE_TAU``: ``grad H_l`` on one of the level's ``m`` tau minibatches, summed;
* ``DESCEND``: ``x_{l+1} = Pi x_l`` and ``R mean_j grad H_l`` (Ponce et al., 2022, eq 35),
  and with momentum transfer ``m_{l+1} = Pi m_l`` (eq 36);
* ``COARSE_TAU``: ``grad (L + beta ||.||^2)_{l+1}(Pi x)`` on one tau minibatch,
  summed; the first also serves the coarse level's first step;
* ``COUPLE``: ``delta g_{l+1} = -gamma tau``, ``tau = mean_j grad_{l+1} - R mean_j grad H_l``
  (Ponce et al., 2022, eq 3; Gaedke-Merzhäuser et al., 2021, eq 9);
* ``CORRECT``: ``x_l += alpha_p P (x_{l+1} - Pi x_l)`` (Ponce et al., 2022, eq 4)
  and ``m_l += alpha_m P (m_{l+1} - Pi m_l)`` (eq 36) when the safeguard
  (:func:`~keras_multilevel.optimizers.mgopt.within_bound`) allows it.

One loop runs the table. Each iteration evaluates at most one level gradient,
through one call of one function traced with the levels' sizes left open
(:func:`~keras_multilevel.optimizers.traces.shared_function`; one per group of
levels that share a trace, :func:`~keras_multilevel.optimizers.traces.trace_groups`),
and applies its event; every level's iterate, coupling term, restriction, received gradient,
tau sum and momentum live in ``TensorArray`` s indexed by level. The traced
step is the same for 2 levels as for 8.

A Keras optimizer cannot step tensors on TensorFlow (its ``stateless_apply``
refuses this backend), so the loop applies the rules of SGD and Adam itself
(their ``update_step``: ``m <- mu m - lr g``, ``x <- x + m``, or
``x <- x - lr g`` without momentum, Nesterov's variant too; Adam's moments
and bias correction, Kingma and Ba, 2015, Algorithm 1, as Keras writes it),
reading each level optimizer's learning rate, constants, iteration count and
moments at the start of the cycle and writing back its moments and iteration
count at the end. Where a set-up
needs more (another level optimizer, MLSGD's tests, the acceptance test, RMTR,
levels with their own transfers or with non-trainable state, several replicas, XLA),
:func:`unsupported` says why and the solver runs the unrolled cycle, which
takes the same steps.
"""

import collections

import keras
import numpy as np
import tensorflow as tf

from keras_multilevel.optimizers.cycle import CycleReport, minibatch, momentum_slots, scheme_hooks
from keras_multilevel.optimizers.mgopt import CoarseCorrection, within_bound
from keras_multilevel.hierarchy.hierarchy import prolongated_correction
from keras_multilevel.optimizers.objective import loss_gradient, per_variable
from keras_multilevel.optimizers.replicas import several_replicas
from keras_multilevel.optimizers.traces import relaxed_specs, shared_function, trace_groups

INITIAL, SMOOTH, FINE_TAU, DESCEND, COARSE_TAU, COUPLE, CORRECT = range(7)

Event = collections.namedtuple("Event", ["kind", "level", "batch", "received", "first", "step"])
Event.__doc__ = """One row of a compiled V-cycle: its ``kind`` (``INITIAL`` ... ``CORRECT``), the ``level`` it
works on (for ``DESCEND``, ``COARSE_TAU``, ``COUPLE`` and ``CORRECT``: the finer of the two), the
minibatch ``batch`` of its gradient (``-1``: none), whether a step or tau term takes the gradient the level
``received`` instead of a new one, whether it is the ``first`` term of a tau sum, and for a ``SMOOTH`` step
how many steps the level took before it in the cycle (Adam's bias correction counts them)."""

_KERAS_OPTIONS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema",
                "gradient_accumulation_steps", "loss_scale_factor")


def cycle_events(steps, layout):
    """The V-cycle of :func:`~keras_multilevel.optimizers.cycle.v_cycle` for the hooks of
    :class:`~keras_multilevel.optimizers.mgopt.CoarseCorrection`, as a list of :class:`Event`, in order.

    Args:
        steps: the :class:`~keras_multilevel.optimizers.steps.CycleSteps`.
        layout: the :class:`~keras_multilevel.optimizers.scheme.MinibatchLayout`.
    """
    last = steps.levels - 1
    events = [Event(INITIAL, 0, layout.smoothing[0][0], False, False, 0)]

    def smooth(index, first_step, count, received):
        """Steps ``first_step, ...``; with ``received``, step 0 takes the gradient the level received."""
        own = layout.smoothing[index]
        for step in range(first_step, first_step + count):
            events.append(Event(SMOOTH, index, own[step % len(own)], received and step == 0, False, step))

    def cycle(index):
        if index == last:
            smooth(index, 0, steps.coarsest, received=True)
            return
        smooth(index, 0, steps.pre[index], received=True)
        reuse = steps.pre[index] == 0 and layout.shared(index)
        for j, batch in enumerate(layout.tau[index]):
            events.append(Event(FINE_TAU, index, batch, reuse and j == 0, j == 0, 0))
        events.append(Event(DESCEND, index, -1, False, False, 0))
        for j, batch in enumerate(layout.tau[index]):
            events.append(Event(COARSE_TAU, index, batch, False, j == 0, 0))
        events.append(Event(COUPLE, index, -1, False, False, 0))
        cycle(index + 1)
        events.append(Event(CORRECT, index, -1, False, False, 0))
        smooth(index, steps.pre[index], steps.post[index], received=False)

    cycle(0)
    return events


def event_work(events, relative_costs):
    """The work units of a cycle's events (Gaedke-Merzhäuser et al., 2021, eq 10): a gradient per step or tau
    term that does not take a received one, the first one on the finest level included."""
    work = 0.0
    for event in events:
        if event.kind in (INITIAL, SMOOTH, FINE_TAU) and not event.received:
            work += relative_costs[event.level]
        elif event.kind == COARSE_TAU:
            work += relative_costs[event.level + 1]
    return work


def _own_rule(optimizer):
    """Why ``optimizer`` is not one whose steps the loop takes itself (a phrase), or ``None``."""
    if type(optimizer) not in (keras.optimizers.SGD, keras.optimizers.Adam):
        return f"is {type(optimizer).__name__}, not keras.optimizers.SGD or Adam"
    if getattr(optimizer, "amsgrad", False):
        return "uses AMSGrad"
    if isinstance(optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return "has a learning-rate schedule"
    options = [name for name in _KERAS_OPTIONS if getattr(optimizer, name, None)]
    if options:
        return f"sets {', '.join(options)}"
    return None


def _rule(optimizer):
    """The update rule the loop applies for ``optimizer``: ``"adam"``, ``"sgd"``, ``"momentum"`` or ``"nesterov"``."""
    if isinstance(optimizer, keras.optimizers.Adam):
        return "adam"
    if not optimizer.momentum:
        return "sgd"
    return "nesterov" if optimizer.nesterov else "momentum"


def unsupported(hierarchy, scheme, jit_compile=False):
    """Why the loop cannot run this set-up's cycle here (a sentence), or ``None`` if it can.

    Args:
        hierarchy: the built :class:`~keras_multilevel.hierarchy.Hierarchy`, its levels' smoothers set.
        scheme: the :class:`~keras_multilevel.optimizers.scheme.CycleScheme`.
        jit_compile: whether the model's train step is compiled with XLA.
    """
    if len(hierarchy) > 1 and not tf.inside_function():
        return "The step runs eagerly."
    if several_replicas():
        return "The step runs on several replicas."
    return unsupported_set_up(hierarchy, scheme, jit_compile)


def unsupported_set_up(hierarchy, scheme, jit_compile=False):
    """The part of :func:`unsupported` that depends on the set-up alone, not on where the step runs."""
    if len(hierarchy) == 1:
        return "One level: its cycle is its smoothing steps."
    if jit_compile:
        return "The model is compiled with jit_compile=True (XLA needs every level's shapes fixed)."
    if scheme.trust_region:
        return "RMTR runs its own cycle of trust-region steps."
    if (scheme_hooks(scheme) is not CoarseCorrection or scheme.correction_test or scheme.tau_scale == 0
            or scheme.full_gradient):
        return (f"Scheme {scheme.name!r} with these constants needs the unrolled cycle's hooks (MLSGD's tests, "
                "the acceptance test, a full-gradient correction, or no tau-correction).")
    for index, level in enumerate(hierarchy):
        reason = _own_rule(level.smoother)
        if reason:
            return f"Level {index}'s optimizer {reason}."
    if len({_rule(level.smoother) for level in hierarchy}) > 1:
        return "The levels' optimizers differ in kind (SGD or Adam, with or without momentum, Nesterov's or not)."
    if any(level.model.non_trainable_variables for level in hierarchy):
        return "A level has non-trainable state (batch normalization's statistics, say), which the loop would not update."
    if hierarchy.coarsening.shared_transfer(hierarchy) is None:
        return "The levels' transfers differ (a coarsening without one shared transfer)."
    return None


def _slots(level, rule):
    """The level optimizer's variables that the loop's rule reads and writes back, by state name."""
    optimizer, variables = level.smoother, level.variables
    if rule == "sgd":
        return {}
    slots = {"m": momentum_slots(optimizer, variables)}
    if rule == "adam":
        slots["v"] = [optimizer._velocities[optimizer._get_variable_index(variable)] for variable in variables]
    return slots


def _loss_gradient(model, values, data):
    """``(loss, y_pred, grad L)`` of ``model`` at ``values`` on one minibatch: the loop's one evaluation."""
    return loss_gradient(model, data, None, values)


def _per_level(rows, dtypes):
    """A table ``[level][variable]`` of Python numbers as one constant per variable, indexed by level."""
    return [tf.constant(np.array(column, dtype=np.float64), dtype=dtype) for column, dtype in zip(zip(*rows), dtypes)]


def loop_cycle(hierarchy, steps, scheme, data, layout):
    """Runs one V-cycle of :func:`~keras_multilevel.optimizers.cycle.v_cycle` (for
    :class:`~keras_multilevel.optimizers.mgopt.CoarseCorrection`'s hooks) as one while loop over
    :func:`cycle_events`; updates every level's weights, and its optimizer's momentum and iteration count.

    Args:
        hierarchy: the :class:`~keras_multilevel.hierarchy.Hierarchy`, for which :func:`unsupported`
            gives ``None``.
        steps: the :class:`~keras_multilevel.optimizers.steps.CycleSteps`.
        scheme: the :class:`~keras_multilevel.optimizers.scheme.CycleScheme`.
        data: the batch ``(x, y, sample_weight)``, split into ``layout.count`` minibatches
            (:func:`~keras_multilevel.optimizers.cycle.minibatch`).
        layout: the :class:`~keras_multilevel.optimizers.scheme.MinibatchLayout`.

    Returns:
        A :class:`~keras_multilevel.optimizers.cycle.CycleReport` (no early stops: these schemes take every
        step).
    """
    events = cycle_events(steps, layout)
    levels, finest = len(hierarchy), hierarchy[0]
    models = [level.model for level in hierarchy]
    specs = relaxed_specs(models)
    dtypes = [spec.dtype for spec in specs]
    groups = trace_groups(hierarchy)
    group_of = tf.constant([next(g for g, group in enumerate(groups) if index in group) for index in range(levels)])
    # Every group's function is traced with every level's sizes left open: a branch that fixed them
    # (ensure_shape) let grappler's constant folding mix up the levels' iterates (TensorFlow 2.21).
    group_functions = [shared_function([models[index] for index in group], _loss_gradient, specs) for group in groups]
    transfer = hierarchy.coarsening.shared_transfer(hierarchy)
    rule = _rule(finest.smoother)
    momentum = rule != "sgd"  # the optimizer keeps a first moment: SGD's momentum or Adam's m
    transfers_momentum = momentum and scheme.momentum_transfer
    inverse_weights = _per_level([[1.0 / w for w in level.inner_product] for level in hierarchy], dtypes)
    betas = [per_variable(level.regularization, level.variables) for level in hierarchy]
    regularized = any(beta for row in betas for beta in row)
    betas = _per_level(betas, dtypes)
    tau_shares = tf.constant([1.0 / len(batches) for batches in layout.tau], dtype=tf.float64)
    rates = tf.stack([tf.cast(level.smoother.learning_rate, tf.float64) for level in hierarchy])
    # The optimizers' constants, one per level, rounded to a variable's dtype where used as Keras rounds them.
    if rule == "adam":
        betas_1, betas_2, epsilons = ([getattr(level.smoother, name) for level in hierarchy]
                                      for name in ("beta_1", "beta_2", "epsilon"))
        constants = {"beta_1": betas_1, "beta_2": betas_2, "1 - beta_1": [1 - b for b in betas_1],
                     "1 - beta_2": [1 - b for b in betas_2], "epsilon": epsilons}
        iterations = tf.stack([tf.convert_to_tensor(level.smoother.iterations.value) for level in hierarchy])
    else:
        constants = {"momentum": [level.smoother.momentum for level in hierarchy]}
    constants = {name: tf.constant(numbers, tf.float64) for name, numbers in constants.items()}
    table = tf.constant(np.array(events, dtype=np.int32).reshape(-1, len(Event._fields)))
    gamma, alpha_p, alpha_m = scheme.tau_scale, scheme.correction_scale, scheme.momentum_scale
    parts = layout.count

    def arrays():
        return [tf.TensorArray(dtype, size=levels, infer_shape=False, element_shape=tf.TensorShape(None))
                for dtype in dtypes]

    def read(state, level):
        return [tf.ensure_shape(array.read(level), spec.shape) for array, spec in zip(state, specs)]

    def write(state, level, values):
        return [array.write(level, value) for array, value in zip(state, values)]

    start_values = [tf.convert_to_tensor(variable.value) for variable in finest.variables]
    names = ["x", "shift", "start", "received", "tau", "restricted"]
    names += (["m", "m_start"] if momentum else []) + (["v"] if rule == "adam" else [])
    state = {name: arrays() for name in names}
    state["x"] = write(state["x"], 0, start_values)
    state["shift"] = write(state["shift"], 0, [tf.zeros_like(value) for value in start_values])
    for index, level in enumerate(hierarchy):
        for name, slots in _slots(level, rule).items():
            state[name] = write(state[name], index, [tf.convert_to_tensor(slot.value) for slot in slots])
    # The INITIAL event's loss and prediction (what a train step reports) travel as loop state too: the
    # prediction in a TensorArray per output, whose first size is the minibatch's.
    loss_spec, y_pred_spec, _ = group_functions[0].concrete(minibatch(data, parts, events[0].batch)).structured_outputs
    y_pred_leaves = tf.nest.flatten(y_pred_spec)
    state["y_pred"] = [tf.TensorArray(leaf.dtype, size=1, infer_shape=False, element_shape=tf.TensorShape(None))
                       for leaf in y_pred_leaves]
    width = len(specs)

    def unpack(flat):
        unpacked = {name: list(flat[i * width:(i + 1) * width]) for i, name in enumerate(names)}
        unpacked["y_pred"] = list(flat[len(names) * width:])
        return unpacked

    def pack(arrays_by_name):
        return [array for name in [*names, "y_pred"] for array in arrays_by_name[name]]

    def body(event, discarded, loss, *flat):
        state = unpack(flat)
        kind, index, batch, received, first_term, step = tf.unstack(table[event])
        at = tf.where(tf.logical_or(tf.equal(kind, COARSE_TAU), tf.equal(kind, CORRECT)), index + 1, index)
        point = read(state["x"], at)
        evaluates = tf.logical_and(tf.equal(received, 0),
                                   tf.reduce_any(tf.equal(kind, [INITIAL, SMOOTH, FINE_TAU, COARSE_TAU])))

        def evaluate():
            minibatch_ = minibatch(data, parts, batch)
            if len(groups) == 1:
                value, prediction, gradients = group_functions[0](point, minibatch_)
            else:  # one call site for each group of levels that share a traced function
                value, prediction, gradients = tf.switch_case(tf.gather(group_of, at), [
                    lambda function=function: function(point, minibatch_) for function in group_functions])
            if regularized:
                gradients = [g + 2.0 * tf.gather(beta, at) * x for g, beta, x in zip(gradients, betas, point)]
            return value, tf.nest.flatten(prediction), gradients

        def nothing():
            empty = [tf.zeros([0, *leaf.shape[1:]], leaf.dtype) for leaf in y_pred_leaves]
            return tf.zeros((), loss_spec.dtype), empty, [tf.zeros_like(x) for x in point]

        new_loss, new_prediction, new = tf.cond(evaluates, evaluate, nothing)

        def direction():
            """``grad H_l``: the received gradient, or the new one plus the coupling term."""
            coupled = [g + s for g, s in zip(new, read(state["shift"], index))]
            return [tf.where(tf.equal(received, 1), r, c) for r, c in zip(read(state["received"], index), coupled)]

        def updated(discarded=discarded, loss=loss, **changes):
            """The loop's state after an event: ``changes`` by name, the rest as it was."""
            return (discarded, loss, *pack({**state, **changes}))

        def initial():
            """The finest level's loss, prediction and gradient on its first minibatch, at the cycle's start."""
            predictions = [array.write(0, value) for array, value in zip(state["y_pred"], new_prediction)]
            return updated(loss=new_loss, received=write(state["received"], 0, new), y_pred=predictions)

        def smooth():
            """A step of the level's optimizer, the rule of its Keras ``update_step`` applied to values."""
            gradients = [g * tf.gather(w, index) for g, w in zip(direction(), inverse_weights)]

            def level_number(name, dtype):
                """This level's optimizer constant ``name`` in ``dtype``."""
                return tf.cast(tf.gather(constants[name], index), dtype)

            rate = tf.gather(rates, index)
            if rule == "adam":  # keras.optimizers.Adam.update_step
                moments, velocities, moved = [], [], []
                for x, g, m, v in zip(point, gradients, read(state["m"], index), read(state["v"], index)):
                    dtype = x.dtype
                    local_step = tf.cast(tf.gather(iterations, index) + tf.cast(step, tf.int64) + 1, dtype)
                    beta_1_power = tf.pow(level_number("beta_1", dtype), local_step)
                    beta_2_power = tf.pow(level_number("beta_2", dtype), local_step)
                    alpha = tf.cast(rate, dtype) * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
                    m = m + (g - m) * level_number("1 - beta_1", dtype)
                    v = v + (tf.square(g) - v) * level_number("1 - beta_2", dtype)
                    moments.append(m)
                    velocities.append(v)
                    moved.append(x - (m * alpha) / (tf.sqrt(v) + level_number("epsilon", dtype)))
                return updated(x=write(state["x"], index, moved), m=write(state["m"], index, moments),
                               v=write(state["v"], index, velocities))
            steps_ = [g * tf.cast(rate, g.dtype) for g in gradients]  # keras.optimizers.SGD.update_step
            if rule == "sgd":
                return updated(x=write(state["x"], index, [x - s for x, s in zip(point, steps_)]))
            velocity = [m * level_number("momentum", m.dtype) - s for m, s in zip(read(state["m"], index), steps_)]
            if rule == "nesterov":
                moved = [x + (v * level_number("momentum", v.dtype) - s) for x, v, s in zip(point, velocity, steps_)]
            else:
                moved = [x + v for x, v in zip(point, velocity)]
            return updated(x=write(state["x"], index, moved), m=write(state["m"], index, velocity))

        def summed(level, term):
            """The tau sum of ``level`` with ``term`` added (the sum so far is read only after its first term)."""
            return tf.cond(tf.equal(first_term, 1), lambda: term,
                           lambda: [s + t for s, t in zip(read(state["tau"], level), term)])

        def fine_tau():
            return updated(tau=write(state["tau"], index, summed(index, direction())))

        def descend():
            share = tf.gather(tau_shares, index)
            mean = [t * tf.cast(share, t.dtype) for t in read(state["tau"], index)]
            coarse = transfer.restrict(point)
            changes = dict(x=write(state["x"], index + 1, coarse), start=write(state["start"], index + 1, coarse),
                           restricted=write(state["restricted"], index + 1, transfer.restrict_gradient(mean)))
            if transfers_momentum:
                restricted_momentum = transfer.restrict(read(state["m"], index))
                changes["m"] = write(state["m"], index + 1, restricted_momentum)
                changes["m_start"] = write(state["m_start"], index + 1, restricted_momentum)
            return updated(**changes)

        def coarse_tau():
            coarse = index + 1
            kept = tf.cond(tf.equal(first_term, 1), lambda: new, lambda: read(state["received"], coarse))
            return updated(tau=write(state["tau"], coarse, summed(coarse, new)),
                           received=write(state["received"], coarse, kept))

        def couple():
            coarse = index + 1
            share = tf.gather(tau_shares, index)
            tau = [t * tf.cast(share, t.dtype) - r
                   for t, r in zip(read(state["tau"], coarse), read(state["restricted"], coarse))]
            shift = [-t for t in tau] if gamma == 1.0 else [-gamma * t for t in tau]
            anchor = [g + s for g, s in zip(read(state["received"], coarse), shift)]
            return updated(shift=write(state["shift"], coarse, shift), received=write(state["received"], coarse, anchor))

        def correct():
            coarse, fine = index + 1, read(state["x"], index)
            correction = prolongated_correction(transfer, point, read(state["start"], coarse), alpha_p)
            allowed = within_bound(correction, fine, scheme.correction_bound)

            def corrected(name, values, change):  # add_if of the unrolled cycle, on values
                return write(state[name], index, [v + tf.where(allowed, c, tf.zeros_like(c)) for v, c in zip(values, change)])

            changes = dict(x=corrected("x", fine, correction),
                           discarded=discarded + tf.cast(tf.logical_not(allowed), tf.float64))
            if transfers_momentum:
                change = prolongated_correction(transfer, read(state["m"], coarse), read(state["m_start"], coarse), alpha_m)
                changes["m"] = corrected("m", read(state["m"], index), change)
            return updated(**changes)

        outputs = tf.switch_case(kind, [initial, smooth, fine_tau, descend, coarse_tau, couple, correct])
        return (event + 1, *outputs)

    _, discarded, loss, *flat = tf.while_loop(
        lambda event, *rest: event < len(events), body,
        (tf.constant(0), tf.constant(0.0, tf.float64), tf.zeros((), loss_spec.dtype), *pack(state)),
    )
    final = unpack(flat)
    y_pred = tf.nest.pack_sequence_as(
        y_pred_spec, [tf.ensure_shape(array.read(0), leaf.shape) for array, leaf in zip(final["y_pred"], y_pred_leaves)])
    for index, level in enumerate(hierarchy):
        for variable, value in zip(level.variables, read(final["x"], index)):
            variable.assign(value)
        for name, slots in _slots(level, rule).items():
            for slot, value in zip(slots, read(final[name], index)):
                slot.assign(value)
        taken = sum(1 for event in events if event.kind == SMOOTH and event.level == index)
        level.smoother.iterations.assign_add(taken)
    work = event_work(events, [level.relative_cost for level in hierarchy])
    zero = tf.constant(0.0, tf.float64)
    return CycleReport(loss, y_pred, tf.constant(work, tf.float64), zero, zero, discarded)
