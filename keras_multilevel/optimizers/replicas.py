"""Data-parallel V-cycles: every tensor of a cycle is the same on every replica.

Under a ``tf.distribute`` strategy with several replicas (``MirroredStrategy``)
Keras runs the train step once per replica, each on its share of the batch,
and divides each replica's loss by the number of replicas (Keras'
``scale_loss_for_distribution``), so that the *sum* over replicas of their
gradients is the gradient of the whole batch; a Keras optimizer's ``apply``
sums the gradients it is given across replicas before it steps.

A V-cycle does more with its gradients than step: it forms tau-corrections,
compares objectives before and after a coarse correction, and (in later
schemes) takes decisions on gradient norms. Each of those must be the same on
every replica, or the replicas' copies of the weights drift apart. So the
cycle works with the gradient and loss of the *whole* batch, summed over the
replicas as soon as they are computed (:func:`sum_over_replicas`), and hands a
level optimizer ``1 / replicas`` of each gradient (:func:`replica_share`),
which its ``apply`` sums back to the whole. Then every value the cycle
computes, and every variable it assigns, is identical on all replicas, and
training matches one device on the same global batch (when every replica's
share has the same number of rows, as Keras' mean of replica losses assumes).

With one replica (no strategy, or ``OneDeviceStrategy``) both are the identity.

A sum over replicas cannot sit inside a ``tf.cond`` branch (TensorFlow's
limit on synchronization points), so what decides in the graph which
gradients to compute is refused under several replicas
(:func:`refuse_decisions`).
"""

import tensorflow as tf


def _replicas():
    """The replica context of a multi-replica step, or ``None``."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def several_replicas():
    """Whether the code runs in one replica of a step that several replicas run.

    Then a sum over replicas is a synchronization point, which TensorFlow does
    not allow inside a nested ``tf.function`` or a ``tf.cond`` branch.
    """
    return _replicas() is not None


def sum_over_replicas(values):
    """The sum over replicas of each tensor in the list ``values`` (the identity with one replica).

    Applied to the losses and gradients of Keras' replica-scaled losses, it
    gives the loss and gradient of the whole batch, on every replica.
    """
    context = _replicas()
    return values if context is None else context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def replica_share(gradients):
    """``gradients / replicas``: what one replica passes to a Keras optimizer's ``apply``,
    which sums them across replicas again (the identity with one replica)."""
    context = _replicas()
    if context is None:
        return gradients
    return [g / tf.cast(context.num_replicas_in_sync, g.dtype) for g in gradients]


def check_distributed(variables, strategy):
    """Refuses to train replicated variables that were not created in ``strategy.scope()``.

    Variables created outside the scope are one copy that every replica
    updates in turn: each replica's step would land on it (the counters would
    count per replica). Keras' own remedy applies: create and compile the
    model in the scope.
    """
    if strategy.num_replicas_in_sync == 1:
        return
    plain = [v.path for v in variables if not isinstance(getattr(v, "value", v), tf.distribute.DistributedValues)]
    if plain:
        raise ValueError(
            f"MultilevelOptimizer trains with {strategy.num_replicas_in_sync} replicas, but "
            f"{len(plain)} variables (e.g. {plain[0]!r}) were not created under the strategy: build and "
            "compile the model inside `strategy.scope()` (the optimizer too), then call `fit`."
        )


def refuse_decisions(feature, instead):
    """Raises ``ValueError`` under several replicas: ``feature`` chooses inside the graph what to compute."""
    if several_replicas():
        raise ValueError(
            f"{feature} cannot train data-parallel: it decides inside the graph (tf.cond) which gradients to "
            f"compute, and TensorFlow allows no sum over replicas inside such a decision. {instead}"
        )
