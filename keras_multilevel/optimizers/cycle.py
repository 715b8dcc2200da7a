"""The V-cycle: one walk over a hierarchy's levels, specialized by a scheme's hooks.

One routine, :func:`v_cycle`, walks the hierarchy's list of levels (finest
first) and works for any coarsening, since it only touches a level's model
and the :class:`~keras_multilevel.hierarchy.Transfer` to the next coarser
one. How a coarse level is coupled to its parent and what guards a step or a
correction are the scheme's hooks: :class:`~keras_multilevel.optimizers.mgopt.CoarseCorrection`
for MG/OPT (Gaedke-Merzhäuser et al., 2021, Algorithm 1) and FAS (Ponce et
al., 2022, Algorithm 2, §6), :class:`~keras_multilevel.optimizers.mlsgd.MLSGD`
for MLSGD (Jacob, 2024, Algorithms 4-5); :func:`scheme_hooks` picks them
from the scheme's constants. RMTR (Kopaničáková and Krause (2023)) walks the
same levels with its own trust-region hooks
(:meth:`~keras_multilevel.optimizers.trust_region.RecursiveTrustRegion.cycle`).
It is plain TensorFlow: called inside ``Model.train_step`` it becomes part of
one ``tf.function`` (and one XLA cluster with ``jit_compile=True``); the
Python recursion runs once, at trace time. Its traced graph grows with the
levels; where the set-up allows (Keras SGD or Adam on every level, MG/OPT's and FAS's
hooks, one transfer for every level), the solver runs the same cycle as one
``tf.while_loop`` instead (:mod:`~keras_multilevel.optimizers.cycle_loop`),
which takes the same steps and is traced and prepared once for any number of
levels.

On level ``i`` above the coarsest a cycle

1. takes ``mu_1`` level-optimizer steps on the level's objective ``H_i``
   (for ``i > 0`` tau-corrected, ``g_i - gamma x^T tau_i``), in the direction
   the scheme gives (:meth:`~keras_multilevel.optimizers.mgopt.CoarseCorrection.direction`);
   a scheme with a step guard may undo a step and end the level's phase,
2. restricts the weights ``x_c = Pi x`` (and, with momentum transfer, the
   momentum ``m_c = Pi m``, Ponce et al., 2022, eq 36),
3. lets the scheme form the coarse problem
   (:meth:`~keras_multilevel.optimizers.mgopt.CoarseCorrection.coarse_problem`):
   ``tau = mean_j (grad g_c,j(Pi x) - R grad g_i,j(x))`` over the ``m``
   minibatches ``j`` (Ponce et al., 2022, eq 35; Gaedke-Merzhäuser et al.'s
   (2021, eq 9) coupling term is ``-tau``), after the scheme's recursion
   test (:meth:`~keras_multilevel.optimizers.mgopt.CoarseCorrection.descends`)
   allowed the descent,
4. recurses on the coarse level, which smooths on the same minibatches
   (Ponce et al., 2022, §6.1.1; which minibatch each step takes is the
   scheme's :func:`~keras_multilevel.optimizers.scheme.minibatch_layout`),
5. corrects ``x += alpha_p P (x_c - Pi x)`` (Ponce et al., 2022, eq 4) and
   ``m += alpha_m P (m_c - Pi m)`` (eq 36) if the scheme accepts the
   correction (:meth:`~keras_multilevel.optimizers.mgopt.CoarseCorrection.accept`),
6. takes ``mu_2`` steps.

Gradient evaluations are exactly those counted by
:func:`~keras_multilevel.optimizers.steps.work_units` for a cycle that
descends to the coarsest level and takes every step (a coarse level's first
step reuses its gradient at ``Pi x`` on the first tau minibatch, computed for
tau); the cycle returns the work it actually spent.
"""

import collections

import tensorflow as tf

from keras_multilevel.hierarchy.hierarchy import prolongated_correction, restrict_level
from keras_multilevel.optimizers.inner_product import riesz
from keras_multilevel.optimizers.loss_scale import apply_step, loss_scale
from keras_multilevel.optimizers.objective import level_gradient, loss_gradient, loss_value, tikhonov
from keras_multilevel.optimizers.replicas import sum_over_replicas
from keras_multilevel.optimizers.steps import work_units
from keras_multilevel.optimizers.traces import level_functions


