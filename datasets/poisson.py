"""The Poisson problem of Ponce et al. (2022, §8.1, eq 41).

``-div(κ grad u) = f`` on the unit square, ``u = 0`` on its boundary, with

    κ(x, y) = 1.1 + cos(k_x π (x' + a_x)) cos(k_y π (y' + a_y)),
    x' = cos α (x - 1/2) - sin α (y - 1/2) + 1/2,
    y' = sin α (x - 1/2) + cos α (y - 1/2) + 1/2,
    f(x, y) = 32 exp(-4 ((x - 1/4)^2 + (y - 1/4)^2)),

and parameters ``k_x, k_y ~ U(0.5, 4)``, ``a_x, a_y ~ U(0, 0.5)``,
``α ~ U(0, π/2)``, solved with P1 Lagrange elements on the N×N mesh (each
square split into two triangles). The forms are compiled once per
resolution; a sample only changes five ``dolfinx.fem.Constant`` values and
re-assembles. An example stores ``inputs = [κ, x, y]`` (channels last) and
``target = u`` on the N×N cell-centre grid of :mod:`.fem`. f, the same for
every sample, is not a channel, and the values are at cell centres, not mesh
points: deviations from Ponce et al. (2022) listed in ``datasets/README.md``.
"""

import numpy as np

PARAMETER_NAMES = ("k_x", "k_y", "a_x", "a_y", "alpha")
PARAMETER_LOW = np.array([0.5, 0.5, 0.0, 0.0, 0.0])
PARAMETER_HIGH = np.array([4.0, 4.0, 0.5, 0.5, np.pi / 2])


def sample_parameters(rng):
    """Draws ``(k_x, k_y, a_x, a_y, α)`` uniformly from the ranges of Ponce et al. (2022, §8.1)."""
    return rng.uniform(PARAMETER_LOW, PARAMETER_HIGH)


def kappa(x, y, parameters, ops=np):
    """The diffusion coefficient κ of Ponce et al. (2022, §8.1); ``ops`` is ``numpy`` (arrays) or ``ufl`` (forms)."""
    k_x, k_y, a_x, a_y, alpha = parameters
    x_rotated = ops.cos(alpha) * (x - 0.5) - ops.sin(alpha) * (y - 0.5) + 0.5
    y_rotated = ops.sin(alpha) * (x - 0.5) + ops.cos(alpha) * (y - 0.5) + 0.5
    return 1.1 + ops.cos(k_x * np.pi * (x_rotated + a_x)) * ops.cos(k_y * np.pi * (y_rotated + a_y))


def source(x, y, ops=np):
    """The right-hand side f of Ponce et al. (2022, §8.1); ``ops`` is ``numpy`` or ``ufl``."""
    return 32.0 * ops.exp(-4.0 * ((x - 0.25) ** 2 + (y - 0.25) ** 2))


class PoissonSolver:
    """P1 solver of Ponce et al. (2022, eq 41) on the N×N mesh; forms compiled once, constants changed per solve.

    Args:
        resolution: N, the number of squares per side.
        rhs: ``rhs(x, κ) -> UFL expression`` of the spatial coordinate and
            the coefficient (default: the paper's f); the manufactured-solution
            test passes ``-div(κ grad u_exact)``.
        quadrature_degree: quadrature degree of the forms.
    """

    def __init__(self, resolution, rhs=None, quadrature_degree=4):
        from . import fem

        import ufl

        dolfinx = fem.dolfinx
        self.resolution = resolution
        self.mesh = fem.unit_square(resolution, "triangle")
        self.space = dolfinx.fem.functionspace(self.mesh, ("Lagrange", 1))
        x = ufl.SpatialCoordinate(self.mesh)
        self.constants = [dolfinx.fem.Constant(self.mesh, 1.0) for _ in PARAMETER_NAMES]
        self.kappa = kappa(x[0], x[1], self.constants, ops=ufl)
        if rhs is None:
            rhs = lambda x, _: source(x[0], x[1], ops=ufl)  # noqa: E731
        u, v = ufl.TrialFunction(self.space), ufl.TestFunction(self.space)
        dx = ufl.dx(metadata={"quadrature_degree": quadrature_degree})
        self.a = dolfinx.fem.form(ufl.inner(self.kappa * ufl.grad(u), ufl.grad(v)) * dx)
        self.L = dolfinx.fem.form(rhs(x, self.kappa) * v * dx)
        tdim = self.mesh.topology.dim
        self.mesh.topology.create_connectivity(tdim - 1, tdim)
        boundary = dolfinx.mesh.exterior_facet_indices(self.mesh.topology)
        dofs = dolfinx.fem.locate_dofs_topological(self.space, tdim - 1, boundary)
        self.bcs = [dolfinx.fem.dirichletbc(0.0, dofs, self.space)]
        self.solution = dolfinx.fem.Function(self.space)
        self.solver = fem.DirectSolver(self.a, self.L, self.bcs, self.solution, "cholesky")
        self._centre_dofs, self._centre_weights = fem.p1_at_cell_centres(self.space, resolution)
        self.x, self.y = fem.cell_centres(resolution)

    def solve(self, parameters):
        """Solves for ``(k_x, k_y, a_x, a_y, α)``; returns the P1 solution (a dolfinx Function)."""
        for constant, value in zip(self.constants, parameters):
            constant.value = value
        return self.solver.solve()

    def at_cell_centres(self, function):
        """Values of a P1 function on the N×N cell-centre grid (see :mod:`.fem`)."""
        values = function.x.array[self._centre_dofs]
        return np.sum(values * self._centre_weights, axis=1).reshape(self.resolution, self.resolution)

    def example(self, rng):
        """One example of Ponce et al. (2022, §8.1): the sampled parameters, κ and u on the N×N grid."""
        parameters = sample_parameters(rng)
        u = self.at_cell_centres(self.solve(parameters))
        return {"parameters": parameters, "kappa": kappa(self.x, self.y, parameters), "solution": u}
