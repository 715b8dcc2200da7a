"""MLSGD (Jacob, 2024, §3.2-3.3, Algorithms 4-5): its safeguards and variants as small pure functions, and
:class:`MLSGD`, the hooks that run them in the V-cycle.

Jacob (2024) runs the V-cycle of
:mod:`~keras_multilevel.optimizers.cycle` with three safeguards on the coarse
levels and compares gradient corrections with and without variance
reduction; the constants are the scheme's
(:class:`~keras_multilevel.optimizers.scheme.CycleScheme`), :class:`MLSGD`
calls these functions. Gradients are Euclidean lists, one tensor per trainable
variable; a level's inner product ``<u, v>_l = sum_j w_j <u_j, v_j>`` is
given by its per-variable weights ``w`` (:mod:`~keras_multilevel.optimizers.inner_product`),
in which the gradient is ``g / w`` (the Riesz map) and its norm the dual norm
``||g||_* = sqrt(sum_j ||g_j||^2 / w_j)``.
"""

import tensorflow as tf

from keras_multilevel.optimizers.cycle import assign
from keras_multilevel.optimizers.inner_product import float64_sum, gradient_norm, level_norm
from keras_multilevel.optimizers.mgopt import CoarseCorrection
from keras_multilevel.optimizers.objective import add_coupling


def descends(gradient, restricted_gradient, weights, coarse_weights, ratio, tolerance):
    """The recursion test of Jacob (2024, eqs 3.4-3.5): whether the cycle goes down to the coarser level.

    ``gradient`` is ``grad H_l`` at the level's iterate and
    ``restricted_gradient`` its restriction ``R grad H_l = P^T grad H_l``.
    Since ``P* = (h_l / h_{l-1}) P^T`` (Jacob, 2024, §3.2.1), ``P* grad_l H_l`` is the
    coarse level's Riesz map of ``R grad H_l``, so
    ``||P* grad_l H_l||_{l-1} = ||R grad H_l||_*`` in the coarse weights. Returns
    ``||P* grad_l H_l||_{l-1} >= eta ||grad_l H_l||_l`` and ``>= epsilon``, a
    boolean tensor. RMTR's recursion condition is the same test with
    ``kappa_g`` and ``epsilon_g`` (:mod:`~keras_multilevel.optimizers.trust_region`).
    """
    coarse = gradient_norm(restricted_gradient, coarse_weights)
    return tf.logical_and(coarse >= ratio * gradient_norm(gradient, weights), coarse >= tolerance)


def angle_holds(gradient, step, weights, threshold):
    """The angle condition of Jacob (2024, eq 3.3): ``-<grad H, s> >= mu ||grad H|| ||s||``, a boolean tensor.

    ``gradient`` is the Euclidean gradient of the level above at the point
    the coarse level started from and ``step`` the prolongated coarse
    displacement ``P (x_c - Pi x)``, both on the level above, whose inner
    product gives the norms; ``<grad_l H, s>_l`` is the Euclidean
    ``<grad H, s>`` in any level inner product. A zero step passes.
    """
    descent = -float64_sum([tf.reduce_sum(g * s) for g, s in zip(gradient, step)])
    return descent >= threshold * gradient_norm(gradient, weights) * level_norm(step, weights)


def step_regularization_gradient(variables, start, weights, strength):
    """Euclidean gradient of ``lambda/2 ||x - x_0||_l^2`` (Jacob, 2024, eq 3.2, ``x_0 = Pi x``): ``lambda w_j (x_j - x_0j)``.

    In the level inner product it is ``lambda (x - x_0)``, the ``lambda (w* - w)``
    of Jacob (2024, §3.2.3), which pulls a coarse step back toward its start: the larger
    ``lambda``, the shorter the step.
    """
    return [(strength * w) * (v - s) for v, s, w in zip(variables, start, weights)]


def step_regularization_value(variables, start, weights, strength):
    """``lambda/2 ||x - x_0||_l^2`` itself (Jacob, 2024, eq 3.2)."""
    return 0.5 * strength * tf.square(level_norm([v - s for v, s in zip(variables, start)], weights))


def variance_reduced(gradient, snapshot_gradient, anchor):
    """The SVRG direction of Jacob (2024, §3.3.3) (Johnson & Zhang 2013): ``g(x, xi) - g(x_0, xi) + mu``.

    ``gradient`` and ``snapshot_gradient`` are the level objective's gradients
    on the same minibatch ``xi`` at the iterate and at the snapshot ``x_0``
    (the level's start point ``Pi x``); ``anchor`` ``mu`` is the level
    objective's gradient at ``x_0`` as the correction formed it (with the
    deterministic correction the full one, ``R grad F(x)``, Jacob, 2024, §3.3.3; with the
    stochastic one its estimate on the tau minibatches, §3.3.5).
    """
    return [g - s + a for g, s, a in zip(gradient, snapshot_gradient, anchor)]


