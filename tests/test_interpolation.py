"""Transfer operators in time: Pi P = I, R = P^T, and what P reproduces."""

import numpy as np
import pytest
import tensorflow as tf

from keras_multilevel.hierarchy import Identity, Linear, PiecewiseConstant
from keras_multilevel.hierarchy.interpolation import get_interpolation

OPERATORS = [PiecewiseConstant(), Linear()]


@pytest.mark.parametrize("op", OPERATORS, ids=lambda op: op.name)
@pytest.mark.parametrize("coarse_blocks", [1, 2, 3, 8, 33])
def test_restrict_after_prolong_is_identity(op, coarse_blocks):
    coarse = np.random.default_rng(0).normal(size=(coarse_blocks, 3, 4))
    back = op.restrict(op.prolong(coarse)).numpy()
    np.testing.assert_allclose(back, coarse, atol=1e-12)


@pytest.mark.parametrize("op", OPERATORS, ids=lambda op: op.name)
@pytest.mark.parametrize("coarse_blocks", [1, 2, 5, 16])
def test_gradient_restriction_is_adjoint_of_prolongation(op, coarse_blocks):
    rng = np.random.default_rng(1)
    coarse = rng.normal(size=(coarse_blocks, 2, 3))
    fine = rng.normal(size=(2 * coarse_blocks, 2, 3))
    left = np.sum(op.prolong(coarse).numpy() * fine)
    right = np.sum(coarse * op.restrict_gradient(fine).numpy())
    assert left == pytest.approx(right, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("op", OPERATORS, ids=lambda op: op.name)
def test_operators_match_their_matrices(op):
    """P as a matrix, from its columns; R must be its transpose, Pi = (P^T P)^-1 P^T."""
    coarse_blocks = 6
    matrix = np.stack([op.prolong(np.eye(coarse_blocks)[j]).numpy() for j in range(coarse_blocks)], axis=1)
    fine = np.random.default_rng(2).normal(size=2 * coarse_blocks)
    np.testing.assert_allclose(op.restrict_gradient(fine).numpy(), matrix.T @ fine, atol=1e-12)
    least_squares = np.linalg.solve(matrix.T @ matrix, matrix.T @ fine)
    np.testing.assert_allclose(op.restrict(fine).numpy(), least_squares, atol=1e-12)


def test_piecewise_constant_values():
    coarse = np.array([1.0, 5.0])
    np.testing.assert_array_equal(PiecewiseConstant().prolong(coarse).numpy(), [1, 1, 5, 5])
    np.testing.assert_array_equal(PiecewiseConstant().restrict(np.array([1.0, 3.0, 5.0, 9.0])).numpy(), [2, 7])
    np.testing.assert_array_equal(PiecewiseConstant().restrict_gradient(np.array([1.0, 3.0, 5.0, 9.0])).numpy(), [4, 14])


def test_linear_prolongation_reproduces_linear_controls():
    """A control linear in time stays linear at the fine points (but the last,
    which lies beyond the last coarse time and is extrapolated constantly)."""
    coarse_times = np.arange(8) * 2.0
    fine = Linear().prolong(3.0 * coarse_times - 1.0).numpy()
    fine_times = np.arange(16) * 1.0
    np.testing.assert_allclose(fine[:-1], 3.0 * fine_times[:-1] - 1.0)
    assert fine[-1] == fine[-2]


def test_identity_transfer():
    value = tf.constant([[1.0, 2.0]])
    for method in ("prolong", "restrict", "restrict_gradient"):
        assert getattr(Identity(), method)(value) is value


def test_odd_fine_stack_is_rejected():
    with pytest.raises(ValueError, match="even number of blocks"):
        PiecewiseConstant().restrict(np.zeros((5, 2)))


def test_unknown_interpolation_name():
    with pytest.raises(ValueError, match="Unknown interpolation 'cubic'.*constant.*linear"):
        get_interpolation("cubic")
