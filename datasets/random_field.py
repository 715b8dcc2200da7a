"""Spatially correlated Gaussian fields on the N×N cell grid (the log-permeability of Ponce et al., 2022, §8.2).

Ponce et al. (2022, §8.2) take the
permeability ``k = exp(u)`` with ``u`` a Gaussian field constant on each
cell, without fixing the covariance. We use the separable exponential
covariance, a standard model for log-permeability in multilevel Monte Carlo
studies:

    Cov(u(x), u(x')) = σ² exp(-|x - x'|/λ - |y - y'|/λ),   E u = 0,

evaluated between cell centres, with σ = 1 and correlation length λ = 0.3
(the defaults below). Sampling is exact and costs O(N²): on a uniform grid
the 1-D exponential covariance ``ρ^|i-j|`` (``ρ = exp(-h/λ)``, ``h = 1/N``)
is that of the first-order autoregression ``v_0 = z_0``,
``v_i = ρ v_{i-1} + sqrt(1 - ρ²) z_i``; applying it to a matrix of
independent standard normals along the rows and then along the columns gives
covariance ``ρ^|Δi| ρ^|Δj|``, the separable covariance above. Pure NumPy
element-wise operations (no BLAS), so results are bitwise reproducible.
"""

import numpy as np

from .fem_grid import cell_centres

VARIANCE = 1.0
CORRELATION_LENGTH = 0.3


def _autoregression(z, rho, axis):
    v = np.moveaxis(z.copy(), axis, 0)
    scale = np.sqrt(1.0 - rho * rho)
    for i in range(1, v.shape[0]):
        v[i] = rho * v[i - 1] + scale * v[i]
    return np.moveaxis(v, 0, axis)


def gaussian_field(rng, resolution, variance=VARIANCE, correlation_length=CORRELATION_LENGTH):
    """One ``(N, N)`` sample of the separable exponential Gaussian field (row = y)."""
    rho = np.exp(-1.0 / (resolution * correlation_length))
    z = rng.standard_normal((resolution, resolution))
    return np.sqrt(variance) * _autoregression(_autoregression(z, rho, axis=0), rho, axis=1)


def covariance(resolution, variance=VARIANCE, correlation_length=CORRELATION_LENGTH):
    """The ``(N², N²)`` covariance matrix of the flattened field (for tests)."""
    x, y = cell_centres(resolution)
    dx = np.abs(x.ravel()[:, None] - x.ravel()[None, :])
    dy = np.abs(y.ravel()[:, None] - y.ravel()[None, :])
    return variance * np.exp(-(dx + dy) / correlation_length)
