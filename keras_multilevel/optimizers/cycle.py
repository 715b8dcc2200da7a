"""The V-cycle: MG/OPT (Gaedke-Merzhäuser et al., 2021, Algorithm 1), FAS (Ponce et al., 2022, Algorithm 2, §6), MLSGD (Jacob, 2024, Algorithm 4) and RMTR (Kopaničáková and Krause, 2023).

One routine walks the hierarchy's list of levels (finest first) and works for
any coarsening, since it only touches a level's model and the
:class:`~keras_multilevel.hierarchy.Transfer` to the next coarser one; the
:class:`~keras_multilevel.optimizers.scheme.CycleScheme` says how a coarse
level is coupled to its parent. It is plain TensorFlow: called inside
``Model.train_step`` it becomes part of one ``tf.function`` (and one XLA
cluster with ``jit_compile=True``); the Python recursion runs once, at trace
time.

On level ``i`` above the coarsest a cycle

1. takes ``mu_1`` level-optimizer steps on the level's objective ``g_i``
   (for ``i > 0`` tau-corrected, ``g_i - gamma x^T tau_i``),
2. restricts the weights ``x_c = Pi x`` (and, with momentum transfer, the
   momentum ``m_c = Pi m``, Ponce et al., 2022, eq 36),
3. forms ``tau = mean_j (grad g_c,j(Pi x) - R grad g_i,j(x))`` over the ``m``
   minibatches ``j`` (Ponce et al., 2022, eq 35; Gaedke-Merzhäuser et al.'s (2021, eq 9) coupling term is ``-tau``),
4. recurses on the coarse level, which smooths on the same minibatches
   (Ponce et al., 2022, §6.1.1; which minibatch each step takes is the scheme's
   :func:`~keras_multilevel.optimizers.scheme.minibatch_layout`),
5. corrects ``x += alpha_p P (x_c - Pi x)`` (Ponce et al., 2022, eq 4) and
   ``m += alpha_m P (m_c - Pi m)`` (eq 36), unless the safeguard below
   discards the correction,
6. takes ``mu_2`` steps.

The safeguard: a prolongated correction with a NaN or Inf anywhere (a coarse
level that diverged), or, with ``scheme.correction_bound`` ``c``, one longer
than ``c max(||x||, 1)`` (:func:`within_bound`: a coarse level that diverged
to large finite values), is discarded, so it never reaches the finer weights;
the cycle counts the corrections it discarded.
With ``correction_test`` the corrected iterate must also pass the
acceptance test of MG/OPT's line search (Nash 2000) and of trust-region
cycles (Jacob, 2024, §3.2.3, RMTR) with the weakest threshold: the level's objective
on its first tau minibatch may not increase, ``H(x + P e) <= H(x)``;
otherwise the correction is discarded and the cycle goes on from ``x``.

MLSGD (Jacob, 2024, Algorithms 4-5, :mod:`~keras_multilevel.optimizers.mlsgd`) adds,
by the scheme's constants: before step 2, the recursion test (Jacob, 2024, eqs
3.4-3.5) on the level's gradient, a ``tf.cond`` that skips steps 2-5; on a
coarse level, the step-size regularization ``lambda/2 ||x_c - Pi x||^2`` in
its objective (eq 3.2), SVRG directions (§3.3.3), and after each of its steps
the angle condition (eq 3.3), whose first failure undoes the step and skips
the rest of that level's phase (Algorithm 5). With a full-gradient
correction tau is formed on the held data set (§3.3.2).

RMTR (``scheme="rmtr"``) is a scheme of its own module,
:mod:`~keras_multilevel.optimizers.trust_region`, whose
:meth:`~keras_multilevel.optimizers.trust_region.RecursiveTrustRegion.cycle`
walks the same levels with the trust region's hooks: each level step is an
L-SR1 trust-region step, each level carries ``(H, grad H)`` at its iterate on
the cycle's one minibatch from step to step, step 3 forms tau from that
gradient (``gamma = 1``), and step 5 is the recursive step
``x + P (x_c - Pi x)`` accepted by the ratio of the fine objective's decrease
to the coarse model's; before step 4 it applies RMTR's recursion condition
and bounds the coarse iterates by the fine radius left. Its cycle always
evaluates every step (the trust region, not a ``tf.cond``, decides what a
step moves), so it spends
:func:`~keras_multilevel.optimizers.steps.work_units` ``(trust_region=True)``.

Gradient evaluations are exactly those counted by
:func:`~keras_multilevel.optimizers.steps.work_units` for a cycle that
descends to the coarsest level and takes every step (a coarse level's first
step reuses its gradient at ``Pi x`` on the first tau minibatch, computed for
tau); the cycle returns the work it actually spent.
"""

