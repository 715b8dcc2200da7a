"""The recursive multilevel trust-region method RMTR with L-SR1 models (Kopaničáková and Krause, 2023) as the V-cycle's level step.

Kopaničáková and Krause (2023) (written from its abstract; its
full text was not reachable here) is a variant of RMTR (Gratton, Sartenaer &
Toint, SIAM J. Optim. 19, 2008), which this module follows in its standard
form, with Kopaničáková and Krause's (2023) L-SR1 curvature on every level
(:mod:`~keras_multilevel.optimizers.lsr1`):

* Every level ``i`` has a trust region of radius ``Delta_i`` in its own norm,
  the level inner product of :mod:`~keras_multilevel.optimizers.inner_product`
  (``||u||_i^2 = sum_j w_j ||u_j||^2``; the L-SR1 pairs and the subproblem
  live in the coordinates ``sqrt(w) u``, where that norm is Euclidean).
* A *Taylor step* (a level step of the cycle) minimizes the quadratic model
  ``g^T p + p^T B p / 2`` exactly within the available radius, evaluates the
  level objective and gradient at ``x + p`` (one gradient, which is also the
  next step's), accepts the step if ``rho = (H(x) - H(x + p)) / (m(0) - m(p))
  >= eta_1``, updates the radius (``Delta <- shrink Delta`` if ``rho < eta_1``,
  ``min(grow Delta, max_radius)`` if ``rho >= eta_2``, else unchanged) and
  offers ``(p, grad H(x + p) - grad H(x))`` to the L-SR1 memory (rejected
  steps too: SR1 learns from them). The pairs are kept per level, from the
  level's own steps (and, on a level above the coarsest, its recursive steps).
* The coarse model is the coarse objective with the first-order coherence
  term, ``H_c(x_c) = L_c(x_c) - x_c^T tau`` with ``tau = grad L_c(Pi x) - R
  grad H(x)`` (:mod:`~keras_multilevel.optimizers.objective`, ``gamma = 1``).
* Recursion condition (Gratton et al. §2): the coarse level is used only
  if ``||R g||_{c*} >= kappa_g ||g||_*`` and ``||R g||_{c*} >= epsilon_g``
  (dual level norms): MLSGD's recursion test, Jacob (2024, eqs 3.4-3.5)
  (:func:`~keras_multilevel.optimizers.mlsgd.descends`). If it fails, the coarse phase gets a zero radius: it is
  still evaluated (the cycle is one traced graph), moves nothing, and the fine
  radius is left alone.
* Radius coupling (Gratton et al. Algorithm RMTR): on entry the coarse radius
  is ``min(Delta_c^start, Delta_avail)``, where ``Delta_avail`` is what the
  finer level has left at that moment, and every coarse iterate stays within
  ``Delta_avail`` of ``Pi x`` in the coarse norm: each coarse step uses
  ``min(Delta_c, Delta_avail - ||x_c - Pi x||_c)``. For depth coarsening with
  the ``"l2"`` inner product ``||P e||_f = ||e||_c`` (constant interpolation
  copies each coarse block into two blocks of half the step) or ``<=`` (linear
  interpolation averages), so the prolongated step stays in the fine trust
  region. For other transfers it may not: a prolongated step longer than the
  fine level's available radius is scaled back to it, and its predicted
  reduction with it (linearly; a documented approximation of the coarse
  model's decrease along the shorter step).
* The recursive step ``P e`` is accepted by the same ratio test on the finer
  level, with the coarse model's decrease ``H_c(Pi x) - H_c(x_c)`` as the
  predicted reduction, and updates the finer level's radius (unless the
  coarse phase was skipped or decreased nothing: then there was no recursive
  step and the radius stays).

All levels of one cycle work on the cycle's one minibatch: the ratio test
compares values of one objective. With the whole training set as the batch
(``batch_size = len(x)``) the method is deterministic and the fine loss
decreases monotonically.
"""

import dataclasses
import math

import numpy as np
import tensorflow as tf

from keras_multilevel.optimizers import lsr1
from keras_multilevel.optimizers.mlsgd import descends
from keras_multilevel.hierarchy.hierarchy import prolongated_correction, restrict_level
from keras_multilevel.optimizers.objective import loss_gradient, penalty, tau_correction, tikhonov
from keras_multilevel.optimizers.replicas import sum_over_replicas
from keras_multilevel.optimizers.traces import level_functions


