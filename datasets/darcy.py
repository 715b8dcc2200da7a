"""The Darcy flow problem of Ponce et al. (2022, §8.2, eqs 42-43).

Mixed formulation on the unit square with the N×N mesh of squares: find the
flux ``q`` in lowest-order Raviart-Thomas (``RTCF1`` on quadrilaterals) and
the pressure ``p`` piecewise constant (DG0) such that

    (k⁻¹ q, s) - (div s, p) = -∫_{Γ_D} p_D s·n ds   for all s,
    -(div q, w) = 0                                 for all w,

with the pressure Dirichlet data ``p_D = 1`` on the inflow side ``x = 0`` and
``p_D = 0`` on the outflow side ``x = 1`` imposed naturally (the right-hand
side ``(f, s)`` of eq 42), and no flux ``q·n = 0`` on ``y = 0, 1`` imposed
essentially on the flux degrees of freedom. The permeability is
``k = exp(u)``, ``u`` the Gaussian field of :mod:`.random_field`, constant on
each cell. Targets: the cell pressures (N×N) and the quantity of interest of
eq 43, the mean outflow flux ``Q = |Γ_out|⁻¹ ∫_{Γ_out} q·n ds``. The
saddle-point system is solved directly (MUMPS LU); forms are compiled once
and only the cell values of ``k⁻¹`` change between samples.
"""

import numpy as np

from . import random_field

INFLOW, OUTFLOW = 1, 2


class DarcySolver:
    """Mixed RT/DG0 solver of Ponce et al. (2022, eq 42) on the N×N quadrilateral mesh.

    Args:
        resolution: N, the number of cells per side.
        inflow_pressure, outflow_pressure: ``p_D`` on ``x = 0`` and ``x = 1``.
    """

    def __init__(self, resolution, inflow_pressure=1.0, outflow_pressure=0.0):
        from . import fem

        import basix.ufl
        import ufl

        dolfinx = fem.dolfinx
        self.resolution = resolution
        self.mesh = mesh = fem.unit_square(resolution, "quadrilateral")
        cell = mesh.basix_cell()
        flux_element = basix.ufl.element("RTCF", cell, 1)
        pressure_element = basix.ufl.element("DG", cell, 0)
        self.space = dolfinx.fem.functionspace(mesh, basix.ufl.mixed_element([flux_element, pressure_element]))
        self.pressure_space = dolfinx.fem.functionspace(mesh, pressure_element)
        self.inverse_permeability = dolfinx.fem.Function(self.pressure_space)
        self._grid_order = fem.cell_grid_order(mesh, resolution)
        self._grid_permeability_dofs = self.pressure_space.dofmap.list[self._grid_order, 0]

        tdim = mesh.topology.dim
        mesh.topology.create_connectivity(tdim - 1, tdim)
        sides = {
            INFLOW: lambda x: np.isclose(x[0], 0.0),
            OUTFLOW: lambda x: np.isclose(x[0], 1.0),
        }
        facets = [dolfinx.mesh.locate_entities_boundary(mesh, tdim - 1, sides[tag]) for tag in (INFLOW, OUTFLOW)]
        values = np.concatenate([np.full(len(f), tag, dtype=np.int32) for f, tag in zip(facets, (INFLOW, OUTFLOW))])
        facets = np.concatenate(facets)
        order = np.argsort(facets)
        tags = dolfinx.mesh.meshtags(mesh, tdim - 1, facets[order], values[order])
        self.ds = ds = ufl.Measure("ds", domain=mesh, subdomain_data=tags)
        self.outflow_length = 1.0

        (q, p), (s, w) = ufl.TrialFunctions(self.space), ufl.TestFunctions(self.space)
        n = ufl.FacetNormal(mesh)
        self.p_in = dolfinx.fem.Constant(mesh, float(inflow_pressure))
        self.p_out = dolfinx.fem.Constant(mesh, float(outflow_pressure))
        a = (ufl.inner(self.inverse_permeability * q, s) - ufl.div(s) * p - ufl.div(q) * w) * ufl.dx
        L = -self.p_in * ufl.inner(s, n) * ds(INFLOW) - self.p_out * ufl.inner(s, n) * ds(OUTFLOW)
        self.a, self.L = dolfinx.fem.form(a), dolfinx.fem.form(L)

        flux_space, _ = self.space.sub(0).collapse()
        walls = dolfinx.mesh.locate_entities_boundary(
            mesh, tdim - 1, lambda x: np.isclose(x[1], 0.0) | np.isclose(x[1], 1.0)
        )
        wall_dofs = dolfinx.fem.locate_dofs_topological((self.space.sub(0), flux_space), tdim - 1, walls)
        self.bcs = [dolfinx.fem.dirichletbc(dolfinx.fem.Function(flux_space), wall_dofs, self.space.sub(0))]

        self.solution = dolfinx.fem.Function(self.space)
        self.flux, self.pressure = self.solution.split()
        self.outflow = dolfinx.fem.form(ufl.inner(self.flux, n) * ds(OUTFLOW))
        self.inflow = dolfinx.fem.form(ufl.inner(self.flux, n) * ds(INFLOW))
        self.solver = fem.DirectSolver(self.a, self.L, self.bcs, self.solution, "lu", package="mumps")
        collapsed, to_mixed = self.space.sub(1).collapse()
        # mixed-space dof of the pressure on cell c, for the cells in grid order
        pressure_of_cell = np.asarray(to_mixed).ravel()[collapsed.dofmap.list[:, 0]]
        self._grid_pressure_dofs = pressure_of_cell[self._grid_order]

    def solve(self, log_permeability):
        """Solves eq 42 for ``k = exp(log_permeability)`` (an N×N grid); returns the mixed Function."""
        values = self.inverse_permeability.x.array
        # DG0 with one dof per cell: the dof of cell c is dofmap.list[c, 0]
        values[self._grid_permeability_dofs] = np.exp(-np.asarray(log_permeability, dtype=float).ravel())
        return self.solver.solve()

    def cell_pressure(self):
        """The DG0 pressure of the last solve on the N×N grid."""
        values = self.solution.x.array[self._grid_pressure_dofs]
        return values.reshape(self.resolution, self.resolution)

    def outflow_flux(self):
        """Eq 43: ``Q = |Γ_out|⁻¹ ∫_{Γ_out} q·n ds`` of the last solve."""
        from . import fem

        return fem.dolfinx.fem.assemble_scalar(self.outflow) / self.outflow_length

    def inflow_flux(self):
        """``∫_{Γ_in} q·n ds`` of the last solve (negative: flow enters)."""
        from . import fem

        return fem.dolfinx.fem.assemble_scalar(self.inflow)

    def example(self, rng):
        """One example of Ponce et al. (2022, §8.2): log-permeability, cell pressures and Q."""
        log_permeability = random_field.gaussian_field(rng, self.resolution)
        self.solve(log_permeability)
        return {
            "log_permeability": log_permeability,
            "pressure": self.cell_pressure(),
            "outflow_flux": np.float64(self.outflow_flux()),
        }
