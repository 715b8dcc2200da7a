"""Heavy edge matching (HEM): pairs of similar neurons for width coarsening.

Ponce et al. (2022, §5.5) and its Algorithm 1. The strength of connection ``S_k``
between two neurons of a layer is the cosine of the angle between their
parameter vectors; greedy HEM visits the neurons in index order and matches
each unmatched neuron ``i`` to the unmatched neuron ``j != i`` with the
heaviest edge ``S_ij``, provided ``S_ij > theta``; otherwise ``i`` stays alone
(a singleton). The result is the matching ``pi`` (``pi(pi(i)) = i``, and
``pi(i) = i`` for a singleton) and the aggregation ``zeta`` (``zeta(i)`` is
the aggregate of ``i`` and ``pi(i)``), which define ``P_k`` and ``pi_k`` of
eqs 32 and 34.

Everything here is TensorFlow ops only (a ``tf.while_loop`` over the
neurons), so the matching can be recomputed inside a compiled train step
(§6.1.3, "HEM re-matching").
"""

import tensorflow as tf


def strength_of_connection(vectors):
    """``S_k`` of §5.5: the cosine of the angle between every two rows.

    Args:
        vectors: ``(n, p)`` tensor, one parameter vector per neuron.

    Returns:
        ``(n, n)`` tensor with ``S_ij = <v_i, v_j> / (|v_i| |v_j|)``; a zero
        row has strength 0 to every neuron (itself included).
    """
    vectors = tf.convert_to_tensor(vectors)
    norms = tf.norm(vectors, axis=1, keepdims=True)
    unit = tf.math.divide_no_nan(vectors, norms)
    return tf.matmul(unit, unit, transpose_b=True)


_UNMATCHED = -1


@tf.function(reduce_retracing=True)
def _greedy_pass(strength, match, paired, most_pairs, threshold):
    """One greedy sweep of Algorithm 1 over the neurons in index order.

    A ``tf.function`` so that an eager call (coarsening a model) runs the
    loop as one graph instead of ``n`` Python iterations; inside a traced
    train step it is inlined like any other op.

    ``match[i] == -1`` marks an unmatched neuron. The sweep matches unmatched
    ``i`` to the unmatched ``j != i`` with the largest ``S_ij > threshold``
    while fewer than ``most_pairs`` pairs exist, and makes ``i`` a singleton
    (``match[i] = i``) otherwise. Returns the new ``match`` and pair count.
    """
    n = tf.shape(strength)[0]
    indices = tf.range(n)
    lowest = tf.constant(float("-inf"), strength.dtype)

    def pair_or_single(i, match, paired):
        free = (match == _UNMATCHED) & (indices != i) & (strength[i] > threshold)
        partner = tf.argmax(tf.where(free, strength[i], lowest), output_type=tf.int32)
        pairs_i = tf.reduce_any(free) & (paired < most_pairs)
        j = tf.where(pairs_i, partner, i)
        match = tf.tensor_scatter_nd_update(match, [[i], [j]], tf.stack([j, i]))
        return match, paired + tf.cast(pairs_i, tf.int32)

    def visit(i, match, paired):
        match, paired = tf.cond(
            match[i] == _UNMATCHED,
            lambda: pair_or_single(i, match, paired),
            lambda: (match, paired),
        )
        return i + 1, match, paired

    _, match, paired = tf.while_loop(
        lambda i, match, paired: i < n, visit, (tf.constant(0), match, paired)
    )
    return match, paired


def heavy_edge_matching(strength, threshold, pairs=None):
    """Greedy heavy edge matching (Ponce et al., 2022, Algorithm 1).

    Args:
        strength: ``(n, n)`` strength of connection, e.g. from
            :func:`strength_of_connection`.
        threshold: ``theta``; only edges with ``S_ij > theta`` are matched.
        pairs: ``None`` (as many pairs as Algorithm 1 finds) or the exact
            number of pairs to form (python int or scalar int tensor, at most
            ``n // 2``). Then the thresholded sweep stops pairing once it has
            ``pairs`` pairs, and if it found fewer, a second sweep pairs the
            remaining singletons greedily, ignoring ``threshold``. This keeps
            the number of aggregates ``n - pairs`` fixed, as a coarse model of
            fixed width needs when it is re-matched during training.

    Returns:
        ``match``, an ``(n,)`` int32 tensor with ``match[match[i]] == i``
        (``match[i] == i`` for a singleton).
    """
    strength = tf.convert_to_tensor(strength)
    if strength.shape.rank != 2 or (
        strength.shape[0] is not None and strength.shape[0] != strength.shape[1]
    ):
        raise ValueError(
            f"`strength` must be a square (n, n) matrix, got shape {strength.shape}: "
            "build it with strength_of_connection(vectors)."
        )
    n = tf.shape(strength)[0]
    if pairs is not None and not tf.is_tensor(pairs):
        size = strength.shape[0]
        if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 0:
            raise ValueError(f"`pairs` must be None or a non-negative integer, got {pairs!r}.")
        if size is not None and pairs > size // 2:
            raise ValueError(
                f"`pairs`={pairs} is more than {size} neurons can form: use at most {size // 2}."
            )
    threshold = tf.cast(threshold, strength.dtype)
    most_pairs = n if pairs is None else tf.cast(pairs, tf.int32)
    match = tf.fill([n], _UNMATCHED)
    match, paired = _greedy_pass(strength, match, tf.constant(0), most_pairs, threshold)
    if pairs is None:
        return match
    singletons = match == tf.range(n)
    match = tf.where(singletons, _UNMATCHED, match)
    unbounded = tf.constant(float("-inf"), strength.dtype)
    match, _ = _greedy_pass(strength, match, paired, most_pairs, unbounded)
    return match


def aggregates(match):
    """``zeta`` of Algorithm 1: the aggregate index of every neuron.

    Aggregates are numbered ``0 .. n_c - 1`` in the order of their smallest
    member, so ``zeta(i) == zeta(match[i])``.
    """
    match = tf.convert_to_tensor(match, tf.int32)
    leader = tf.minimum(tf.range(tf.shape(match)[0]), match)
    leads = tf.cast(leader == tf.range(tf.shape(match)[0]), tf.int32)
    return tf.gather(tf.cumsum(leads) - 1, leader)
