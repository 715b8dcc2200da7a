"""Resolution transfer of images and convolution stencils (Haber et al., 2018, §3.1-3.2)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_multilevel.hierarchy import stencil as stencils



def smooth_image(n):
    """Two smooth channels sampled at the cell centres of an n x n grid on the unit square."""
    x = (np.arange(n) + 0.5) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    return np.stack([np.sin(2 * np.pi * X) * np.cos(np.pi * Y), np.exp(-4 * ((X - 0.3) ** 2 + (Y - 0.6) ** 2))], -1)[None]


def conv(images, stencil):
    return tf.nn.conv2d(images, stencil, strides=1, padding="SAME").numpy()


def test_average_restriction_inverts_constant_prolongation_and_keeps_constants():
    coarse = np.random.default_rng(0).normal(size=(2, 4, 6, 3))
    np.testing.assert_allclose(stencils.restrict_image(stencils.prolong_image(coarse, "constant")), coarse)
    ones = np.ones((1, 4, 4, 1))
    np.testing.assert_allclose(stencils.restrict_image(stencils.prolong_image(ones, "linear")), ones)


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_restricted_stencil_is_the_galerkin_operator(interpolation):
    """K_H y_H = R K_h P y_H (Haber et al., 2018, eq 9) on every coarse image, away from the boundary."""
    stencil = np.random.default_rng(0).normal(size=(3, 3, 2, 4))
    coarse_stencil = stencils.restrict_stencil(stencil, interpolation)
    images = np.random.default_rng(0).normal(size=(3, 12, 12, 2))
    galerkin = stencils.restrict_image(conv(stencils.prolong_image(images, interpolation), stencil)).numpy()
    np.testing.assert_allclose(conv(images, coarse_stencil)[:, 2:-2, 2:-2], galerkin[:, 2:-2, 2:-2], atol=1e-12)


def test_identity_stencil_restricts_to_the_identity_with_constant_prolongation():
    identity = np.zeros((3, 3, 1, 1))
    identity[1, 1] = 1.0
    np.testing.assert_allclose(stencils.restrict_stencil(identity, "constant"), identity, atol=1e-15)


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_restricted_stencil_on_restricted_smooth_images_converges_with_resolution(interpolation):
    """|K_H R y - R K_h y| on a smooth image falls towards 4x per doubling of the resolution
    (second order); the fine stencil used unchanged on the coarse image is far worse."""
    stencil = np.random.default_rng(0).normal(size=(3, 3, 2, 4))
    coarse_stencil = stencils.restrict_stencil(stencil, interpolation)
    errors, naive = [], []
    for n in (32, 64, 128):
        y = smooth_image(n)
        reference = stencils.restrict_image(conv(y, stencil)).numpy()[:, 2:-2, 2:-2]
        errors.append(np.abs(conv(stencils.restrict_image(y), coarse_stencil)[:, 2:-2, 2:-2] - reference).max())
        naive.append(np.abs(conv(stencils.restrict_image(y), stencil)[:, 2:-2, 2:-2] - reference).max())
    assert errors[1] < errors[0] / 2.5 and errors[2] < errors[1] / 3.2
    assert errors[2] < naive[2] / 10


@pytest.mark.parametrize("interpolation", ["constant", "linear"])
def test_restriction_after_prolongation_returns_the_coarse_stencil(interpolation):
    """Haber et al. (2018, §3.2): the 9 x 9 system of a 3 x 3 stencil is well posed."""
    coarse = np.random.default_rng(0).normal(size=(3, 3, 3, 5))
    assert np.linalg.matrix_rank(stencils.restriction_matrix(3, interpolation)) == 9
    back = stencils.restrict_stencil(stencils.prolong_stencil(coarse, interpolation), interpolation)
    np.testing.assert_allclose(back, coarse, atol=1e-12)


@pytest.mark.parametrize("size", [5, 7])
def test_larger_stencils_round_trip_within_the_range_of_the_restriction(size):
    """For k > 3 the coarse stencil of a k x k fine one has a smaller support, so the system is
    rank deficient; the least-squares prolongation still restricts back to any coarse stencil
    that is a restriction."""
    coarse = stencils.restrict_stencil(np.random.default_rng(0).normal(size=(size, size, 2, 2)), "constant")
    back = stencils.restrict_stencil(stencils.prolong_stencil(coarse, "constant"), "constant")
    np.testing.assert_allclose(back, coarse, atol=1e-12)


def test_prolongation_keeps_derivative_stencils_and_turns_averages_into_checkerboards():
    """Why 2N fails on trained networks (issue 11): G+ of Haber et al. (2018, §3.2) maps the 5-point Laplacian to
    twice itself, but a 3x3 average to a checkerboard, so no smoothness of the coarse stencil helps.

    A fine 3x3 stencil spans half the coarse one's physical support: a coarse stencil with weight
    away from its centre can only come from a fine one with large, alternating far entries.
    """
    matrix = stencils.prolongation_matrix(3, "constant")
    laplacian = np.array([0, 1, 0, 1, -4, 1, 0, 1, 0.0])
    np.testing.assert_allclose(matrix @ laplacian, 2 * laplacian, atol=1e-12)
    average = np.full(9, 1 / 9)
    checkerboard = np.array([4, -2, 4, -2, 1, -2, 4, -2, 4]) / 9
    np.testing.assert_allclose(matrix @ average, checkerboard, atol=1e-12)
    np.testing.assert_allclose(stencils.restriction_matrix(3, "constant") @ checkerboard, average, atol=1e-12)


def test_bad_inputs():
    with pytest.raises(ValueError, match="height and width must be even"):
        stencils.restrict_image(np.zeros((1, 5, 4, 1)))
    with pytest.raises(ValueError, match="odd k"):
        stencils.restrict_stencil(np.zeros((2, 2, 1, 1)))
    with pytest.raises(ValueError, match="`interpolation` must be one of"):
        stencils.prolong_image(np.zeros((1, 2, 2, 1)), "cubic")
