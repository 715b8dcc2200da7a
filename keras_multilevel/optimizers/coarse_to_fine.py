"""Coarse-to-fine training: Haber et al. (2018, Algorithm 1) ("multigrid prolongation"), one batch at a time.

Haber et al. (2018, §3.2, Algorithm 1): train the
coarsest network first, prolong its weights to the next finer level (Haber et al. (2018,
§3.2) for stencils, Jacob (2024, §4.3) for feature-map weights), train there from that
starting point, and so on up to the finest network, which then trains alone.
With a depth hierarchy this is Haber et al.'s (2018, §3.3) shallow-to-deep training.

A *schedule* ``[n_{L-1}, ..., n_1]`` gives the number of batches spent on
each coarse level, coarsest first; every later batch trains the finest
level. Inside ``model.fit`` the level of a batch is chosen in the graph from
the optimizer's iteration count, so one compiled train step serves every
phase (and a run resumed from a ``.keras`` file continues in its phase).

During a coarse phase the finest model holds the trained level's weights
prolonged to it (:func:`prolonged_to_finest`), updated after every batch:
what ``fit`` validates, what callbacks save and what ``predict`` computes
is the network grown so far, at full size. The finer levels' own phases
start from their coarser neighbour as before (Algorithm 1 line 5), so the
weights a schedule ends with do not change.
"""

import numpy as np
import tensorflow as tf

from keras_multilevel.optimizers.cycle import level_data
from keras_multilevel.optimizers.inner_product import riesz
from keras_multilevel.optimizers.loss_scale import apply_step, loss_scale
from keras_multilevel.optimizers.objective import level_gradient


def check_schedule(schedule, levels):
    """``schedule`` as a tuple of ``levels - 1`` positive integers, or ``ValueError``."""
    valid = (
        isinstance(schedule, (list, tuple))
        and len(schedule) == levels - 1
        and all(not isinstance(n, bool) and isinstance(n, (int, np.integer)) and n > 0 for n in schedule)
    )
    if levels < 2 or not valid:
        raise ValueError(
            f"`schedule` must list the batches spent on each of the {levels - 1} coarse levels, "
            f"coarsest first, as positive integers (and needs levels >= 2), got {schedule!r}."
        )
    return tuple(int(n) for n in schedule)


def phase_starts(schedule):
    """The iteration at which each level starts training, coarsest first, ending with the finest."""
    return [0, *np.cumsum(schedule).tolist()]


def prolonged_to_finest(hierarchy, index):
    """Level ``index``'s weights prolonged level by level to the finest: ``P_0 ... P_{index-1} x_index``.

    Each step is the transfer's ``prolong_iterate``, so a level's variables
    that its coarser neighbour lacks (a grown grid's,
    :mod:`~keras_multilevel.hierarchy.pyramid`) keep their current values.
    """
    values = hierarchy[index].variables
    for finer in reversed(range(index)):
        values = hierarchy[finer].transfer.prolong_iterate(values, hierarchy[finer].variables)
    return values


def coarse_to_fine_step(hierarchy, schedule, iteration, data):
    """One batch of Algorithm 1: a smoothing step on the level whose phase ``iteration`` is in.

    On the first iteration of a level's phase its weights are first set to
    the prolongation ``P`` of the next coarser level's (Algorithm 1 line 5;
    the transfer's ``prolong_iterate``, which keeps the variables a coarse
    level lacks, such as a grown grid's: :mod:`~keras_multilevel.hierarchy.pyramid`);
    the coarsest level starts from the restriction of the fine weights (the
    initialization, line 2). After a coarse level's step the finest model's
    weights are set to its prolongation (:func:`prolonged_to_finest`).

    Args:
        hierarchy: the :class:`~keras_multilevel.hierarchy.Hierarchy`, whose
            levels carry their smoother, inner product and Tikhonov weights.
        schedule: batches per coarse level, coarsest first (:func:`check_schedule`).
        iteration: the optimizer's iteration count (a scalar tensor).
        data: the batch ``(x, y, sample_weight)`` on the finest grid.

    Returns:
        ``(loss, y_pred, level)``: the trained level's loss on its batch, its
        prediction carried to the finest level (``prolong_data``, for Keras'
        metrics), and its index.
    """
    last = len(hierarchy) - 1
    batches = [level[0] for level in level_data(hierarchy, [data])]
    starts = phase_starts(schedule)
    order = list(range(last, -1, -1))  # the level trained in each phase

    def branch(phase):
        index = order[phase]
        level = hierarchy[index]

        def prolong():
            coarse = hierarchy[index + 1]
            values = level.transfer.prolong_iterate(coarse.variables, level.variables)
            for variable, value in zip(level.variables, values):
                variable.assign(value)
            return tf.constant(True)

        def run():
            ready = []
            if index < last:
                ready = [tf.cond(tf.equal(iteration, starts[phase]), prolong, lambda: tf.constant(False))]
            with tf.control_dependencies(ready):
                loss, y_pred, gradients = level_gradient(
                    level.model, batches[index], level.regularization, loss_scale(level.smoother)
                )
            apply_step(level.smoother, riesz(gradients, level.inner_product), level.variables)
            if index > 0:
                for variable, value in zip(hierarchy[0].variables, prolonged_to_finest(hierarchy, index)):
                    variable.assign(value)
            for finer in reversed(range(index)):
                y_pred = hierarchy[finer].transfer.prolong_data(y_pred)
            return loss, y_pred, tf.constant(index)

        return run

    phase = tf.reduce_sum(tf.cast(iteration >= tf.constant(starts[1:], dtype=iteration.dtype), tf.int32))
    return tf.switch_case(phase, [branch(phase_index) for phase_index in range(len(order))])
