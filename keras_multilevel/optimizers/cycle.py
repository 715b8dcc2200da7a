"""The MG/OPT V-cycle, paper 000 Algorithm 1, with gradient-step level optimizers.

One routine walks the hierarchy's list of levels (finest first) and works for
any coarsening, since it only touches a level's model and the
:class:`~keras_multilevel.hierarchy.Transfer` to the next coarser one. It is
plain TensorFlow: called inside ``Model.train_step`` it becomes part of one
``tf.function`` (and one XLA cluster with ``jit_compile=True``); the Python
recursion runs once, at trace time.

Gradient evaluations per level are exactly those that 000 eq 10 counts
(:func:`~keras_multilevel.optimizers.steps.work_units`): on each coarse level
the gradient that builds the coupling term also serves its first step,
because ``grad H_l(theta_{l,0}) = R grad H_{l+1}`` by construction.
"""

import functools

import tensorflow as tf

from keras_multilevel.optimizers.objective import add_coupling, coupling_term, level_gradient


def v_cycle(hierarchy, smoothers, steps, data, regularization, coupling=True):
    """Runs one V-cycle on a mini-batch and updates the finest level's weights.

    Args:
        hierarchy: a :class:`~keras_multilevel.hierarchy.Hierarchy`.
        smoothers: one built Keras optimizer per level (the level optimizer of
            000 Algorithm 2 when it is SGD).
        steps: a :class:`~keras_multilevel.optimizers.steps.CycleSteps`.
        data: ``(x, y, sample_weight)``, the same mini-batch on every level
            (000 Algorithm 3).
        regularization: Tikhonov weight ``beta_i`` per level, finest first.
        coupling: use the coupling term ``delta g`` (MG/OPT); ``False`` gives
            the MLSGD variant without gradient correction.

    Returns:
        ``(loss, y_pred)`` of the finest model at the start of the cycle, as
        a plain Keras train step reports them.
    """
    last = len(hierarchy) - 1
    # Inside a graph, each level's gradient is one traced function called as
    # often as the cycle needs it, rather than traced again at every call; the
    # coupling term is added outside it, so each level is traced once.
    evaluate = [
        functools.partial(level_gradient, level.model, regularization=beta)
        for level, beta in zip(hierarchy, regularization)
    ]
    if tf.inside_function():
        evaluate = [tf.function(function) for function in evaluate]

    def gradient(index, shift):
        return add_coupling(evaluate[index](data)[2], shift)

    def smooth(index, count, first_gradient, shift):
        """``count`` level-optimizer steps; the first may reuse a known gradient."""
        variables = hierarchy[index].variables
        for step in range(count):
            grads = first_gradient if step == 0 and first_gradient is not None else gradient(index, shift)
            smoothers[index].apply(grads, variables)

    def cycle(index, initial_gradient, shift):
        if index == last:
            smooth(index, steps.coarsest, initial_gradient, shift)
            return
        level, coarse = hierarchy[index], hierarchy[index + 1]
        transfer = level.transfer
        smooth(index, steps.pre[index], initial_gradient, shift)
        fine_gradient = gradient(index, shift) if steps.pre[index] else initial_gradient

        start = transfer.restrict(level.variables)
        for variable, value in zip(coarse.variables, start):
            variable.assign(value)
        coarse_gradient = gradient(index + 1, None)
        if coupling:
            restricted = transfer.restrict_gradient(fine_gradient)
            cycle(index + 1, restricted, coupling_term(restricted, coarse_gradient))
        else:
            cycle(index + 1, coarse_gradient, None)

        correction = [variable - value for variable, value in zip(coarse.variables, start)]
        for variable, value in zip(level.variables, transfer.prolong(correction)):
            variable.assign_add(value)
        smooth(index, steps.post[index], None, shift)

    loss, y_pred, initial_gradient = evaluate[0](data)
    cycle(0, initial_gradient, None)
    return loss, y_pred