def minibatch(data, parts, index):
    """Minibatch ``index`` of a batch ``(x, y, sample_weight)`` split into ``parts``: its rows ``index::parts``.

    The minibatches of one cycle (Ponce et al., 2022, §6.1.1) drawn from one
    Keras batch; sizes differ by at most one when ``parts`` does not divide
    the batch. A batch with fewer rows than ``parts`` (the short last batch of
    an epoch) gives one-row minibatches that go round its rows: minibatch
    ``j`` is row ``j mod size``. ``index`` may be a tensor.
    """
    if parts == 1:
        return data
    size = tf.shape(tf.nest.flatten(data[0])[0])[0]
    count = tf.maximum(1, (size - index + parts - 1) // parts)
    rows = (index + parts * tf.range(count)) % size
    return tf.nest.map_structure(lambda tensor: None if tensor is None else tf.gather(tensor, rows), data)


def split_batch(data, parts):
    """The ``parts`` minibatches of a batch ``(x, y, sample_weight)`` (:func:`minibatch`)."""
    return [minibatch(data, parts, index) for index in range(parts)]


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


def mean(gradient_lists):
    """The mean of several gradients (lists of tensors, one per variable), as tau averages its minibatches."""
    count = len(gradient_lists)
    if count == 1:
        return gradient_lists[0]
    return [tf.add_n(list(parts)) / count for parts in zip(*gradient_lists)]


def assign(variables, values):
    """Sets each variable to its value."""
    for variable, value in zip(variables, values):
        variable.assign(value)


def add_if(condition, variables, values):
    """Adds each value to its variable where the boolean tensor ``condition`` holds."""
    zeros = {}
    for variable, value in zip(variables, values):
        zero = zeros.setdefault(value.dtype, tf.zeros((), value.dtype))
        variable.assign_add(tf.where(condition, value, zero))


def f64(value):
    """A work count or stop count as a float64 tensor."""
    return tf.cast(value, tf.float64)


def _gradient(model, values, data, scale):
    """``grad L`` alone (:func:`~keras_multilevel.optimizers.objective.loss_gradient`): what most evaluations need."""
    return loss_gradient(model, data, scale, values)[2]


def _loss(model, values, data):
    """The loss alone: what the acceptance test compares."""
    return loss_value(model, data, values)


def _read(scale):
    """A level optimizer's loss scale as a tensor (``None``: not scaled)."""
    return None if scale is None else tf.convert_to_tensor(scale)


class LevelEvaluations:
    """What one cycle evaluates on each level: the loss, the gradient and their work, on the minibatches
    as each level sees them (:func:`level_data`).

    Each level's loss and gradient are traced once per group of alike levels
    (:mod:`~keras_multilevel.optimizers.traces`); the sum over replicas and
    the Tikhonov term are added here, the coupling and the schemes' own terms
    by the scheme.

    Args:
        hierarchy: the :class:`~keras_multilevel.hierarchy.Hierarchy`.
        minibatches: the cycle's minibatches ``(x, y, sample_weight)``.
        full_batch: ``None``, or the held data set of a full-gradient
            correction (Jacob, 2024, §3.3.2), minibatch index
            ``len(minibatches)``; a gradient on it costs its rows per row of
            the first minibatch in work units.
    """

    def __init__(self, hierarchy, minibatches, full_batch=None):
        self.hierarchy = hierarchy
        self.data = level_data(hierarchy, list(minibatches) if full_batch is None else [*minibatches, full_batch])
        self._gradients = level_functions(hierarchy, _gradient)
        self._losses = level_functions(hierarchy, _loss)
        self._batch_costs = [1.0] * len(minibatches)
        if full_batch is not None:
            rows = [tf.shape(tf.nest.flatten(batch[0])[0])[0] for batch in (full_batch, minibatches[0])]
            self._batch_costs.append(f64(rows[0]) / f64(rows[1]))

    def gradient(self, index, batch):
        """``grad (L_l + sum_j beta_j ||theta_j||^2)`` of level ``index`` on minibatch ``batch``
        (:func:`~keras_multilevel.optimizers.objective.level_gradient`), over all replicas."""
        level = self.hierarchy[index]
        gradients = self._gradients[index](self.data[index][batch], _read(loss_scale(level.smoother)))
        return tikhonov(sum_over_replicas(gradients), level.variables, level.regularization)

    def loss(self, index, batch):
        """The loss of level ``index`` on minibatch ``batch``, this replica's."""
        return self._losses[index](self.data[index][batch])

    def cost(self, index, batch, per_evaluation=1.0):
        """The work units of ``per_evaluation`` gradients of level ``index`` on minibatch ``batch``."""
        return self.hierarchy[index].relative_cost * per_evaluation * self._batch_costs[batch]


CycleReport = collections.namedtuple(
    "CycleReport", ["loss", "y_pred", "work_units", "recursion_stops", "angle_stops", "discarded_corrections"]
)
CycleReport.__doc__ = """What :func:`v_cycle` returns: the finest model's ``loss`` and ``y_pred`` on its first
minibatch at the start of the cycle (as a plain Keras train step reports them), the
``work_units`` the cycle spent (fine gradient evaluations, Gaedke-Merzhäuser et al.,
2021, eq 10), how many descents the recursion test stopped and how many coarse
phases the angle condition ended (Jacob, 2024, eqs 3.3-3.5), and how many
prolongated corrections the scheme discarded (float64 scalars; RMTR's ratio test,
which shortens or rejects its recursive steps by design, counts none)."""

Spent = collections.namedtuple("Spent", ["work", "recursion_stops", "angle_stops", "discarded"])
Spent.__doc__ = """What a level and the levels below it spent in one cycle: work units and the counts of
:class:`CycleReport` (float64 tensors, or Python numbers where nothing was decided in the graph)."""

_NOTHING = Spent(0.0, 0.0, 0.0, 0.0)

Coupling = collections.namedtuple("Coupling", ["shift", "start", "anchor", "parent"])
Coupling.__doc__ = """How a coarse level is coupled to the level above for one cycle: the coupling term
``shift`` (``-gamma tau``, or ``None``), its start point ``start`` (``Pi x``), ``anchor``, its
objective's gradient there (served as its first step, and the SVRG anchor), and ``parent``,
``(gradient, inner product weights, transfer)`` of the level above for a step guard (``None``
without one)."""


def _in_graph(condition, branch, otherwise):
    """``branch()`` when ``condition`` is Python ``True``; a ``tf.cond`` when it is a tensor.

    Both give a :class:`Spent` of float64 tensors when the graph decides."""
    if condition is True:
        return branch()
    return tf.cond(condition, lambda: Spent(*map(f64, branch())), lambda: Spent(*map(f64, otherwise)))


def v_cycle(hierarchy, steps, scheme, minibatches, layout, full_batch=None, trust_region=None):
    """Runs one V-cycle and updates the finest level's weights.

    Args:
        hierarchy: a :class:`~keras_multilevel.hierarchy.Hierarchy` whose
            levels carry their ``smoother`` (a built Keras optimizer, the level
            optimizer of Gaedke-Merzhäuser et al., 2021, Algorithm 2; SGD in
            Ponce et al., 2022, §6), ``inner_product`` (coupling terms are
            Euclidean, each step uses the level's gradient in it) and
            ``regularization`` (the Tikhonov weights of its variables, see
            :func:`~keras_multilevel.optimizers.objective.level_gradient`).
        steps: a :class:`~keras_multilevel.optimizers.steps.CycleSteps`.
        scheme: a :class:`~keras_multilevel.optimizers.scheme.CycleScheme`.
        minibatches: ``layout.count`` minibatches ``(x, y, sample_weight)``
            (see :func:`split_batch`).
        layout: the :class:`~keras_multilevel.optimizers.scheme.MinibatchLayout`
            saying which minibatches each level smooths on and forms tau on.
        full_batch: the held data set ``(x, y, sample_weight)`` of a
            full-gradient correction (``scheme.full_gradient``, Jacob, 2024,
            §3.3.2), minibatch index ``layout.count``.
        trust_region: ``None``, or the
            :class:`~keras_multilevel.optimizers.trust_region.RecursiveTrustRegion`
            whose cycle runs instead (RMTR: trust-region level steps and
            ratio-tested corrections).

    Returns:
        A :class:`CycleReport`. With a recursion test or a step guard (MLSGD)
        the cycle decides inside the graph (``tf.cond``) whether to descend and
        whether a coarse level takes its next step; a skipped descent or step
        spends no work.
    """
    if scheme.full_gradient and full_batch is None:
        raise ValueError(
            "The deterministic gradient correction forms tau with the full gradient over a held data set: "
            "give it with `MultilevelOptimizer.use_full_batch(x, y)` before training."
        )
    levels = LevelEvaluations(hierarchy, minibatches, full_batch)
    if trust_region is not None:
        loss, y_pred = trust_region.cycle(steps, layout, levels.data)
        work = work_units(steps, [level.relative_cost for level in hierarchy], trust_region=True)
        return CycleReport(loss, y_pred, *map(f64, (work, 0.0, 0.0, 0.0)))
    hooks = scheme_hooks(scheme)(scheme, steps, layout, levels)
    last = len(hierarchy) - 1

    def smooth(index, first_step, count_steps, received, coupling, going):
        """Steps ``first_step, ...`` of the level (step 0 takes the ``received`` gradient, if given);
        returns their work and whether the level's phase goes on (``going``: so far)."""
        level, own = hierarchy[index], layout.smoothing[index]
        work = 0.0
        for step in range(first_step, first_step + count_steps):

            def take(step=step):
                if step == 0 and received is not None:
                    # Received from outside a tf.cond branch: Keras' all-reduce
                    # needs every gradient it gets to be made in the branch.
                    gradients, spent = [tf.identity(g) for g in received], 0.0
                else:
                    gradients, spent = hooks.direction(index, own[step % len(own)], coupling)
                apply_step(level.smoother, riesz(gradients, level.inner_product), level.variables)
                return spent

            spent, going = hooks.guarded_step(index, take, coupling, going)
            work = work + spent
        return work, going

    def descent(index, received, coupling):
        """Steps 2-5 from level ``index``'s current iterate: restriction, coarse problem, coarse cycle and
        correction, if the scheme's recursion test lets the cycle descend."""
        level, coarse = hierarchy[index], hierarchy[index + 1]
        work, fine_gradients, restricted = hooks.fine_gradient(index, received, coupling)

        def go_down():
            start = restrict_level(level, coarse)
            momenta = None
            if scheme.momentum_transfer:
                fine_momenta = momentum_slots(level.smoother, level.variables)
                coarse_momenta = momentum_slots(coarse.smoother, coarse.variables)
                if fine_momenta is not None and coarse_momenta is not None:
                    momenta = fine_momenta, coarse_momenta, level.transfer.restrict(fine_momenta)
                    assign(coarse_momenta, momenta[2])
            spent, shift, anchor = hooks.coarse_problem(index, restricted)
            parent = hooks.parent(index, fine_gradients)
            below, coarse_going = cycle(index + 1, anchor, Coupling(shift, start, anchor, parent))
            correction = prolongated_correction(level.transfer, coarse.variables, start, scheme.correction_scale)
            accept, tested = hooks.accept(index, correction, coupling)
            if momenta is not None:
                fine_momenta, coarse_momenta, momentum_start = momenta
                add_if(accept, fine_momenta,
                       prolongated_correction(level.transfer, coarse_momenta, momentum_start, scheme.momentum_scale))
            ended = 0.0 if coarse_going is True else f64(tf.logical_not(coarse_going))
            return Spent(spent + below.work + tested, below.recursion_stops, below.angle_stops + ended,
                         below.discarded + f64(tf.logical_not(accept)))

        down = _in_graph(hooks.descends(index, fine_gradients, restricted), go_down, Spent(0.0, 1.0, 0.0, 0.0))
        return down._replace(work=work + down.work)

    def cycle(index, received, coupling):
        """Level ``index``'s part of the cycle from its iterate, where ``received`` is its objective's
        gradient on its first minibatch; returns what it and the levels below spent, and whether its
        phase went on to the end."""
        going = hooks.phase(coupling)
        if index == last:
            work, going = smooth(index, 0, steps.coarsest, received, coupling, going)
            return _NOTHING._replace(work=work), going
        work, going = smooth(index, 0, steps.pre[index], received, coupling, going)
        down = _in_graph(going, lambda: descent(index, received, coupling), _NOTHING)
        after, going = smooth(index, steps.pre[index], steps.post[index], None, coupling, going)
        return down._replace(work=work + down.work + after), going

    first = layout.smoothing[0][0]
    finest = hierarchy[0]
    loss, y_pred, initial = level_gradient(finest.model, levels.data[0][first], finest.regularization,
                                           loss_scale(finest.smoother))
    spent, _ = cycle(0, initial, None)
    return CycleReport(loss, y_pred, *map(f64, (spent.work + levels.cost(0, first), *spent[1:])))


def scheme_hooks(scheme):
    """The class of hooks that runs ``scheme``'s cycle: the last defined subclass of
    :class:`~keras_multilevel.optimizers.mgopt.CoarseCorrection` (or the class itself) whose
    ``applies(scheme)`` holds. :class:`~keras_multilevel.optimizers.mlsgd.MLSGD` takes the schemes with one
    of MLSGD's safeguards or variants on; MG/OPT's and FAS's hooks the others."""
    # Imported here: the schemes' modules build on this one's helpers.
    from keras_multilevel.optimizers import mlsgd  # noqa: F401  (defines MLSGD's hooks)
    from keras_multilevel.optimizers.mgopt import HOOKS

    return next(hooks for hooks in reversed(HOOKS) if hooks.applies(scheme))
