"""MLSGD's safeguards and variants (Jacob, 2024, §3.2-3.3, Algorithms 4-5) as small pure functions.

Jacob (2024) runs the V-cycle of
:mod:`~keras_multilevel.optimizers.cycle` with three safeguards on the coarse
levels and compares gradient corrections with and without variance
reduction; the constants are the scheme's
(:class:`~keras_multilevel.optimizers.scheme.CycleScheme`), the cycle calls
these functions. Gradients are Euclidean lists, one tensor per trainable
variable; a level's inner product ``<u, v>_l = sum_j w_j <u_j, v_j>`` is
given by its per-variable weights ``w`` (:mod:`~keras_multilevel.optimizers.inner_product`),
in which the gradient is ``g / w`` (the Riesz map) and its norm the dual norm
``||g||_* = sqrt(sum_j ||g_j||^2 / w_j)``.
"""

import tensorflow as tf


def _sum(tensors):
    return tf.add_n([tf.cast(tensor, tf.float64) for tensor in tensors])


def level_norm(values, weights):
    """``||v||_l = sqrt(sum_j w_j ||v_j||^2)`` (Jacob, 2024, §3.2: ``||.||_l = sqrt(h_l) ||.||``)."""
    return tf.sqrt(_sum([w * tf.reduce_sum(tf.square(v)) for v, w in zip(values, weights)]))


def gradient_norm(gradients, weights):
    """``||grad_l F||_l`` of the Euclidean gradient ``grad F``: ``sqrt(sum_j ||g_j||^2 / w_j)``."""
    return tf.sqrt(_sum([tf.reduce_sum(tf.square(g)) / w for g, w in zip(gradients, weights)]))


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
    descent = -_sum([tf.reduce_sum(g * s) for g, s in zip(gradient, step)])
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
