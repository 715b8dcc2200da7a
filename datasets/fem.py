"""FEniCSx plumbing shared by the PDE problems: import order, meshes, the N×N grid.

Grid convention (used by every dataset of this package): an ``N×N`` array
``a`` holds values at the centres of the ``N×N`` squares of the uniform mesh
of the unit square, ``a[i, j]`` at ``(x, y) = ((j + 1/2)/N, (i + 1/2)/N)``:
row ``i`` runs along ``y`` (upwards, so plot with ``origin="lower"``),
column ``j`` along ``x``. For the Poisson problem (Ponce et al., 2022, §8.1) the P1
solution is evaluated exactly at these points (each square is split into two
triangles by its diagonal, and the centre lies on it); for Darcy (Ponce et al., 2022, §8.2) the
mesh *is* the N×N quadrilaterals and piecewise-constant fields are their
cell values.

``dolfinx_solver`` must be imported before ``dolfinx``/``petsc4py`` (it loads
the PETSc build of the ``dolfinx-solver-real`` wheel); this module does so, and
the problem modules import dolfinx only through it. It also sets PETSc's
``-no_signal_handler`` option (in ``PETSC_OPTIONS``, read when PETSc starts),
so that a signal ends a run the way Python handles it, not with PETSc's
``MPI_Abort`` banner.
"""

import os

# PETSc's own signal handlers turn SIGTERM, SIGINT and SIGPIPE into an MPI_Abort banner;
# without them Python's handlers apply (the command's one-line interrupt message).
if "-no_signal_handler" not in os.environ.get("PETSC_OPTIONS", ""):
    os.environ["PETSC_OPTIONS"] = (os.environ.get("PETSC_OPTIONS", "") + " -no_signal_handler").strip()

import dolfinx_solver  # noqa: E402, F401  (must come before dolfinx / petsc4py)

import dolfinx  # noqa: E402
import dolfinx.fem  # noqa: E402
import dolfinx.fem.petsc  # noqa: E402
import dolfinx.geometry  # noqa: E402
import dolfinx.mesh  # noqa: E402
import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402
from petsc4py import PETSc  # noqa: E402

from .fem_grid import cell_centres  # noqa: E402

__all__ = [
    "MPI", "PETSc", "dolfinx", "cell_centres", "unit_square", "p1_at_cell_centres", "cell_grid_order", "DirectSolver"
]


class DirectSolver:
    """Solves ``a(u, v) = L(v)`` again and again with forms compiled once.

    Between calls only coefficients (constants, fields) of the forms change;
    each :meth:`solve` re-assembles the matrix and right-hand side into the
    same PETSc objects and factorizes anew (``factorization`` is a PETSc PC
    type, ``package`` an optional factorization package such as MUMPS).
    """

    def __init__(self, a, L, bcs, solution, factorization, package=None):
        self.a, self.L, self.bcs, self.solution = a, L, bcs, solution
        space = solution.function_space
        self.A = dolfinx.fem.petsc.create_matrix(a)
        self.b = dolfinx.fem.petsc.create_vector(space)
        self.ksp = PETSc.KSP().create(space.mesh.comm)
        self.ksp.setType("preonly")
        pc = self.ksp.getPC()
        pc.setType(factorization)
        if package is not None:
            pc.setFactorSolverType(package)

    def solve(self):
        """Assembles with the current coefficients and solves; returns the solution Function."""
        self.A.zeroEntries()
        dolfinx.fem.petsc.assemble_matrix(self.A, self.a, bcs=self.bcs)
        self.A.assemble()
        with self.b.localForm() as local:
            local.set(0.0)
        dolfinx.fem.petsc.assemble_vector(self.b, self.L)
        dolfinx.fem.petsc.apply_lifting(self.b, [self.a], bcs=[self.bcs])
        self.b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        dolfinx.fem.petsc.set_bc(self.b, self.bcs)
        self.ksp.setOperators(self.A)  # new values: factorize again
        self.ksp.solve(self.b, self.solution.x.petsc_vec)
        self.solution.x.scatter_forward()
        return self.solution


def unit_square(resolution, cell_type):
    """The N×N mesh of the unit square on ``MPI.COMM_SELF`` (one sample, one process)."""
    kind = {"triangle": dolfinx.mesh.CellType.triangle, "quadrilateral": dolfinx.mesh.CellType.quadrilateral}
    return dolfinx.mesh.create_unit_square(MPI.COMM_SELF, resolution, resolution, kind[cell_type])


def p1_at_cell_centres(space, resolution):
    """Sparse evaluation of a P1 function at the N×N square centres.

    Returns ``(dofs, weights)``, both ``(N*N, 3)``: the value at centre ``k``
    (row-major over the ``(N, N)`` grid) is ``sum(u[dofs[k]] * weights[k])``,
    with the barycentric coordinates of the centre in a triangle that
    contains it as weights. This is exact for P1 (affine on each triangle).
    """
    mesh = space.mesh
    x, y = cell_centres(resolution)
    points = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    tree = dolfinx.geometry.bb_tree(mesh, mesh.topology.dim)
    candidates = dolfinx.geometry.compute_collisions_points(tree, points)
    colliding = dolfinx.geometry.compute_colliding_cells(mesh, candidates, points)
    geometry_dofs = mesh.geometry.dofmap
    coordinates = mesh.geometry.x[:, :2]
    dofs = np.empty((len(points), 3), dtype=np.int32)
    weights = np.empty((len(points), 3))
    for k, point in enumerate(points):
        cell = colliding.links(k)[0]
        vertices = coordinates[geometry_dofs[cell]]
        # barycentric coordinates: point = v0 + l1 (v1 - v0) + l2 (v2 - v0)
        matrix = np.stack([vertices[1] - vertices[0], vertices[2] - vertices[0]], axis=1)
        l1, l2 = np.linalg.solve(matrix, point[:2] - vertices[0])
        weights[k] = (1.0 - l1 - l2, l1, l2)
        # For P1 on an affine mesh the cell's dofs follow its vertices' local order.
        dofs[k] = space.dofmap.cell_dofs(cell)
    return dofs, weights


def cell_grid_order(mesh, resolution):
    """Cell indices of a quadrilateral N×N mesh in row-major grid order (row = y).

    ``values[cell_grid_order(mesh, N)].reshape(N, N)`` puts the values of a
    piecewise-constant field (one per cell) on the N×N grid.
    """
    tdim = mesh.topology.dim
    cells = np.arange(mesh.topology.index_map(tdim).size_local, dtype=np.int32)
    midpoints = dolfinx.mesh.compute_midpoints(mesh, tdim, cells)
    column = np.floor(midpoints[:, 0] * resolution).astype(np.int64)
    row = np.floor(midpoints[:, 1] * resolution).astype(np.int64)
    order = np.empty(resolution * resolution, dtype=np.int32)
    order[row * resolution + column] = cells
    return order