@dataclasses.dataclass(frozen=True)
class TrustRegion:
    """The constants of RMTR (Gratton et al. 2008 §2-3) with L-SR1 models (Kopaničáková and Krause, 2023).

    Attributes:
        radius: ``Delta^s``, the initial radius of every level (the finest
            level's before its first cycle; a coarse level's at each entry).
        max_radius: the largest radius.
        memory: ``m``, the secant pairs each level keeps.
        eta_1: a step is accepted if ``rho >= eta_1`` (else the radius shrinks).
        eta_2: ``rho >= eta_2`` is very successful: the radius grows.
        shrink: ``gamma_1 in (0, 1)``, the radius factor after a rejected step.
        grow: ``gamma_2 >= 1``, the radius factor after a very successful step.
        kappa_g: the recursion condition's ``||R g|| >= kappa_g ||g||``.
        epsilon_g: and ``||R g|| >= epsilon_g``.
    """

    radius: float = 0.5
    max_radius: float = 4.0
    memory: int = 3
    eta_1: float = 0.1
    eta_2: float = 0.75
    shrink: float = 0.5
    grow: float = 2.0
    kappa_g: float = 0.1
    epsilon_g: float = 1e-6

    @classmethod
    def create(cls, value=None):
        """``None`` (the defaults), a dict of constants (``get_config``), or a :class:`TrustRegion`."""
        if value is None:
            return cls()
        if isinstance(value, TrustRegion):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"`trust_region` must be None, a dict of RMTR constants or a TrustRegion, got {value!r}.")
        unknown = sorted(set(value) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(
                f"Unknown trust-region constants {unknown}: choose from {[f.name for f in dataclasses.fields(cls)]}."
            )
        return cls(**value)

    def __post_init__(self):
        def number(name, ok, meaning):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not ok(value):
                raise ValueError(f"Trust-region `{name}` must be {meaning}, got {value!r}.")

        number("radius", lambda v: 0 < v < math.inf, "a finite number > 0")
        number("max_radius", lambda v: self.radius <= v < math.inf, "a finite number >= radius")
        number("eta_1", lambda v: 0 < v < 1, "in (0, 1)")
        number("eta_2", lambda v: self.eta_1 <= v < 1, "in [eta_1, 1)")
        number("shrink", lambda v: 0 < v < 1, "in (0, 1)")
        number("grow", lambda v: 1 <= v < math.inf, "a finite number >= 1")
        number("kappa_g", lambda v: 0 <= v <= 1, "in [0, 1]")
        number("epsilon_g", lambda v: 0 <= v < math.inf, "a number >= 0")
        if isinstance(self.memory, bool) or not isinstance(self.memory, (int, np.integer)) or self.memory < 1:
            raise ValueError(f"Trust-region `memory` (L-SR1 pairs) must be an integer >= 1, got {self.memory!r}.")

    def get_config(self):
        return dataclasses.asdict(self)


def ratio(actual, predicted):
    """``rho = actual / predicted`` reduction; ``-inf`` unless both are finite and ``predicted > 0``."""
    ok = tf.math.is_finite(actual) & tf.math.is_finite(predicted) & (predicted > 0)
    return tf.where(ok, actual / tf.where(ok, predicted, tf.ones_like(predicted)), tf.constant(-np.inf, tf.float64))


def updated_radius(radius, rho, constants):
    """The radius after a step with ratio ``rho`` (Gratton et al. §2; N&W Algorithm 4.1)."""
    grown = tf.minimum(constants.grow * radius, constants.max_radius)
    return tf.where(rho < constants.eta_1, constants.shrink * radius, tf.where(rho >= constants.eta_2, grown, radius))


def value_and_gradient(model, data, regularization, evaluated=None):
    """``(H_l, grad H_l, loss, y_pred)`` without the coupling term, ``H_l`` in float64 (one gradient evaluation).

    The loss and prediction are what Keras reports (the cycle's start reports them). ``evaluated``:
    the model's :func:`~keras_multilevel.optimizers.objective.loss_gradient` on ``data`` when the
    caller has it (the cycle's traced evaluation), else it is computed here.
    """
    loss, y_pred, gradients = loss_gradient(model, data) if evaluated is None else evaluated
    loss, *gradients = sum_over_replicas([loss, *gradients])
    gradients = tikhonov(gradients, model.trainable_variables, regularization)
    value = tf.cast(loss, tf.float64) + tf.cast(penalty(model.trainable_variables, None, regularization), tf.float64)
    return value, gradients, loss, y_pred


def couple(current, variables, shift):
    """``(H_l, grad H_l)`` with the coupling term ``<shift, x>`` added (``shift=None``: none)."""
    if shift is None:
        return current
    value, gradients = current
    return value + tf.cast(penalty(variables, shift), tf.float64), [g + d for g, d in zip(gradients, shift)]


class LevelTrustRegion:
    """One level's trust-region state: radius, the bound its parent sets, and its L-SR1 memory."""

    def __init__(self, level, weights, constants, make_variable, name):
        self.variables, self.weights = level.variables, weights
        self.constants = constants
        self.radius = make_variable((), "float64", f"{name}_radius")
        self.radius.assign(constants.radius)
        # On a coarse level: how far its iterates may go from `start` (Delta_avail).
        self.bound = make_variable((), "float64", f"{name}_bound")
        self.bound.assign(np.inf)
        self.start = make_variable((level.parameters,), "float64", f"{name}_start")
        self.memory = lsr1.SecantMemory(level.parameters, constants.memory, make_variable, name=f"{name}_lsr1")
        with tf.init_scope():  # one tensor, captured by the train step, not a constant per use
            self.scale = tf.constant(
                np.concatenate([np.full(int(np.prod(v.shape)), math.sqrt(w)) for v, w in zip(self.variables, weights)])
            )

    def point(self):
        """The iterate in level coordinates ``sqrt(w) x`` (where the level norm is Euclidean)."""
        return lsr1.flatten(self.variables) * self.scale

    def moved(self, step):
        """The variables' values moved by ``step`` (in level coordinates)."""
        return [v + d for v, d in zip(self.variables, lsr1.unflatten(step / self.scale, self.variables))]

    def dual(self, gradients):
        """A gradient in level coordinates: ``g / sqrt(w)`` (its norm is the dual level norm)."""
        return lsr1.flatten(gradients) / self.scale

    def available(self, point):
        """``min(Delta, Delta_avail - ||x - x_start||)``: the radius a step may use now (>= 0)."""
        left = self.bound - tf.norm(point - self.start)
        return tf.maximum(tf.minimum(self.radius, tf.where(tf.math.is_inf(self.bound), self.radius, left)), 0.0)

    def step(self, current, evaluate):
        """One Taylor step: returns ``(H, grad H)`` at the new iterate (the old one if rejected)."""
        value, gradients = current
        x, g = self.point(), self.dual(gradients)
        psi, m, gamma = self.memory.compact()
        p, _ = lsr1.subproblem(g, psi, m, gamma, self.available(x))
        predicted = lsr1.model_decrease(g, p, psi, m, gamma)
        return self.try_step(current, p, predicted, evaluate)

    def try_step(self, current, p, predicted, evaluate, update_radius=True):
        """Evaluates ``x + p`` (``p`` in level coordinates), takes it if ``rho >= eta_1``, updates the memory and,
        if ``update_radius``, the radius."""
        value, gradients = current
        start = [tf.identity(v) for v in self.variables]
        trial = self.moved(p)
        _assign(self.variables, trial)
        trial_value, trial_gradients = evaluate()
        rho = ratio(value - trial_value, predicted)
        accept = rho >= self.constants.eta_1
        self.memory.update(p, self.dual(trial_gradients) - self.dual(gradients))
        self.radius.assign(tf.where(update_radius, updated_radius(self.radius, rho, self.constants), self.radius))
        _assign(self.variables, [tf.where(accept, new, old) for new, old in zip(trial, start)])
        return (
            tf.where(accept, trial_value, value),
            [tf.where(accept, new, old) for new, old in zip(trial_gradients, gradients)],
        )


def _loss_and_gradient(model, values, data):
    """``(loss, y_pred, grad L)`` of a level on one minibatch: what a Taylor step evaluates (its ratio needs the value)."""
    return loss_gradient(model, data, None, values)


def _assign(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


class RecursiveTrustRegion:
    """RMTR's level steps, recursion condition and recursive-step acceptance, as hooks of the V-cycle.

    :meth:`cycle` walks the levels as :func:`~keras_multilevel.optimizers.cycle.v_cycle`
    does and calls :meth:`steps` for its level steps, :meth:`descend` after
    restricting to a coarse level and :meth:`correct` with the prolongated
    correction; a level's "current" state is ``(H, grad H)`` at its iterate
    on the cycle's minibatch.
    """

    def __init__(self, hierarchy, constants, make_variable):
        self.constants = constants
        self.hierarchy = hierarchy
        self.levels = [
            LevelTrustRegion(level, level.inner_product, constants, make_variable, f"rmtr_{index}")
            for index, level in enumerate(hierarchy)
        ]

    def cycle(self, steps, layout, data):
        """One RMTR V-cycle on the cycle's minibatch; returns the finest level's ``(loss, y_pred)`` before it.

        The walk of :func:`~keras_multilevel.optimizers.cycle.v_cycle` with
        this scheme's hooks: on each level the pre-steps (:meth:`steps`), the
        restriction ``Pi x`` and the first-order coherent coarse model
        (``tau`` from the level's gradient, ``gamma = 1``), the recursion
        condition and coarse radius (:meth:`descend`), the coarse cycle, the
        recursive step accepted by its ratio (:meth:`correct`) and the
        post-steps. ``data``: each level's minibatches (finest first, as from
        :func:`~keras_multilevel.optimizers.cycle.level_data`); ``layout``
        says which is the cycle's one minibatch.
        """
        hierarchy = self.hierarchy
        evaluated = level_functions(hierarchy, _loss_and_gradient)

        def evaluate(index, batch):
            return value_and_gradient(hierarchy[index].model, data[index][batch], hierarchy[index].regularization,
                                      evaluated[index](data[index][batch]))

        def coupled(index, batch, shift):
            """``() -> (H, grad H)`` of level ``index`` on ``batch`` at its current iterate."""
            return lambda: couple(evaluate(index, batch)[:2], hierarchy[index].variables, shift)

        def walk(index, current, shift):
            """Steps 1-6 of the cycle from ``current``, ``(H, grad H)`` of level ``index`` at its iterate;
            returns them at the level's last iterate."""
            own = coupled(index, layout.smoothing[index][0], shift)
            if index == len(hierarchy) - 1:
                return self.steps(index, steps.coarsest, current, own)
            level, coarse = hierarchy[index], hierarchy[index + 1]
            current = self.steps(index, steps.pre[index], current, own)
            start = restrict_level(level, coarse)
            batch = layout.tau[index][0]
            restricted = level.transfer.restrict_gradient(current[1])
            coarse_value, coarse_gradient, _, _ = evaluate(index + 1, batch)
            coarse_shift = [-t for t in tau_correction(coarse_gradient, restricted)]
            coarse_start = couple((coarse_value, coarse_gradient), coarse.variables, coarse_shift)
            recurse = self.descend(index, current[1], restricted)
            coarse_end = walk(index + 1, coarse_start, coarse_shift)
            correction = prolongated_correction(level.transfer, coarse.variables, start)
            current = self.correct(
                index, correction, current, coarse_start[0] - coarse_end[0], recurse, coupled(index, batch, shift)
            )
            return self.steps(index, steps.post[index], current, own)

        value, initial, loss, y_pred = evaluate(0, layout.smoothing[0][0])
        walk(0, (value, initial), None)
        return loss, y_pred

    def steps(self, index, count, current, evaluate):
        """``count`` Taylor steps on level ``index`` from ``current``; returns the last ``(H, grad H)``."""
        for _ in range(count):
            current = self.levels[index].step(current, evaluate)
        return current

    def descend(self, index, gradients, coarse_gradients):
        """Before level ``index + 1`` minimizes: the recursion condition and the coarse radius and bound.

        ``gradients``: ``grad H`` on level ``index``; ``coarse_gradients``:
        ``R grad H``. Returns whether the condition holds.
        """
        fine, coarse = self.levels[index], self.levels[index + 1]
        recurse = descends(gradients, coarse_gradients, fine.weights, coarse.weights, self.constants.kappa_g,
                           self.constants.epsilon_g)
        available = fine.available(fine.point())
        coarse.bound.assign(tf.where(recurse, available, tf.zeros_like(available)))
        coarse.start.assign(coarse.point())
        coarse.radius.assign(tf.minimum(coarse.bound, self.constants.radius))
        return recurse

    def correct(self, index, correction, current, predicted, recurse, evaluate):
        """The recursive step ``x + P e`` of level ``index``, accepted by the ratio test; returns the new current."""
        level = self.levels[index]
        step = lsr1.flatten(correction) * level.scale
        length, available = tf.norm(step), level.available(level.point())
        shorten = tf.where(length > available, available / tf.maximum(length, 1e-300), tf.ones_like(length))
        finite = tf.reduce_all(tf.math.is_finite(step))
        step = tf.where(finite, shorten * step, tf.zeros_like(step))
        predicted = tf.where(recurse & finite, shorten * predicted, tf.zeros_like(predicted))
        # A coarse phase that was skipped or found no decrease is no recursive step: the radius stays.
        return level.try_step(current, step, predicted, evaluate, update_radius=predicted > 0)
