"""The registry of PDE problems: what one example holds and how its randomness is derived.

Each problem (Ponce et al., 2022, §8.1 Poisson, §8.2 Darcy) declares the NumPy record
of one example (the fields stored in a shard), its default sizes and how to
build its solver. Every example draws its random numbers from its own
generator, ``numpy.random.default_rng(SeedSequence([seed, problem code, N,
index]))``: an example depends only on (seed, problem, resolution, index),
never on sharding, the number of workers or MPI ranks.
"""

import dataclasses

import numpy as np

MIN_RESOLUTION = 4


@dataclasses.dataclass(frozen=True)
class Problem:
    """One PDE data set: its name, seed code, record layout and defaults."""

    name: str
    code: int
    description: str
    default_samples: int
    grid_fields: tuple  # (N, N) float32 fields
    other_fields: tuple  # (name, numpy dtype, shape) of the non-grid fields
    solver: str  # "module:Class" of the solver, imported lazily (dolfinx)
    # Peak memory a solver takes per cell of the N×N mesh: the growth of a fresh process'
    # peak RSS from building the solver and solving one example, measured at N = 512 and
    # 1024 (Poisson 1.26-1.30 kB, Darcy 3.54 kB; mesh, forms, matrix and its factors),
    # rounded up. It is the N² term of generation.memory_needed.
    solver_bytes_per_cell: int

    def record_dtype(self, resolution):
        """The structured dtype of one stored example."""
        fields = [("index", "<i8")]
        fields += [(name, "<f4", (resolution, resolution)) for name in self.grid_fields]
        fields += [(name, dtype, shape) for name, dtype, shape in self.other_fields]
        return np.dtype(fields)

    def record_bytes(self, resolution):
        """Bytes of one stored example, computed in Python integers (no NumPy overflow for huge N)."""
        other = sum(np.dtype(dtype).itemsize * int(np.prod(shape)) for _, dtype, shape in self.other_fields)
        return 8 + 4 * resolution * resolution * len(self.grid_fields) + other

    def make_solver(self, resolution):
        """Builds the FEniCSx solver (compiles the forms) for resolution N."""
        import importlib

        module, cls = self.solver.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), cls)(resolution)

    def rng(self, seed, resolution, index):
        """The generator of example ``index``: a function of (seed, problem, N, index) only."""
        return np.random.default_rng(np.random.SeedSequence([seed, self.code, resolution, index]))


PROBLEMS = {
    "poisson": Problem(
        name="poisson",
        code=1,
        description="Ponce et al. (2022, §8.1): -div(κ grad u) = f, u = 0 on ∂Ω, P1 Lagrange; inputs [κ, x, y], target u",
        default_samples=10_000,
        grid_fields=("kappa", "solution"),
        other_fields=(("parameters", "<f8", (5,)),),
        solver="poisson:PoissonSolver",
        solver_bytes_per_cell=1_400,
    ),
    "darcy": Problem(
        name="darcy",
        code=2,
        description="Ponce et al. (2022, §8.2): mixed RT/DG0 Darcy flow, k = exp(u) log-normal; targets cell pressure and Q (eq 43)",
        default_samples=10_000,
        grid_fields=("log_permeability", "pressure"),
        other_fields=(("outflow_flux", "<f8", ()),),
        solver="darcy:DarcySolver",
        solver_bytes_per_cell=3_700,
    ),
}


def get(name):
    """The problem called ``name``; a ValueError names the allowed ones."""
    if not isinstance(name, str) or name not in PROBLEMS:
        raise ValueError(f"`name` must be one of {sorted(PROBLEMS)}, got {name!r}.")
    return PROBLEMS[name]


def check_resolution(resolution):
    """N must be an integer >= 4."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < MIN_RESOLUTION:
        raise ValueError(f"`resolution` must be an integer >= {MIN_RESOLUTION}, got {resolution!r}.")
    return int(resolution)


def check_seed(seed):
    """Seeds are non-negative integers (they enter a NumPy SeedSequence)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}.")
    return int(seed)


def check_positive(value, argument):
    """``samples`` and ``workers`` are positive integers."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{argument}` must be a positive integer, got {value!r}.")
    return int(value)


def make_example(problem, solver, seed, index):
    """Example ``index`` as one record (a structured scalar) of ``problem.record_dtype``."""
    values = solver.example(problem.rng(seed, solver.resolution, index))
    record = np.zeros((), dtype=problem.record_dtype(solver.resolution))
    record["index"] = index
    for name in problem.grid_fields + tuple(field[0] for field in problem.other_fields):
        record[name] = values[name]
    return record
