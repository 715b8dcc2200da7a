"""MG/OPT and FAS: the tau-corrected coarse problem, as hooks of the V-cycle.

MG/OPT (Nash 2000; Gaedke-Merzhäuser et al., 2021, Algorithm 1) and the
full approximation scheme of Ponce et al. (2022, Algorithm 2), differ only
in the scheme's constants (:class:`~keras_multilevel.optimizers.scheme.CycleScheme`:
how many minibatches tau averages, whether each restriction draws fresh
ones, whether momentum travels with the weights), so one class of hooks
serves both: :class:`CoarseCorrection`. The coarse level minimizes

    H_c(x_c) = L_c(x_c) + sum_j beta_j ||x_c,j||^2 - gamma <tau, x_c>,
    tau = mean_j grad (L_c + beta ||.||^2)(Pi x; xi_j) - R mean_j grad H(x; xi_j)

(Ponce et al., 2022, eqs 3 and 35; Gaedke-Merzhäuser et al. (2021, eq 9)
with ``delta g = -tau``), whose gradient at ``Pi x`` is ``R grad H(x)`` when
``gamma = 1``: first-order coherence. Its correction
``alpha_p P (x_c - Pi x)`` is accepted when the safeguard allows it
(:func:`within_bound`) and, with ``correction_test``, when it does not raise
the level's objective (the acceptance test of MG/OPT's line search, Nash 2000).

:func:`~keras_multilevel.optimizers.cycle.v_cycle` calls the hooks; MLSGD
(:class:`~keras_multilevel.optimizers.mlsgd.MLSGD`) extends them.
"""

import tensorflow as tf

from keras_multilevel.optimizers.cycle import add_if, assign, mean
from keras_multilevel.optimizers.inner_product import level_norm
from keras_multilevel.optimizers.objective import add_coupling, level_objective, tau_correction
from keras_multilevel.optimizers.steps import FORWARD_COST


def within_bound(correction, variables, bound):
    """Whether a prolongated correction ``P e`` may be added to the weights ``x`` of the level it corrects.

    It must be finite (its float64 norm is: for float64 weights, a
    correction beyond about ``1e154`` counts as diverged too) and, with a
    ``bound``, no longer than ``bound`` times
    the weights: ``||P e|| <= bound max(||x||, 1)`` (Euclidean norms over all
    of the level's weights; the ``1`` lets weights that start at zero be
    corrected). A coarse level that diverged to large finite values then
    cannot move the finer weights by more than that in one cycle: the
    safeguard that complements the acceptance test (``correction_test``)
    at no gradient evaluation.
    """
    euclidean = [1.0] * len(variables)
    size = level_norm(correction, euclidean)
    finite = tf.math.is_finite(size)  # a NaN or Inf anywhere in the correction makes its float64 norm so
    if bound is None:
        return finite
    return tf.logical_and(finite, size <= bound * tf.maximum(level_norm(variables, euclidean), 1.0))


HOOKS = []
"""Every class of V-cycle hooks, in the order defined: :func:`~keras_multilevel.optimizers.cycle.scheme_hooks`
takes the last one whose ``applies(scheme)`` holds, so a subclass defined in a module of its own takes over
the schemes it applies to."""