class MLSGD(CoarseCorrection):
    """The hooks of MLSGD's V-cycle (Jacob, 2024, Algorithms 4-5): MG/OPT's, plus its safeguards and variants.

    Each is switched on by a constant of the scheme
    (:class:`~keras_multilevel.optimizers.scheme.CycleScheme`):

    * ``recursion_ratio`` / ``recursion_tolerance``: the recursion test
      (:func:`descends`, eqs 3.4-3.5) before each descent, a ``tf.cond``;
    * ``step_regularization``: ``lambda/2 ||x_c - Pi x||_c^2`` in a coarse
      level's objective (eq 3.2);
    * ``variance_reduction``: coarse steps in the SVRG direction
      (:func:`variance_reduced`, §3.3.3);
    * ``angle_threshold``: after each coarse step the angle condition
      (:func:`angle_holds`, eq 3.3), whose first failure undoes the step and
      ends that level's phase (Algorithm 5).

    With ``gradient_correction="none"`` (``tau_scale = 0``, the variant
    §4.2.3 found best) the coarse problem has no coupling term.
    """

    @classmethod
    def applies(cls, scheme):
        """Whether ``scheme`` switches on one of MLSGD's safeguards or variants."""
        return not scheme.trust_region and (
            scheme.counts_stops or scheme.step_regularization > 0 or scheme.variance_reduction
        )

    def _step_regularized(self, coupling):
        return coupling is not None and self.scheme.step_regularization > 0

    def objective_gradient(self, index, batch, coupling):
        """``grad H_l``, on a coarse level with the step regularization's term (eq 3.2)."""
        gradients = super().objective_gradient(index, batch, coupling)
        if not self._step_regularized(coupling):
            return gradients
        level = self.hierarchy[index]
        return add_coupling(gradients, step_regularization_gradient(
            level.variables, coupling.start, level.inner_product, self.scheme.step_regularization))

    def objective_value(self, index, batch, coupling):
        """``H_l``, on a coarse level with the step regularization (eq 3.2)."""
        value = super().objective_value(index, batch, coupling)
        if not self._step_regularized(coupling):
            return value
        level = self.hierarchy[index]
        regularized = step_regularization_value(level.variables, coupling.start, level.inner_product,
                                                self.scheme.step_regularization)
        return value + tf.cast(regularized, value.dtype)

    def direction(self, index, batch, coupling):
        """``grad H_l``, or on a coarse level with ``variance_reduction`` its SVRG version (§3.3.3), which
        costs a second gradient, at the level's start point ``Pi x``."""
        gradients = self.objective_gradient(index, batch, coupling)
        if coupling is None or not self.scheme.variance_reduction:
            return gradients, self.levels.cost(index, batch)
        variables = self.hierarchy[index].variables
        current = [tf.identity(variable) for variable in variables]
        assign(variables, coupling.start)
        snapshot = add_coupling(self.levels.gradient(index, batch), coupling.shift)
        with tf.control_dependencies(snapshot):
            assign(variables, current)
        return variance_reduced(gradients, snapshot, coupling.anchor), self.levels.cost(index, batch, 2.0)

    @staticmethod
    def _guarded(coupling):
        return coupling is not None and coupling.parent is not None

    def phase(self, coupling):
        """A coarse level under the angle condition starts its phase going, as a tensor the graph updates."""
        return tf.constant(True) if self._guarded(coupling) else True

    def guarded_step(self, index, take, coupling, going):
        """One smoothing step; under the angle condition it is taken only while the phase goes on, and undone,
        ending the phase, when its prolongated displacement fails eq 3.3 (Algorithm 5)."""
        if not self._guarded(coupling):
            return take(), going
        variables = self.hierarchy[index].variables

        def checked():
            before = [tf.identity(variable) for variable in variables]
            spent = take()
            gradient, weights, transfer = coupling.parent
            step = transfer.prolong([v - s for v, s in zip(variables, coupling.start)])
            ok = angle_holds(gradient, step, weights, self.scheme.angle_threshold)
            assign(variables, [tf.where(ok, variable, begin) for variable, begin in zip(variables, before)])
            return tf.cast(spent, tf.float64), ok

        return tf.cond(going, checked, lambda: (tf.constant(0.0, tf.float64), tf.constant(False)))

    def needs_fine_gradient(self):
        """For tau, and for the recursion test and the angle condition, which measure ``grad H_l``."""
        return super().needs_fine_gradient() or self.scheme.counts_stops

    def descends(self, index, fine_gradients, restricted):
        """The recursion test (eqs 3.4-3.5) as a boolean tensor, or ``True`` without one."""
        if not self.scheme.recursion_test:
            return True
        return descends(fine_gradients, restricted, self.hierarchy[index].inner_product,
                        self.hierarchy[index + 1].inner_product, self.scheme.recursion_ratio,
                        self.scheme.recursion_tolerance)

    def parent(self, index, fine_gradients):
        """Under the angle condition: ``(grad H_l, inner product weights, transfer)`` of level ``index``."""
        if self.scheme.angle_threshold is None:
            return None
        level = self.hierarchy[index]
        return fine_gradients, level.inner_product, level.transfer
