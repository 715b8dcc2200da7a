"""Dynamic loss scaling of the level steps, for models under the ``mixed_float16`` policy.

In float16 small gradients underflow to zero. Keras' remedy is to
differentiate the loss times a large scale ``S`` and divide the gradient by
``S``; a gradient with an Inf or NaN (``S`` too large) skips the step and
halves ``S``, and ``S`` doubles after ``dynamic_growth_steps`` finite steps
(``keras.optimizers.LossScaleOptimizer``). ``model.compile`` wraps the
optimizer of a ``mixed_float16`` model in one, which cannot drive a V-cycle.
So a :class:`~keras_multilevel.MultilevelOptimizer` takes the wrapper's
settings and wraps each *level's* optimizer instead: every level has its own
scale (coarse networks have their own gradient magnitudes), every level step
is skipped on its own when its gradient is not finite, and the cycle's
coupling terms are formed from unscaled gradients.
"""

import keras

from keras_multilevel.optimizers.replicas import replica_share


def loss_scale(optimizer):
    """The current scale ``S`` of a level optimizer, or ``None`` if it does not scale its loss."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer.dynamic_scale
    return None


def apply_step(optimizer, gradients, variables):
    """One step of a level optimizer with unscaled ``gradients``.

    A loss-scaling optimizer expects the gradient of the scaled loss: it gets
    ``S g`` (exact, ``S`` is a power of two), divides it by ``S`` again,
    and skips the step (halving ``S``) if it is not finite. Under several
    replicas, ``gradients`` are the whole batch's and each replica passes its
    share, which the optimizer sums (:mod:`~keras_multilevel.optimizers.replicas`).
    """
    gradients = replica_share(gradients)
    scale = loss_scale(optimizer)
    if scale is not None:
        gradients = [g * scale for g in gradients]
    optimizer.apply(gradients, variables)


def wrap(optimizer, settings):
    """``optimizer`` wrapped in a ``LossScaleOptimizer`` with ``settings`` (``None``: unwrapped)."""
    if settings is None:
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer, **settings)


def settings_of(wrapper):
    """The constructor settings of a ``LossScaleOptimizer`` that :func:`wrap` passes on to each level."""
    return {"initial_scale": wrapper.initial_scale, "dynamic_growth_steps": wrapper.dynamic_growth_steps}
