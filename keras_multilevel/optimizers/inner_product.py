"""Level inner products: a residual stack's weights as functions of time.

Jacob (2024, §3.2) puts level
``l``'s parameters in the Hilbert space ``V_l = (R^{n_l}, <.,.>_l)`` with
``<u, v>_l = h_l <u, v>`` and trains with the gradient in that inner product,
the vector ``grad_l F`` with ``<grad_l F, u>_l = F'(w) u``, that is
``grad_l F = grad F / h_l``. For a residual stack (Gaedke-Merzhäuser et al., 2021, eqs 3-8) the ``K``
blocks are samples ``theta_k = theta(t_k)`` of one function of time on
``[0, T]`` with step ``h = T / K``, and ``h sum_k <u_k, v_k>`` is the
``L^2(0, T)`` inner product of the piecewise-constant functions. In it:

* a gradient step moves ``theta(t)`` by the same amount whatever ``K`` is,
  whereas the Euclidean gradient of a block shrinks like ``h`` (each block
  does ``1/K`` of the work), so plain gradient descent on a 2,048-block stack
  barely moves its blocks;
* Tikhonov regularization is the integral ``beta int_0^T ||theta(t)||^2 dt
  = beta h sum_k ||theta_k||^2``, the same functional on every level.

Here the inner product is diagonal per trainable variable: weight ``h = T/K``
on a :class:`~keras_multilevel.layers.ResidualStack`'s kernel and bias, ``1``
on every other parameter (the opening map, the head, widths, stencils), which
is what Jacob's (2024, §3.2) ``h_l`` becomes when only the stacks change with the level.
``inner_product="euclidean"`` is Gaedke-Merzhäuser et al. (2021) taken literally: weight ``1``
everywhere and Tikhonov ``beta 2^i`` on level ``i`` (Gaedke-Merzhäuser et al., 2021, §4).

Gradient transfers are not affected: the cycle forms its coupling terms with
Euclidean gradients and ``R = P^T`` (the exact chain rule), and maps a
gradient to the level inner product only when a level optimizer takes a step
with it. Since ``h_c^{-1} P^T h_f = P^*`` (Jacob, 2024, §3.2.1: ``P^* = (h_l /
h_{l-1}) P^T``), first-order coherence (Gaedke-Merzhäuser et al., 2021, eq 9) then holds in the level
inner products as well.
"""

import tensorflow as tf

from keras_multilevel.hierarchy.depth import walk_layers
from keras_multilevel.layers.residual import ResidualStack

INNER_PRODUCTS = ("l2", "euclidean")


def check_inner_product(inner_product):
    """Returns ``inner_product`` if it is one of :data:`INNER_PRODUCTS`, else raises ``ValueError``."""
    if inner_product not in INNER_PRODUCTS:
        raise ValueError(
            f"`inner_product` must be 'l2' (residual-stack weights as functions of time, Jacob, 2024, §3.2) "
            f"or 'euclidean' (Gaedke-Merzhäuser et al. (2021) literally), got {inner_product!r}."
        )
    return inner_product


def inner_product_weights(model, inner_product="l2"):
    """The weight ``w_j`` of each trainable variable in ``<u, v> = sum_j w_j <u_j, v_j>``.

    Args:
        model: a built Keras model (one level of a hierarchy).
        inner_product: ``"l2"`` (``w = h = T / K`` on residual-stack weights,
            ``1`` elsewhere) or ``"euclidean"`` (``1`` everywhere).

    Returns:
        A list of floats, in the order of ``model.trainable_variables``.
    """
    check_inner_product(inner_product)
    step = {}
    if inner_product == "l2":
        for layer in walk_layers(model):
            if isinstance(layer, ResidualStack):
                for variable in layer.trainable_variables:
                    step[id(variable)] = layer.step_size
    return [step.get(id(variable), 1.0) for variable in model.trainable_variables]


def _times(weight, tensor):
    """``weight * tensor``, without an op in the graph for a weight of 1 (most variables' in every level)."""
    return tensor if weight == 1.0 else weight * tensor


def riesz(gradients, weights):
    """The gradient in the level inner product: ``grad_l F = grad F / w`` per variable (Jacob, 2024, §3.2)."""
    return [_times(1.0 / w, g) for g, w in zip(gradients, weights)]


def tikhonov_weights(beta, weights, level_index, inner_product="l2"):
    """Per-variable Tikhonov weights ``beta_j`` of level ``level_index`` (0 = finest).

    ``"l2"``: ``beta w_j``, so that ``sum_j beta_j ||theta_j||^2`` is
    ``beta`` times the squared level norm (the time integral on a stack, the
    same functional on every level). ``"euclidean"``: ``beta 2^i`` on every
    variable (Gaedke-Merzhäuser et al., 2021, §4: ``beta 2^(L-l)``).
    """
    if inner_product == "euclidean":
        return [beta * 2.0**level_index for _ in weights]
    return [beta * w for w in weights]


def float64_sum(tensors):
    """The sum of scalar tensors, each cast to float64 first (the level norms and the angle condition's products)."""
    return tf.add_n([tf.cast(tensor, tf.float64) for tensor in tensors])


def _weighted_norm(values, weights):
    """``sqrt(sum_j w_j ||v_j||^2)`` in float64 from the values up (two ops per variable: the cast and
    ``l2_loss``, ``||v||^2 / 2``). A NaN or Inf anywhere in ``values`` makes it non-finite, and so does a
    float64 value beyond about ``1e154`` (its square overflows); float32 values never overflow it."""
    halves = [_times(w, tf.nn.l2_loss(tf.cast(v, tf.float64))) for v, w in zip(values, weights)]
    return tf.sqrt(2.0 * tf.add_n(halves))


def level_norm(values, weights):
    """``||v||_l = sqrt(sum_j w_j ||v_j||^2)`` (Jacob, 2024, §3.2: ``||.||_l = sqrt(h_l) ||.||``), in float64."""
    return _weighted_norm(values, weights)


def gradient_norm(gradients, weights):
    """``||grad_l F||_l`` of the Euclidean gradient ``grad F``: ``sqrt(sum_j ||g_j||^2 / w_j)``, in float64."""
    return _weighted_norm(gradients, [1.0 / w for w in weights])
