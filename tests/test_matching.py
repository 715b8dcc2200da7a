"""Heavy edge matching (Ponce et al., 2022, §5.5, Algorithm 1)."""

import time

import numpy as np
import pytest
import tensorflow as tf

from keras_multilevel.hierarchy.matching import (
    aggregates,
    heavy_edge_matching,
    strength_of_connection,
)


def random_strength(n=400, p=100, seed=0):
    """Strength of connection of ``n`` random Gaussian neurons with ``p`` weights each."""
    vectors = np.random.default_rng(seed).standard_normal((n, p))
    return strength_of_connection(tf.constant(vectors)).numpy()


def pairs_of(match):
    return [(i, int(j)) for i, j in enumerate(match) if i < j]


def test_strength_is_the_cosine_of_the_angle_between_rows():
    vectors = tf.constant([[3.0, 4.0], [6.0, 8.0], [-4.0, 3.0], [0.0, 0.0], [-3.0, -4.0]])
    strength = strength_of_connection(vectors).numpy()
    np.testing.assert_allclose(strength[0], [1.0, 1.0, 0.0, 0.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(strength, strength.T)
    # A zero row has strength 0 to everything, itself included.
    np.testing.assert_array_equal(strength[3], 0.0)


def test_hand_made_example_follows_the_greedy_order():
    strength = tf.constant(
        [
            [1.0, 0.9, 0.8, 0.1],
            [0.9, 1.0, 0.95, 0.2],
            [0.8, 0.95, 1.0, 0.3],
            [0.1, 0.2, 0.3, 1.0],
        ]
    )
    # Neuron 0 is visited first and takes 1, although 1-2 is the heavier
    # edge; 2 then pairs with the only unmatched neuron left, 3.
    np.testing.assert_array_equal(heavy_edge_matching(strength, 0.0), [1, 0, 3, 2])
    # With theta = 0.5 the edge 2-3 (0.3) is disregarded: two singletons.
    np.testing.assert_array_equal(heavy_edge_matching(strength, 0.5), [1, 0, 2, 3])
    # Asking for 2 pairs pairs the singletons regardless of the threshold ...
    np.testing.assert_array_equal(heavy_edge_matching(strength, 0.5, pairs=2), [1, 0, 3, 2])
    # ... and for 1 pair stops after the first.
    np.testing.assert_array_equal(heavy_edge_matching(strength, 0.0, pairs=1), [1, 0, 2, 3])


def test_aggregates_are_numbered_by_their_smallest_member():
    np.testing.assert_array_equal(aggregates(tf.constant([3, 2, 1, 0, 4])), [0, 1, 1, 0, 2])
    np.testing.assert_array_equal(aggregates(tf.constant([0, 1, 2])), [0, 1, 2])


def test_random_layer_matching_is_an_involution_into_pairs_and_halves_the_width():
    strength = random_strength()
    match = heavy_edge_matching(strength, 0.0).numpy()
    n = len(match)
    np.testing.assert_array_equal(match[match], np.arange(n))
    zeta = aggregates(match).numpy()
    np.testing.assert_array_equal(zeta, zeta[match])
    sizes = np.bincount(zeta)
    assert set(sizes) <= {1, 2}
    coarse = zeta.max() + 1
    assert np.array_equal(np.unique(zeta), np.arange(coarse))
    assert 1.8 <= n / coarse <= 2.0
    # Every pair is connected by an edge above the threshold, and it is the
    # heaviest edge of the neuron that chose it among those still unmatched.
    for i, j in pairs_of(match):
        assert strength[i, j] > 0.0
        still_free = [k for k in range(i + 1, n) if min(k, match[k]) >= i]
        assert strength[i, j] == strength[i, still_free].max()


def test_threshold_is_respected():
    strength = random_strength()
    match = heavy_edge_matching(strength, 0.2).numpy()
    assert pairs_of(match)
    assert all(strength[i, j] > 0.2 for i, j in pairs_of(match))
    # Random directions in 100 dimensions are nearly orthogonal: nothing
    # is as similar as theta = 0.95 asks, so all neurons stay alone.
    np.testing.assert_array_equal(heavy_edge_matching(strength, 0.95), np.arange(len(match)))


@pytest.mark.parametrize("threshold", [0.0, 0.2])
def test_pairs_fixes_the_number_of_pairs(threshold):
    strength = random_strength()
    found = pairs_of(heavy_edge_matching(strength, threshold).numpy())
    most = len(strength) // 2
    for wanted in (len(found) - 30, most):
        match = heavy_edge_matching(strength, threshold, pairs=tf.constant(wanted)).numpy()
        np.testing.assert_array_equal(match[match], np.arange(len(match)))
        assert len(pairs_of(match)) == wanted
    if threshold > 0:
        # The thresholded sweep found fewer: its pairs stay, singletons are paired.
        assert len(found) < most
        assert set(found) <= set(pairs_of(match))
        assert any(strength[i, j] <= threshold for i, j in pairs_of(match))


@pytest.mark.parametrize("jit_compile", [False, True], ids=["graph", "xla"])
def test_same_matching_inside_tf_function_as_eagerly(jit_compile):
    # Keras compiles train steps with XLA where it can ("auto"): both must work.
    strength = random_strength(n=64, p=16)
    compiled = tf.function(
        lambda s, pairs: aggregates(heavy_edge_matching(s, 0.1, pairs)), jit_compile=jit_compile
    )
    eager = aggregates(heavy_edge_matching(strength, 0.1, pairs=30))
    np.testing.assert_array_equal(compiled(strength, tf.constant(30)), eager)
    unpaired = tf.function(lambda s: heavy_edge_matching(s, 0.1))
    np.testing.assert_array_equal(unpaired(strength), heavy_edge_matching(strength, 0.1))


def test_matching_a_wide_layer_in_a_compiled_step_is_fast():
    strength = tf.constant(random_strength(n=1024, p=64), tf.float32)
    compiled = tf.function(lambda s: heavy_edge_matching(s, 0.0, pairs=500))
    compiled(strength)  # trace
    start = time.perf_counter()
    match = compiled(strength)
    assert time.perf_counter() - start < 0.5
    assert len(pairs_of(match.numpy())) == 500


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="square"):
        heavy_edge_matching(tf.zeros([3, 4]), 0.0)
    with pytest.raises(ValueError, match="at most 2"):
        heavy_edge_matching(tf.zeros([5, 5]), 0.0, pairs=3)
    with pytest.raises(ValueError, match="non-negative integer"):
        heavy_edge_matching(tf.zeros([5, 5]), 0.0, pairs=-1)
