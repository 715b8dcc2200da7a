"""The N×N grid of cell centres (no FEniCSx import; see :mod:`.fem` for the convention)."""

import numpy as np


def cell_centres(resolution):
    """Coordinates ``(x, y)`` of the N×N square centres, each an ``(N, N)`` array, ``a[i, j]`` at ((j+½)/N, (i+½)/N)."""
    centres = (np.arange(resolution) + 0.5) / resolution
    y, x = np.meshgrid(centres, centres, indexing="ij")
    return x, y
