"""The registry of PDE problems: every fact about a problem, written once.

Each problem (Ponce et al., 2022, §8.1 Poisson, §8.2 Darcy) declares the NumPy record
of one example (the fields stored in a shard), its default sizes and how to
build its solver, and what the rest of the package reads from here: the
features of its TFDS records and which of them are targets (:mod:`.builders`,
``kml.datasets.load``), the panels of its pictures (:mod:`.plots`) and the
sentences a model card says about it (``keras_multilevel.zoo.card``). Every example draws its random numbers from its own
generator, ``numpy.random.default_rng(SeedSequence([seed, problem code, N,
index]))``: an example depends only on (seed, problem, resolution, index),
never on sharding, the number of workers or MPI ranks.
"""

import dataclasses

import numpy as np

MIN_RESOLUTION = 4


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature of a TFDS record besides ``inputs`` and ``index``: read from the stored ``field``."""

    name: str
    field: str
    dtype: str  # numpy dtype of the feature
    shape: tuple | None  # None: the (N, N) grid
    doc: str
    exact: bool = False  # float64 stored as bytes (TFDS writes float64 through float32 lists otherwise)
    label: str | None = None  # its panel's title in the pictures of a target
    note: str | None = None  # a line under a panel's title: str.format of the example's features (as lists)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One PDE data set: its name, seed code, record layout and defaults, its features, pictures and card text."""

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
    # The ``inputs`` feature: channels [field, x, y] at the cell centres.
    input_field: str  # the stored grid field of channel 0
    input_doc: str
    input_label: str  # its panel's title in the pictures
    input_note: str | None  # a line under that title (as Feature.note)
    features: tuple  # Feature s, the targets first
    targets: tuple  # names of the features a model can be trained on; the first is the default (as_supervised)
    # What a model card says (its {data} is the data sets' paper as the card cites it): what is predicted,
    # what input channel 0 holds, and that channel's symbol.
    card_output: str
    card_input: str
    card_symbol: str

    @property
    def default_target(self):
        return self.targets[0]

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
        input_field="kappa",
        input_doc="channels κ, x, y at cell centres",
        input_label="κ (input)",
        input_note="k=({parameters[0]:.2f},{parameters[1]:.2f}) a=({parameters[2]:.2f},{parameters[3]:.2f}) "
        "α={parameters[4]:.2f}",
        features=(
            Feature("target", "solution", "float32", None, "P1 solution u at cell centres", label="u (target)"),
            Feature("parameters", "parameters", "float64", (5,), "k_x, k_y, a_x, a_y, alpha", exact=True),
        ),
        targets=("target",),
        card_output="the solution `u` of the Poisson problem `-div(κ grad u) = f` on the unit square with `u = 0` on "
        "the boundary and the fixed source `f = 32 exp(-4((x - 1/4)² + (y - 1/4)²))` ({data}, §8.1, eq 41)",
        card_input="κ, the diffusion coefficient `1.1 + cos(k_x π (x' + a_x)) cos(k_y π (y' + a_y))` (rotated "
        "coordinates)",
        card_symbol="κ",
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
        input_field="log_permeability",
        input_doc="channels log k, x, y at cell centres",
        input_label="log-permeability (input)",
        input_note=None,
        features=(
            Feature("pressure", "pressure", "float32", None, "DG0 pressure of each cell", label="pressure p (target)",
                    note="Q = {outflow_flux:.4f}"),
            Feature("outflow_flux", "outflow_flux", "float64", (), "Q, mean outflow flux (Ponce et al., 2022, eq 43)",
                    exact=True),
        ),
        targets=("pressure", "outflow_flux"),
        card_output="the pressure `p` of Darcy flow `q = -k grad p`, `div q = 0` on the unit square, `p = 1` at "
        "`x = 0`, `p = 0` at `x = 1`, no flow through `y = 0, 1` ({data}, §8.2, eq 42)",
        card_input="`log k`, the log-permeability: a Gaussian field with exponential covariance (σ = 1, λ = 0.3)",
        card_symbol="log k",
    ),
}


NAMES = tuple(PROBLEMS)


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