import collections
import functools

import tensorflow as tf

from keras_multilevel.hierarchy.hierarchy import prolongated_correction, restrict_level
from keras_multilevel.optimizers.inner_product import riesz
from keras_multilevel.optimizers.loss_scale import apply_step, loss_scale
from keras_multilevel.optimizers.mlsgd import (
    angle_holds, descends, level_norm, step_regularization_gradient, step_regularization_value, variance_reduced,
)
from keras_multilevel.optimizers.objective import (
    add_coupling, level_gradient, level_objective, loss_gradient, loss_value, tau_correction, tikhonov,
)
from keras_multilevel.optimizers.replicas import sum_over_replicas
from keras_multilevel.optimizers.steps import FORWARD_COST, work_units
from keras_multilevel.optimizers.traces import level_functions


def split_batch(data, parts):
    """Splits a batch ``(x, y, sample_weight)`` into ``parts`` minibatches (rows ``j::parts``).

    The minibatches of one cycle (Ponce et al., 2022, §6.1.1) drawn from one Keras batch;
    sizes differ by at most one when ``parts`` does not divide the batch. A
    batch with fewer rows than ``parts`` (the short last batch of an epoch)
    gives one-row minibatches that go round its rows: minibatch ``j`` is row
    ``j mod size``.
    """
    if parts == 1:
        return [data]
    size = tf.shape(tf.nest.flatten(data[0])[0])[0]

    def rows(j):
        count = tf.maximum(1, (size - j + parts - 1) // parts)
        return (j + parts * tf.range(count)) % size

    return [
        tf.nest.map_structure(lambda tensor, j=j: None if tensor is None else tf.gather(tensor, rows(j)), data)
        for j in range(parts)
    ]


def momentum_slots(optimizer, variables):
    """The optimizer's momentum variable of each of ``variables``, or ``None`` if it keeps none.

    SGD with ``momentum > 0`` keeps ``momentums``; Adam and its relatives keep
    their first moments in ``_momentums``; a loss-scaling wrapper keeps
    them in its inner optimizer.
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)
    slots = getattr(optimizer, "momentums", None) or getattr(optimizer, "_momentums", None)
    if not slots:
        return None
    return [slots[optimizer._get_variable_index(variable)] for variable in variables]


def level_data(hierarchy, minibatches):
    """The minibatches as each level sees them, finest first: each transfer's ``restrict_data``
    of the level above (the same batches for depth and width, averaged images for resolution)."""
    data = [list(minibatches)]
    for level in hierarchy[:-1]:
        data.append([level.transfer.restrict_data(batch) for batch in data[-1]])
    return data


def _mean(gradient_lists):
    count = len(gradient_lists)
    if count == 1:
        return gradient_lists[0]
    return [tf.add_n(list(parts)) / count for parts in zip(*gradient_lists)]


def _gradient(model, values, data, scale):
    """``grad L`` alone (:func:`~keras_multilevel.optimizers.objective.loss_gradient`): what most evaluations need."""
    return loss_gradient(model, data, scale, values)[2]


def _loss(model, values, data):
    """The loss alone: what the acceptance test compares."""
    return loss_value(model, data, values)


def _read(scale):
    """A level optimizer's loss scale as a tensor (``None``: not scaled)."""
    return None if scale is None else tf.convert_to_tensor(scale)


CycleReport = collections.namedtuple(
    "CycleReport", ["loss", "y_pred", "work_units", "recursion_stops", "angle_stops", "discarded_corrections"]
)
CycleReport.__doc__ = """What :func:`v_cycle` returns: the finest model's ``loss`` and ``y_pred`` on its first
minibatch at the start of the cycle (as a plain Keras train step reports them), the
``work_units`` the cycle spent (fine gradient evaluations, Gaedke-Merzhäuser et al., 2021, eq 10), how many
descents the recursion test stopped and how many coarse phases the angle condition
ended (Jacob, 2024, eqs 3.3-3.5), and how many prolongated corrections the safeguard
discarded (float64 scalars; RMTR's ratio test, which shortens or rejects its
recursive steps by design, counts none)."""

# How a coarse level is coupled to the level above for one cycle: the coupling
# term ``shift`` (``-gamma tau``, or None), its start point ``start`` (Pi x),
# ``anchor``, its objective's gradient there (served as its first step, the
# SVRG anchor), and ``parent``, ``(gradient, weights, transfer)`` of the level
# above for the angle condition (None without one).
_Coupling = collections.namedtuple("_Coupling", ["shift", "start", "anchor", "parent"])


def within_bound(correction, variables, bound):
    """Whether a prolongated correction ``P e`` may be added to the weights ``x`` of the level it corrects.

    It must be finite and, with a ``bound``, no longer than ``bound`` times
    the weights: ``||P e|| <= bound max(||x||, 1)`` (Euclidean norms over all
    of the level's weights; the ``1`` lets weights that start at zero be
    corrected). A coarse level that diverged to large finite values then
    cannot move the finer weights by more than that in one cycle: the
    safeguard that complements the acceptance test (``correction_test``)
    at no gradient evaluation.
    """
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(value)) for value in correction])
    if bound is None:
        return finite
    euclidean = [1.0] * len(variables)
    size, weights = level_norm(correction, euclidean), level_norm(variables, euclidean)
    return tf.logical_and(finite, size <= bound * tf.maximum(weights, 1.0))


