"""The level-dependent objective ``H_l`` of paper 000 eq 9 and its gradient.

On level ``l`` the level optimizer minimizes

    H_l(theta) = L_l(theta) + beta_l ||theta||^2 + <delta g_l, theta>,

the model's compiled loss on the mini-batch, Tikhonov regularization
(000 §4, ``beta_l = beta 2^(L-l)``) and the coupling term with

    delta g_l = R grad H_{l+1}(theta_{l+1}) - grad (L_l + beta_l ||.||^2)(theta_{l,0}),

so that ``grad H_l(theta_{l,0}) = R grad H_{l+1}`` (first-order coherence).
In 002's FAS notation ``delta g_l = -gamma tau`` (:func:`tau_correction`).
On the finest level, and with ``gamma = 0`` (the MLSGD variant without
gradient correction, 001 §3), ``delta g = 0``.
"""

import tensorflow as tf


def level_gradient(model, data, regularization=0.0):
    """Returns ``(loss, y_pred, grad (L_l + beta_l ||.||^2))`` on ``model`` for one mini-batch.

    Args:
        model: a compiled Keras model (one level of the hierarchy).
        data: ``(x, y, sample_weight)``.
        regularization: the Tikhonov weight ``beta_l`` of this level.

    ``loss`` is what Keras reports (the compiled loss plus ``model.losses``),
    without the Tikhonov term, which only shifts the gradient.
    """
    x, y, sample_weight = data
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        y_pred = model(x, training=True)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
    gradients = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if regularization:
        gradients = [g + (2.0 * regularization) * v for g, v in zip(gradients, variables)]
    return loss, y_pred, gradients


def add_coupling(gradients, coupling):
    """``grad H_l = grad (L_l + beta_l ||.||^2) + delta g_l`` (000 eq 9); ``coupling=None`` means ``delta g = 0``."""
    if coupling is None:
        return gradients
    return [g + d for g, d in zip(gradients, coupling)]


def tau_correction(coarse_gradient, restricted_gradient):
    """``tau = grad g_c(Pi x) - R grad g(x)`` (002 eq 3; the minibatch mean of eq 35).

    The coarse objective ``g_c(x_c) - gamma x_c^T tau`` then has gradient
    ``R grad g(x)`` at ``Pi x`` when ``gamma = 1``; 000 eq 9's coupling term
    is ``delta g = -tau``.
    """
    return [c - r for c, r in zip(coarse_gradient, restricted_gradient)]


def level_regularization(beta, level_index):
    """Tikhonov weight on level ``i`` (0 = finest): ``beta 2^i`` (000 §4, ``2^(L-l)``)."""
    return beta * 2.0**level_index
