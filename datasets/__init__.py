"""PDE regression data sets of Ponce et al. (2022, §8), regenerated with FEniCSx (DOLFINx 0.11).

Installed as ``keras_multilevel.pde`` (the repository's top-level
``datasets/`` folder). Modules, one concept each:

- :mod:`.problems` the one registry of each problem (names, record layouts, per-example seeds,
  features and targets, plot panels, model-card text),
- :mod:`.fem` FEniCSx set-up and the N×N grid convention,
- :mod:`.poisson` (Ponce et al., 2022, §8.1) and :mod:`.darcy` (Ponce et al., 2022, §8.2) solvers,
- :mod:`.random_field` the log-permeability field of the Darcy problem,
- :mod:`.shards` atomic, checksummed shard files,
- :mod:`.generation` sharded, resumable generation over processes and MPI ranks,
- :mod:`.builders` the TensorFlow Datasets builders ``poisson`` and ``darcy``,
- :mod:`.integrity` checksums of the TFDS records, :mod:`.locks` one run per data set,
- :mod:`.files` files created in shared folders, never written through a link,
- :mod:`.plots` pictures of examples, :mod:`.cli` the ``datasets`` command.

Nothing here imports dolfinx or TensorFlow at package import time.
"""