class CoarseCorrection:
    """The hooks of MG/OPT's and FAS's V-cycle: objective, step direction, coarse problem and correction.

    Args:
        scheme: the :class:`~keras_multilevel.optimizers.scheme.CycleScheme` (its constants).
        steps: the cycle's :class:`~keras_multilevel.optimizers.steps.CycleSteps`.
        layout: the :class:`~keras_multilevel.optimizers.scheme.MinibatchLayout`.
        levels: the cycle's :class:`~keras_multilevel.optimizers.cycle.LevelEvaluations`.

    A ``coupling`` is the :class:`~keras_multilevel.optimizers.cycle.Coupling`
    of a coarse level to the level above (``None`` on the finest level).
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        HOOKS.append(cls)

    def __init__(self, scheme, steps, layout, levels):
        self.scheme, self.steps, self.layout, self.levels = scheme, steps, layout, levels
        self.hierarchy = levels.hierarchy

    @classmethod
    def applies(cls, scheme):
        """Whether these hooks run ``scheme``'s cycle (they run every V-cycle scheme but RMTR's)."""
        return not scheme.trust_region

    def objective_gradient(self, index, batch, coupling):
        """``grad H_l`` on one minibatch: loss, Tikhonov and coupling terms (Gaedke-Merzhäuser et al., 2021, eq 9)."""
        gradients = self.levels.gradient(index, batch)
        return gradients if coupling is None else add_coupling(gradients, coupling.shift)

    def objective_value(self, index, batch, coupling):
        """``H_l`` itself on one minibatch (what the acceptance test compares)."""
        level = self.hierarchy[index]
        shift = None if coupling is None else coupling.shift
        return level_objective(self.levels.loss(index, batch), level.variables, shift, level.regularization)

    def direction(self, index, batch, coupling):
        """A smoothing step's direction on one minibatch, and its work: ``grad H_l``."""
        return self.objective_gradient(index, batch, coupling), self.levels.cost(index, batch)

    def phase(self, coupling):
        """Whether a level's phase starts going: ``True``, a Python bool, since no step guard ends it."""
        return True

    def guarded_step(self, index, take, coupling, going):
        """Takes one smoothing step (``take()`` returns its work); returns the work and whether the phase goes on."""
        return take(), going

    def needs_fine_gradient(self):
        """Whether a descent needs ``grad H_l`` on the tau minibatches: for tau."""
        return self.scheme.tau_scale > 0

    def fine_gradient(self, index, received, coupling):
        """Before a descent: ``(work, grad H_l, R grad H_l)``, the gradient averaged over the tau minibatches
        (the fine half of tau), or ``(0, None, None)`` when nothing needs it.

        ``received`` is ``grad H_l`` on the level's first minibatch at its
        start; it is reused when the level took no pre-step and that minibatch
        is also the first tau minibatch.
        """
        if not self.needs_fine_gradient():
            return 0.0, None, None
        reuse = self.steps.pre[index] == 0 and self.layout.shared(index)
        gradients, work = [], 0.0
        for j, batch in enumerate(self.layout.tau[index]):
            if reuse and j == 0:
                gradients.append(received)
            else:
                gradients.append(self.objective_gradient(index, batch, coupling))
                work = work + self.levels.cost(index, batch)
        gradients = mean(gradients)
        return work, gradients, self.hierarchy[index].transfer.restrict_gradient(gradients)

    def descends(self, index, fine_gradients, restricted):
        """Whether the cycle goes down to level ``index + 1``: always (Python ``True``)."""
        return True

    def coarse_problem(self, index, restricted):
        """The coupling of level ``index + 1``, whose weights now are ``Pi x``: ``(work, shift, anchor)``.

        ``shift`` is ``-gamma tau`` (Ponce et al., 2022, eqs 3 and 35;
        ``None`` for ``gamma = 0``) and ``anchor`` the coarse objective's
        gradient at ``Pi x`` on the first tau minibatch (its first step takes it).
        """
        coarse, batches = index + 1, self.layout.tau[index]
        if self.scheme.tau_scale > 0:
            coarse_gradients = [self.levels.gradient(coarse, batch) for batch in batches]
            work = sum(self.levels.cost(coarse, batch) for batch in batches)
            gamma, tau = self.scheme.tau_scale, tau_correction(mean(coarse_gradients), restricted)
            shift = [-t for t in tau] if gamma == 1.0 else [-gamma * t for t in tau]
            return work, shift, add_coupling(coarse_gradients[0], shift)
        return self.levels.cost(coarse, batches[0]), None, self.levels.gradient(coarse, batches[0])

    def parent(self, index, fine_gradients):
        """What a step guard of level ``index + 1`` needs of level ``index``: nothing."""
        return None

    def accept(self, index, correction, coupling):
        """Adds the prolongated correction to level ``index`` if the safeguard (and, with
        ``correction_test``, the acceptance test ``H(x + P e) <= H(x)`` on the first tau minibatch)
        allows it; returns whether it did and the work."""
        variables = self.hierarchy[index].variables
        allowed = within_bound(correction, variables, self.scheme.correction_bound)
        if not self.scheme.correction_test:
            add_if(allowed, variables, correction)
            return allowed, 0.0
        batch = self.layout.tau[index][0]
        before = self.objective_value(index, batch, coupling)
        start = [tf.identity(variable) for variable in variables]
        assign(variables, [begin + value for begin, value in zip(start, correction)])
        after = self.objective_value(index, batch, coupling)
        accept = tf.logical_and(allowed, after <= before)
        assign(variables, [tf.where(accept, variable, begin) for variable, begin in zip(variables, start)])
        return accept, self.levels.cost(index, batch, 2 * FORWARD_COST)


HOOKS.append(CoarseCorrection)