def _f64(value):
    return tf.cast(value, tf.float64)


def _batch_costs(minibatches, full_batch):
    """Work of one gradient on each minibatch, and on the held full batch after them: its rows per minibatch row."""
    costs = [1.0] * len(minibatches)
    if full_batch is not None:
        rows = [tf.shape(tf.nest.flatten(batch[0])[0])[0] for batch in (full_batch, minibatches[0])]
        costs.append(_f64(rows[0]) / _f64(rows[1]))
    return costs


def v_cycle(
    hierarchy, steps, scheme, minibatches, layout, full_batch=None, trust_region=None,
):
    """Runs one V-cycle and updates the finest level's weights.

    Args:
        hierarchy: a :class:`~keras_multilevel.hierarchy.Hierarchy` whose
            levels carry their ``smoother`` (a built Keras optimizer, the level
            optimizer of Gaedke-Merzhäuser et al., 2021, Algorithm 2, SGD in Ponce et al., 2022, §6), ``inner_product``
            (coupling terms are Euclidean, each step uses the level's gradient
            in it) and ``regularization`` (the Tikhonov weights of its
            variables, see :func:`~keras_multilevel.optimizers.objective.level_gradient`).
        steps: a :class:`~keras_multilevel.optimizers.steps.CycleSteps`.
        scheme: a :class:`~keras_multilevel.optimizers.scheme.CycleScheme`.
        minibatches: ``layout.count`` minibatches ``(x, y, sample_weight)``
            (see :func:`split_batch`).
        layout: the :class:`~keras_multilevel.optimizers.scheme.MinibatchLayout`
            saying which minibatches each level smooths on and forms tau on.
        full_batch: the held data set ``(x, y, sample_weight)`` of a
            full-gradient correction (``scheme.full_gradient``, Jacob, 2024, §3.3.2),
            minibatch index ``layout.count``; a gradient on it costs its rows
            per row of the first minibatch in work units.
        trust_region: ``None``, or the
            :class:`~keras_multilevel.optimizers.trust_region.RecursiveTrustRegion`
            whose cycle runs instead (RMTR, Kopaničáková and Krause, 2023: trust-region level steps and
            ratio-tested corrections).

    Returns:
        A :class:`CycleReport`. With MLSGD's recursion test or angle condition
        (Jacob, 2024, eqs 3.3-3.5) the cycle decides inside the graph (``tf.cond``)
        whether to descend and whether a coarse level takes its next step; a
        skipped descent or step spends no work.
    """
    if scheme.full_gradient and full_batch is None:
        raise ValueError(
            "The deterministic gradient correction forms tau with the full gradient over a held data set: "
            "give it with `MultilevelOptimizer.use_full_batch(x, y)` before training."
        )
    last = len(hierarchy) - 1
    start = functools.partial(
        level_gradient, hierarchy[0].model, regularization=hierarchy[0].regularization,
        loss_scale=loss_scale(hierarchy[0].smoother)
    )
    # Each level's loss and gradient, traced once per group of alike levels
    # (:mod:`~keras_multilevel.optimizers.traces`); the sum over replicas and
    # the Tikhonov, coupling and step-regularization terms are added outside.
    batches = list(minibatches) if full_batch is None else [*minibatches, full_batch]
    data = level_data(hierarchy, batches)
    if trust_region is not None:
        loss, y_pred = trust_region.cycle(steps, layout, data)
        work = work_units(steps, [level.relative_cost for level in hierarchy], trust_region=True)
        return CycleReport(loss, y_pred, *map(_f64, (work, 0.0, 0.0, 0.0)))
    variables = [level.variables for level in hierarchy]
    gradients = level_functions(hierarchy, _gradient)
    evaluate = [
        functools.partial(
            lambda data, index: tikhonov(
                sum_over_replicas(gradients[index](data, _read(loss_scale(hierarchy[index].smoother)))),
                variables[index], hierarchy[index].regularization),
            index=index,
        )
        for index in range(len(hierarchy))
    ]
    losses = level_functions(hierarchy, _loss)
    batch_costs = _batch_costs(minibatches, full_batch)
    strength = scheme.step_regularization

    def cost(index, batch, per_evaluation=1.0):
        return hierarchy[index].relative_cost * per_evaluation * batch_costs[batch]

    def objective_gradient(index, batch, coupling):
        """``grad H_l`` on one minibatch: loss, Tikhonov, coupling and (on a coarse level) Jacob's (2024, eq 3.2) term."""
        grads = evaluate[index](data[index][batch])
        if coupling is None:
            return grads
        grads = add_coupling(grads, coupling.shift)
        if strength:
            grads = add_coupling(grads, step_regularization_gradient(
                hierarchy[index].variables, coupling.start, hierarchy[index].inner_product, strength))
        return grads

    def direction(index, batch, coupling):
        """The step direction on one minibatch and its work: ``grad H_l``, or its SVRG version (Jacob, 2024, §3.3.3)."""
        grads = objective_gradient(index, batch, coupling)
        if coupling is None or not scheme.variance_reduction:
            return grads, cost(index, batch)
        variables = hierarchy[index].variables
        current = [tf.identity(variable) for variable in variables]
        assign(variables, coupling.start)
        snapshot = add_coupling(evaluate[index](data[index][batch]), coupling.shift)
        with tf.control_dependencies(snapshot):
            assign(variables, current)
        return variance_reduced(grads, snapshot, coupling.anchor), cost(index, batch, 2.0)

    def guarded(coupling):
        return coupling is not None and coupling.parent is not None

    def angle_ok(index, coupling):
        gradient, weights, transfer = coupling.parent
        step = transfer.prolong([v - s for v, s in zip(hierarchy[index].variables, coupling.start)])
        return angle_holds(gradient, step, weights, scheme.angle_threshold)

    def smooth(index, first_step, count_steps, received, coupling, stopped):
        """Steps ``first_step, ...`` of the level; step 0 uses the received gradient, if given.

        Returns the work spent and whether the level's phase has stopped: on a
        level with the angle condition, a step that fails it is undone and
        ends the phase (Jacob, 2024, Algorithm 5).
        """
        variables = hierarchy[index].variables
        own = layout.smoothing[index]
        work = 0.0
        for step in range(first_step, first_step + count_steps):

            def take(step=step):
                if step == 0 and received is not None:
                    # Received from outside a tf.cond branch: Keras' all-reduce
                    # needs every gradient it gets to be made in the branch.
                    grads, spent = [tf.identity(g) for g in received], 0.0
                else:
                    grads, spent = direction(index, own[step % len(own)], coupling)
                apply_step(hierarchy[index].smoother, riesz(grads, hierarchy[index].inner_product), variables)
                return spent

            if not guarded(coupling):
                work = work + take()
                continue

            def checked(take=take):
                before = [tf.identity(variable) for variable in variables]
                spent = take()
                ok = angle_ok(index, coupling)
                assign(variables, [tf.where(ok, variable, begin) for variable, begin in zip(variables, before)])
                return _f64(spent), tf.logical_not(ok)

            spent, stopped = tf.cond(stopped, lambda: (_f64(0.0), tf.constant(True)), checked)
            work = work + spent
        return work, stopped

    def assign(variables, values):
        for variable, value in zip(variables, values):
            variable.assign(value)

    def add_if(condition, variables, values):
        for variable, value in zip(variables, values):
            variable.assign_add(tf.where(condition, value, tf.zeros_like(value)))

    def level_value(index, batch, coupling):
        shift = None if coupling is None else coupling.shift
        value = level_objective(losses[index](data[index][batch]), variables[index], shift,
                                hierarchy[index].regularization)
        if coupling is None or not strength:
            return value
        regularized = step_regularization_value(hierarchy[index].variables, coupling.start,
                                                hierarchy[index].inner_product, strength)
        return value + tf.cast(regularized, value.dtype)

    def accepted(index, correction, coupling):
        """Applies the correction to level ``index`` if it passes the safeguard; returns whether it did and the work."""
        variables = hierarchy[index].variables
        allowed = within_bound(correction, variables, scheme.correction_bound)
        if not scheme.correction_test:
            add_if(allowed, variables, correction)
            return allowed, 0.0
        batch = layout.tau[index][0]
        before = level_value(index, batch, coupling)
        start = [tf.identity(variable) for variable in variables]
        assign(variables, [begin + value for begin, value in zip(start, correction)])
        after = level_value(index, batch, coupling)
        accept = tf.logical_and(allowed, after <= before)
        assign(variables, [tf.where(accept, variable, begin) for variable, begin in zip(variables, start)])
        return accept, cost(index, batch, 2 * FORWARD_COST)

    def descent(index, received, coupling):
        """From level ``index``'s current iterate: the recursion test, then restriction, the coarse cycle and
        the correction. Returns the work, the recursion stops, the angle stops and the discarded corrections."""
        level, coarse = hierarchy[index], hierarchy[index + 1]
        transfer = level.transfer
        tau_batches = layout.tau[index]
        work = 0.0
        fine_gradients = restricted = None
        if scheme.tau_scale > 0 or scheme.counts_stops:
            reuse = steps.pre[index] == 0 and layout.shared(index)
            fine_gradients = []
            for j, batch in enumerate(tau_batches):
                if reuse and j == 0:
                    fine_gradients.append(received)
                else:
                    fine_gradients.append(objective_gradient(index, batch, coupling))
                    work = work + cost(index, batch)
            fine_gradients = _mean(fine_gradients)
            restricted = transfer.restrict_gradient(fine_gradients)

        def go_down():
            start = restrict_level(level, coarse)
            momenta = None
            if scheme.momentum_transfer:
                fine_momenta = momentum_slots(level.smoother, level.variables)
                coarse_momenta = momentum_slots(coarse.smoother, coarse.variables)
                if fine_momenta is not None and coarse_momenta is not None:
                    momenta = fine_momenta, coarse_momenta, transfer.restrict(fine_momenta)
                    assign(coarse_momenta, momenta[2])
            if scheme.tau_scale > 0:
                coarse_gradients = [evaluate[index + 1](data[index + 1][batch]) for batch in tau_batches]
                spent = sum(cost(index + 1, batch) for batch in tau_batches)
                tau = tau_correction(_mean(coarse_gradients), restricted)
                shift = [-scheme.tau_scale * t for t in tau]
                anchor = add_coupling(coarse_gradients[0], shift)
            else:
                anchor = evaluate[index + 1](data[index + 1][tau_batches[0]])
                spent, shift = cost(index + 1, tau_batches[0]), None
            parent = None if scheme.angle_threshold is None else (fine_gradients, level.inner_product, transfer)
            coarse_work, recursion_stops, angle_stops, discarded, coarse_stopped = cycle(
                index + 1, anchor, _Coupling(shift, start, anchor, parent)
            )
            if parent is not None:
                angle_stops = angle_stops + tf.cast(coarse_stopped, tf.float64)
            correction = prolongated_correction(level, coarse.variables, start, scheme.correction_scale)
            accept, tested = accepted(index, correction, coupling)
            if momenta is not None:
                fine_momenta, coarse_momenta, momentum_start = momenta
                add_if(accept, fine_momenta,
                       prolongated_correction(level, coarse_momenta, momentum_start, scheme.momentum_scale))
            discarded = discarded + _f64(tf.logical_not(accept))
            return spent + coarse_work + tested, recursion_stops, angle_stops, discarded

        if not scheme.recursion_test:
            down = go_down()
        else:
            go = descends(fine_gradients, restricted, level.inner_product, coarse.inner_product,
                          scheme.recursion_ratio, scheme.recursion_tolerance)
            down = tf.cond(go, lambda: tuple(map(_f64, go_down())), lambda: (_f64(0.0), _f64(1.0), _f64(0.0), _f64(0.0)))
        return (work + down[0], *down[1:])

    def cycle(index, received, coupling):
        """``received``: the gradient of level ``index``'s objective at its iterate on its first minibatch.

        Returns the work spent on this level and below, the recursion stops,
        angle stops and discarded corrections below it, and whether this
        level's phase was stopped.
        """
        stopped = tf.constant(False) if guarded(coupling) else False
        if index == last:
            work, stopped = smooth(index, 0, steps.coarsest, received, coupling, stopped)
            return work, 0.0, 0.0, 0.0, stopped
        work, stopped = smooth(index, 0, steps.pre[index], received, coupling, stopped)
        if guarded(coupling):
            down = tf.cond(stopped, lambda: (_f64(0.0),) * 4,
                           lambda: tuple(map(_f64, descent(index, received, coupling))))
        else:
            down = descent(index, received, coupling)
        after, stopped = smooth(index, steps.pre[index], steps.post[index], None, coupling, stopped)
        return (work + down[0] + after, *down[1:], stopped)

    loss, y_pred, initial = start(data[0][layout.smoothing[0][0]])
    work, *counts, _ = cycle(0, initial, None)
    work = work + cost(0, layout.smoothing[0][0])
    return CycleReport(loss, y_pred, *map(_f64, (work, *counts)))
