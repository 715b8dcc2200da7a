"""L-SR1 compact form and the exact trust-region subproblem (Kopaničáková and Krause's (2023) level model; Brust, Erway & Marcia's OBS)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_multilevel.optimizers import lsr1


def variable(shape, dtype, name):
    return tf.Variable(tf.zeros(shape, dtype=dtype), name=name)


def dense(psi, m, gamma):
    psi, m = psi.numpy(), m.numpy()
    return float(gamma) * np.eye(psi.shape[0]) + psi @ m @ psi.T


def check_optimality(g, B, p, sigma, radius):
    """N&W Theorem 4.1: the global minimizer of the trust-region subproblem."""
    norm = np.linalg.norm(p)
    assert norm <= radius * (1 + 1e-9)
    assert sigma >= -1e-12
    np.testing.assert_allclose((B + sigma * np.eye(len(g))) @ p, -g, atol=1e-8 * max(1.0, np.linalg.norm(g)))
    assert abs(sigma * (radius - norm)) <= 1e-8 * max(1.0, sigma * radius)
    assert np.linalg.eigvalsh(B + sigma * np.eye(len(g))).min() >= -1e-8


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_secant_equations_hold_for_every_stored_pair(seed):
    """B s_i = y_i for each pair kept, also after the oldest pairs made room and gamma changed."""
    rng = np.random.default_rng(seed)
    n, memory = 9, 3
    hessian = rng.normal(size=(n, n))
    hessian = hessian + hessian.T  # indefinite
    pairs = lsr1.SecantMemory(n, memory, variable)
    stored = []
    for _ in range(5):
        s = rng.normal(size=n)
        if pairs.update(tf.constant(s), tf.constant(hessian @ s)).numpy():
            stored.append(s)
    assert len(stored) == 5 and pairs.used.numpy().all()
    B = dense(*pairs.compact())
    np.testing.assert_allclose(B @ pairs.s.numpy(), pairs.y.numpy(), atol=1e-9)
    np.testing.assert_allclose(pairs.s.numpy()[:, -1], stored[-1])  # the newest pair is last


def test_skip_rule_refuses_a_pair_the_matrix_already_satisfies():
    """An SR1 update with y = B s has a zero denominator: the pair is skipped and nothing changes."""
    pairs = lsr1.SecantMemory(4, 2, variable, gamma=2.0)
    s = tf.constant([1.0, 0.0, 0.0, 0.0], tf.float64)
    assert pairs.update(s, 2.0 * s).numpy() == False  # noqa: E712 (a numpy bool)
    assert not pairs.used.numpy().any()
    nan = tf.constant([np.nan, 0.0, 0.0, 0.0], tf.float64)
    assert pairs.update(s, nan).numpy() == False  # noqa: E712


def test_an_empty_memory_is_gamma_times_the_identity():
    pairs = lsr1.SecantMemory(5, 3, variable, gamma=0.5)
    np.testing.assert_allclose(dense(*pairs.compact()), 0.5 * np.eye(5))


def random_compact(rng, n=8, k=3, gamma=1.0, scale=3.0):
    psi = tf.constant(rng.normal(size=(n, k)))
    m = rng.normal(size=(k, k)) * scale
    return psi, tf.constant(m + m.T), tf.constant(gamma, tf.float64)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("radius", [1e-3, 0.3, 2.0, 1e3])
def test_subproblem_satisfies_the_optimality_conditions(seed, radius):
    """Indefinite and definite B, small and large radii, against the dense conditions."""
    rng = np.random.default_rng(seed)
    psi, m, gamma = random_compact(rng, gamma=[1.0, 0.2, 2.0, -0.5][seed])
    g = rng.normal(size=8)
    p, sigma = lsr1.subproblem(tf.constant(g), psi, m, gamma, tf.constant(radius, tf.float64))
    check_optimality(g, dense(psi, m, gamma), p.numpy(), float(sigma), radius)


def test_subproblem_interior_step_is_the_newton_step():
    rng = np.random.default_rng(5)
    psi = tf.constant(rng.normal(size=(6, 2)))
    m = tf.constant(np.diag([1.0, 2.0]))
    gamma = tf.constant(1.0, tf.float64)
    g = rng.normal(size=6)
    B = dense(psi, m, gamma)
    p, sigma = lsr1.subproblem(tf.constant(g), psi, m, gamma, tf.constant(1e6, tf.float64))
    assert float(sigma) == 0.0
    np.testing.assert_allclose(p.numpy(), -np.linalg.solve(B, g), rtol=1e-9)


def test_subproblem_hard_case_in_the_subspace():
    """g orthogonal to the eigenvector of lambda_min < 0 and a large radius: p reaches the boundary along it."""
    rng = np.random.default_rng(6)
    psi = tf.constant(rng.normal(size=(6, 2)))
    m = tf.constant(np.diag([-3.0, 2.0]))
    gamma = tf.constant(1.0, tf.float64)
    B = dense(psi, m, gamma)
    values, vectors = np.linalg.eigh(B)
    assert values[0] < 0
    g = rng.normal(size=6)
    g -= vectors[:, 0] * (vectors[:, 0] @ g)
    radius = 50.0
    p, sigma = lsr1.subproblem(tf.constant(g), psi, m, gamma, tf.constant(radius, tf.float64))
    np.testing.assert_allclose(float(sigma), -values[0], rtol=1e-8)
    check_optimality(g, B, p.numpy(), float(sigma), radius)
    assert np.linalg.norm(p.numpy()) == pytest.approx(radius)


def test_subproblem_hard_case_in_the_complement():
    """lambda_min = gamma < 0 on the complement of span(Psi) and g in span(Psi): a step off the span."""
    rng = np.random.default_rng(7)
    psi = tf.constant(rng.normal(size=(6, 2)))
    m = tf.constant(np.diag([3.0, 4.0]))
    gamma = tf.constant(-0.5, tf.float64)
    g = psi.numpy() @ np.array([1.0, -1.0])
    B = dense(psi, m, gamma)
    radius = 100.0
    p, sigma = lsr1.subproblem(tf.constant(g), psi, m, gamma, tf.constant(radius, tf.float64))
    assert float(sigma) == pytest.approx(0.5)
    check_optimality(g, B, p.numpy(), float(sigma), radius)


def test_subproblem_with_zero_radius_is_no_step():
    rng = np.random.default_rng(8)
    psi, m, gamma = random_compact(rng)
    p, _ = lsr1.subproblem(tf.constant(rng.normal(size=8)), psi, m, gamma, tf.constant(0.0, tf.float64))
    assert not p.numpy().any()


def test_model_decrease_is_the_quadratic_models():
    rng = np.random.default_rng(9)
    psi, m, gamma = random_compact(rng)
    g, p = rng.normal(size=8), rng.normal(size=8)
    B = dense(psi, m, gamma)
    expected = -(g @ p + 0.5 * p @ B @ p)
    assert float(lsr1.model_decrease(tf.constant(g), tf.constant(p), psi, m, gamma)) == pytest.approx(expected)


def test_flatten_round_trip():
    tensors = [tf.constant(np.arange(6.0, dtype="float32").reshape(2, 3)), tf.constant([7.0], tf.float32)]
    vector = lsr1.flatten(tensors)
    assert vector.dtype == tf.float64 and vector.shape == (7,)
    back = lsr1.unflatten(vector, tensors)
    for got, expected in zip(back, tensors):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got.numpy(), expected.numpy())
