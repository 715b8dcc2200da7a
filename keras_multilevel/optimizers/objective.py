"""The level-dependent objective ``H_l`` of Gaedke-Merzhäuser et al. (2021, eq 9) and its gradient.

On level ``l`` the level optimizer minimizes

    H_l(theta) = L_l(theta) + sum_j beta_lj ||theta_j||^2 + <delta g_l, theta>,

the model's compiled loss on the mini-batch, Tikhonov regularization with a
weight per variable (Gaedke-Merzhäuser et al.'s (2021, §4) ``beta 2^(L-l)``, or ``beta`` times the level
inner product's weight: see :mod:`~keras_multilevel.optimizers.inner_product`)
and the coupling term with

    delta g_l = R grad H_{l+1}(theta_{l+1}) - grad (L_l + beta_l ||.||^2)(theta_{l,0}),

so that ``grad H_l(theta_{l,0}) = R grad H_{l+1}`` (first-order coherence).
In Ponce et al.'s (2022) FAS notation ``delta g_l = -gamma tau`` (:func:`tau_correction`).
On the finest level, and with ``gamma = 0`` (the MLSGD variant without
gradient correction, Jacob, 2024, §3), ``delta g = 0``.
"""

import tensorflow as tf

from keras_multilevel.optimizers.replicas import sum_over_replicas
from keras_multilevel.optimizers.traces import substituted


def per_variable(regularization, variables):
    """One Tikhonov weight per variable from one number or a list."""
    return regularization if isinstance(regularization, (list, tuple)) else [regularization] * len(variables)


def _loss(model, data):
    """The loss Keras reports for one mini-batch (compiled loss plus ``model.losses``) and the prediction."""
    x, y, sample_weight = data
    y_pred = model(x, training=True)
    return model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight), y_pred


def loss_value(model, data, values=None):
    """The loss Keras reports for one mini-batch, with the weights ``values`` (``None``: the model's own).

    ``values`` stand in for ``model.trainable_variables`` and may have other
    sizes (:func:`~keras_multilevel.optimizers.traces.substituted`): one
    traced function then evaluates every level of a depth hierarchy.
    """
    with substituted(model.trainable_variables, values):
        return _loss(model, data)[0]


def loss_gradient(model, data, loss_scale=None, values=None):
    """``(loss, y_pred, grad L)`` of ``model`` on one mini-batch: the model's loss and its Euclidean gradient.

    With ``values`` (weights standing in for ``model.trainable_variables``,
    see :func:`loss_value`) the gradient is taken with respect to them. This
    is the part of :func:`level_gradient` that a compiled V-cycle traces
    (:mod:`~keras_multilevel.optimizers.traces`); the sum over replicas and
    the Tikhonov term (:func:`tikhonov`) are added outside it.
    """
    variables = model.trainable_variables
    sources = variables if values is None else list(values)
    with tf.GradientTape() as tape:
        if values is not None:
            tape.watch(sources)
        with substituted(variables, values):
            loss, y_pred = _loss(model, data)
        scaled = loss if loss_scale is None else loss * tf.cast(loss_scale, loss.dtype)
    gradients = tape.gradient(scaled, sources, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if loss_scale is not None:
        gradients = [g / tf.cast(loss_scale, g.dtype) for g in gradients]
    return loss, y_pred, gradients


def tikhonov(gradients, variables, regularization=0.0):
    """``grad (L_l + sum_j beta_j ||theta_j||^2)`` from ``grad L_l``: adds ``2 beta_j theta_j`` (Gaedke-Merzhäuser et al., 2021, §4)."""
    return [
        g + (2.0 * beta) * v if beta else g for g, v, beta in zip(gradients, variables, per_variable(regularization, variables))
    ]


def level_gradient(model, data, regularization=0.0, loss_scale=None):
    """Returns ``(loss, y_pred, grad (L_l + sum_j beta_j ||theta_j||^2))`` on ``model`` for one mini-batch.

    The gradient is the Euclidean one (the exact chain rule, which the
    transfers' ``R = P^T`` assumes); a level optimizer takes its step with
    :func:`~keras_multilevel.optimizers.inner_product.riesz` of it.

    Args:
        model: a compiled Keras model (one level of the hierarchy).
        data: ``(x, y, sample_weight)``.
        regularization: the Tikhonov weight of this level: one number for
            every variable, or one per trainable variable.
        loss_scale: ``None``, or the scale ``S`` of a ``mixed_float16``
            level (:mod:`~keras_multilevel.optimizers.loss_scale`): the
            gradient of ``S L_l`` is taken, so that small float16 gradients do
            not underflow, and divided by ``S``.

    ``loss`` is what Keras reports (the compiled loss plus ``model.losses``),
    without the Tikhonov term, which only shifts the gradient. Under a
    strategy with several replicas, loss and gradient are those of the whole
    batch, the same on every replica (:mod:`~keras_multilevel.optimizers.replicas`);
    ``y_pred`` is the replica's own.
    """
    loss, y_pred, gradients = loss_gradient(model, data, loss_scale)
    loss, *gradients = sum_over_replicas([loss, *gradients])
    return loss, y_pred, tikhonov(gradients, model.trainable_variables, regularization)


def level_objective(loss, variables, shift=None, regularization=0.0):
    """``H_l(theta)`` itself (Gaedke-Merzhäuser et al., 2021, eq 9) from one replica's ``loss`` (:func:`loss_value`): loss, Tikhonov
    and coupling terms, no gradient.

    What the cycle's acceptance test compares before and after a coarse
    correction. ``shift`` is the coupling ``delta g_l`` (``None`` on the
    finest level); ``regularization`` as for :func:`level_gradient`.
    """
    (value,) = sum_over_replicas([loss])
    return value + tf.cast(penalty(variables, shift, regularization), value.dtype)


def penalty(variables, shift=None, regularization=0.0):
    """The Tikhonov and coupling terms of ``H_l`` (Gaedke-Merzhäuser et al., 2021, eq 9) at ``variables``: ``H_l`` minus the loss."""
    terms = [beta * tf.reduce_sum(tf.square(v)) for v, beta in zip(variables, per_variable(regularization, variables)) if beta]
    if shift is not None:
        terms += [tf.reduce_sum(d * v) for d, v in zip(shift, variables)]
    return tf.add_n([tf.constant(0.0, variables[0].dtype), *[tf.cast(term, variables[0].dtype) for term in terms]])


def add_coupling(gradients, coupling):
    """``grad H_l = grad (L_l + beta_l ||.||^2) + delta g_l`` (Gaedke-Merzhäuser et al., 2021, eq 9); ``coupling=None`` means ``delta g = 0``."""
    if coupling is None:
        return gradients
    return [g + d for g, d in zip(gradients, coupling)]


def tau_correction(coarse_gradient, restricted_gradient):
    """``tau = grad g_c(Pi x) - R grad g(x)`` (Ponce et al., 2022, eq 3; the minibatch mean of eq 35).

    The coarse objective ``g_c(x_c) - gamma x_c^T tau`` then has gradient
    ``R grad g(x)`` at ``Pi x`` when ``gamma = 1``; Gaedke-Merzhäuser et al.'s (2021, eq 9) coupling term
    is ``delta g = -tau``.
    """
    return [c - r for c, r in zip(coarse_gradient, restricted_gradient)]
