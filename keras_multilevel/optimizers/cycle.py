"""The V-cycle: MG/OPT (000 Algorithm 1), FAS (002 Algorithm 2, §6) and RMTR (003) in one routine.

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
   momentum ``m_c = Pi m``, 002 eq 36),
3. forms ``tau = mean_j (grad g_c,j(Pi x) - R grad g_i,j(x))`` over the ``m``
   minibatches ``j`` (002 eq 35; 000 eq 9's coupling term is ``-tau``),
4. recurses on the coarse level, which smooths on the same minibatches
   (002 §6.1.1; which minibatch each step takes is the scheme's
   :func:`~keras_multilevel.optimizers.scheme.minibatch_layout`),
5. corrects ``x += alpha_p P (x_c - Pi x)`` (002 eq 4) and
   ``m += alpha_m P (m_c - Pi m)`` (eq 36), unless the correction is not
   finite or, with ``scheme.correction_test``, raises the level's objective
   (the safeguard below),
6. takes ``mu_2`` steps.

The safeguard: a NaN or Inf anywhere in a prolongated correction (a coarse
level that diverged) is discarded, so it never reaches the finer weights.
With ``correction_test`` the corrected iterate must also pass the
acceptance test of MG/OPT's line search (Nash 2000) and of trust-region
cycles (001 §3.2.3, RMTR) with the weakest threshold: the level's objective
on its first tau minibatch may not increase, ``H(x + P e) <= H(x)``;
otherwise the correction is discarded and the cycle goes on from ``x``.

RMTR (``scheme="rmtr"``, :mod:`~keras_multilevel.optimizers.trust_region`)
walks the same steps with two hooks: each level step is an L-SR1
trust-region step, and step 5 is its recursive step, ``x + P (x_c - Pi x)``
accepted by the ratio of the fine objective's decrease to the coarse model's
(``gamma = 1``, one minibatch, no momentum); before step 4 it applies RMTR's
recursion condition and bounds the coarse iterates by the fine radius left.

Gradient evaluations are exactly those counted by
:func:`~keras_multilevel.optimizers.steps.work_units`: a coarse level's first
step reuses its gradient at ``Pi x`` on the first tau minibatch, computed for
tau.
"""

import functools

import tensorflow as tf

from keras_multilevel.hierarchy.hierarchy import restrict_level
from keras_multilevel.optimizers.inner_product import riesz
from keras_multilevel.optimizers.loss_scale import apply_step, loss_scale
from keras_multilevel.optimizers.objective import add_coupling, level_gradient, level_objective, tau_correction
from keras_multilevel.optimizers.trust_region import couple, value_and_gradient


def split_batch(data, parts):
    """Splits a batch ``(x, y, sample_weight)`` into ``parts`` minibatches (rows ``j::parts``).

    The minibatches of one cycle (002 §6.1.1) drawn from one Keras batch;
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


def _gradient_only(model, regularization, optimizer):
    """``data -> gradient`` of :func:`~keras_multilevel.optimizers.objective.level_gradient` alone,
    with the level optimizer's loss scale (read when called: it is a variable)."""

    def gradient(data):
        return level_gradient(model, data, regularization, loss_scale(optimizer))[2]

    return gradient


def v_cycle(hierarchy, smoothers, steps, scheme, minibatches, layout, regularization, inner_products, trust_region=None):
    """Runs one V-cycle and updates the finest level's weights.

    Args:
        hierarchy: a :class:`~keras_multilevel.hierarchy.Hierarchy`.
        smoothers: one built Keras optimizer per level (the level optimizer of
            000 Algorithm 2, SGD in 002 §6).
        steps: a :class:`~keras_multilevel.optimizers.steps.CycleSteps`.
        scheme: a :class:`~keras_multilevel.optimizers.scheme.CycleScheme`.
        minibatches: ``layout.count`` minibatches ``(x, y, sample_weight)``
            (see :func:`split_batch`).
        layout: the :class:`~keras_multilevel.optimizers.scheme.MinibatchLayout`
            saying which minibatches each level smooths on and forms tau on.
        regularization: per level, finest first, the Tikhonov weights of its
            variables (see :func:`~keras_multilevel.optimizers.objective.level_gradient`).
        inner_products: per level, the weights of its inner product
            (:func:`~keras_multilevel.optimizers.inner_product.inner_product_weights`):
            coupling terms are Euclidean, each step uses the level's gradient.
        trust_region: ``None``, or the
            :class:`~keras_multilevel.optimizers.trust_region.RecursiveTrustRegion`
            whose hooks replace the level optimizers' steps and the acceptance
            of corrections (RMTR, 003): each level then carries ``(H, grad H)``
            at its iterate on the cycle's one minibatch from step to step.

    Returns:
        ``(loss, y_pred)`` of the finest model on its first minibatch at the
        start of the cycle, as a plain Keras train step reports them.
    """
    last = len(hierarchy) - 1
    # Inside a graph, each level's gradient is one traced function called as
    # often as the cycle needs it, rather than traced again at every call; the
    # tau-correction is added outside it, so each level is traced once. The
    # functions are not inlined, and every call uses all their outputs (the
    # gradient alone, but for the report at the start), so TensorFlow optimizes
    # each once instead of a specialized copy per call: with 8 levels that was
    # most of the first cycle's start-up time.
    start = functools.partial(
        level_gradient, hierarchy[0].model, regularization=regularization[0], loss_scale=loss_scale(smoothers[0])
    )
    evaluate = [
        _gradient_only(level.model, beta, smoother) for level, beta, smoother in zip(hierarchy, regularization, smoothers)
    ]
    objective = [
        functools.partial(level_objective, level.model, regularization=beta)
        for level, beta in zip(hierarchy, regularization)
    ]
    if trust_region is not None:
        evaluate = [
            functools.partial(value_and_gradient, level.model, regularization=beta)
            for level, beta in zip(hierarchy, regularization)
        ]
    if tf.inside_function():
        evaluate, objective = (
            [tf.function(function, experimental_attributes={"_noinline": True}) for function in functions]
            for functions in (evaluate, objective)
        )
    data = level_data(hierarchy, minibatches)

    def gradient(index, batch, shift):
        return add_coupling(evaluate[index](data[index][batch]), shift)

    def coupled(index, batch, shift):
        """``() -> (H, grad H)`` of level ``index`` on ``batch`` at its current iterate (RMTR)."""
        return lambda: couple(evaluate[index](data[index][batch])[:2], hierarchy[index].variables, shift)

    def smooth(index, first_step, count_steps, received, shift):
        """Steps ``first_step, ...`` of the level; step 0 uses the received gradient, if given.

        Returns what the next step may use: with a trust region, ``(H, grad H)``
        at the level's iterate; otherwise nothing.
        """
        variables = hierarchy[index].variables
        own = layout.smoothing[index]
        if trust_region is not None:
            return trust_region.steps(index, count_steps, received, coupled(index, own[0], shift))
        for step in range(first_step, first_step + count_steps):
            grads = received if step == 0 and received is not None else gradient(index, own[step % len(own)], shift)
            apply_step(smoothers[index], riesz(grads, inner_products[index]), variables)

    def assign(variables, values):
        for variable, value in zip(variables, values):
            variable.assign(value)

    def add_if(condition, variables, values):
        for variable, value in zip(variables, values):
            variable.assign_add(tf.where(condition, value, tf.zeros_like(value)))

    def prolongated_correction(transfer, coarse_values, start, scale):
        correction = transfer.prolong([value - begin for value, begin in zip(coarse_values, start)])
        return correction if scale == 1.0 else [scale * value for value in correction]

    def accepted(index, correction, shift):
        """Applies the correction to level ``index`` if it passes the safeguard; returns whether it did."""
        variables = hierarchy[index].variables
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(value)) for value in correction])
        if not scheme.correction_test:
            add_if(finite, variables, correction)
            return finite
        batch = data[index][layout.tau[index][0]]
        before = objective[index](batch, shift)
        start = [tf.identity(variable) for variable in variables]
        assign(variables, [begin + value for begin, value in zip(start, correction)])
        after = objective[index](batch, shift)
        accept = tf.logical_and(finite, after <= before)
        assign(variables, [tf.where(accept, variable, begin) for variable, begin in zip(variables, start)])
        return accept

    def cycle(index, received, shift):
        """``received``: the gradient of level ``index``'s objective at its iterate on its first minibatch
        (with a trust region, ``(H, grad H)`` there); returns what :func:`smooth` returns."""
        if index == last:
            return smooth(index, 0, steps.coarsest, received, shift)
        level, coarse = hierarchy[index], hierarchy[index + 1]
        transfer = level.transfer
        current = smooth(index, 0, steps.pre[index], received, shift)

        start = restrict_level(level, coarse)
        momenta = None
        if scheme.momentum_transfer:
            fine_momenta = momentum_slots(smoothers[index], level.variables)
            coarse_momenta = momentum_slots(smoothers[index + 1], coarse.variables)
            if fine_momenta is not None and coarse_momenta is not None:
                momenta = fine_momenta, coarse_momenta, transfer.restrict(fine_momenta)
                assign(coarse_momenta, momenta[2])

        tau_batches = layout.tau[index]
        if trust_region is not None:
            # One minibatch per cycle (the scheme's), the gradient at x is known: 003 with RMTR's recursion.
            restricted = transfer.restrict_gradient(current[1])
            coarse_value, coarse_gradient, _, _ = evaluate[index + 1](data[index + 1][tau_batches[0]])
            coarse_shift = [-t for t in tau_correction(coarse_gradient, restricted)]
            coarse_start = couple((coarse_value, coarse_gradient), coarse.variables, coarse_shift)
            recurse = trust_region.descend(index, current[1], restricted)
            coarse_end = cycle(index + 1, coarse_start, coarse_shift)
            correction = prolongated_correction(transfer, coarse.variables, start, 1.0)
            current = trust_region.correct(
                index, correction, current, coarse_start[0] - coarse_end[0], recurse, coupled(index, tau_batches[0], shift)
            )
            return smooth(index, steps.pre[index], steps.post[index], current, shift)
        if scheme.tau_scale > 0:
            reuse = steps.pre[index] == 0 and layout.shared(index)
            fine_gradients = [
                received if reuse and j == 0 else gradient(index, batch, shift)
                for j, batch in enumerate(tau_batches)
            ]
            coarse_gradients = [evaluate[index + 1](data[index + 1][batch]) for batch in tau_batches]
            tau = tau_correction(_mean(coarse_gradients), transfer.restrict_gradient(_mean(fine_gradients)))
            coarse_shift = [-scheme.tau_scale * t for t in tau]
            cycle(index + 1, add_coupling(coarse_gradients[0], coarse_shift), coarse_shift)
        else:
            cycle(index + 1, evaluate[index + 1](data[index + 1][tau_batches[0]]), None)

        correction = prolongated_correction(transfer, coarse.variables, start, scheme.correction_scale)
        accept = accepted(index, correction, shift)
        if momenta is not None:
            fine_momenta, coarse_momenta, momentum_start = momenta
            add_if(accept, fine_momenta,
                   prolongated_correction(transfer, coarse_momenta, momentum_start, scheme.momentum_scale))
        return smooth(index, steps.pre[index], steps.post[index], None, shift)

    if trust_region is not None:
        value, initial, loss, y_pred = evaluate[0](data[0][layout.smoothing[0][0]])
        cycle(0, (value, initial), None)
        return loss, y_pred
    loss, y_pred, initial = start(data[0][layout.smoothing[0][0]])
    cycle(0, initial, None)
    return loss, y_pred
