"""Datasets: the co-centric circles toy problem and the PDE regression data.

`concentric_circles` is the classification problem of paper 000 §4
(``../shared/papers/000_e714f331a8b33d0e.txt``, eq 11). The PDE datasets
(Poisson, Darcy) are regenerated with FEniCSx by the TFDS builders of the
top-level ``datasets/`` folder (installed as ``keras_multilevel_datasets``);
this module is their thin public front.
"""

import numpy as np


def concentric_circles(samples, seed=0):
    """Samples the co-centric circles problem of paper 000 §4, eq 11.

    Points ``x`` are uniform in ``[-3, 3]^2``; the label is one-hot over two
    classes, class 1 when ``2 <= ||x|| < 3`` and class 0 otherwise.

    Args:
        samples: number of points, a positive integer.
        seed: integer seed of the NumPy generator.

    Returns:
        ``(x, y)``: float32 arrays of shapes ``(samples, 2)`` and ``(samples, 2)``.
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples <= 0:
        raise ValueError(f"`samples` must be a positive integer, got {samples!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"`seed` must be an integer, got {seed!r}.")
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, size=(samples, 2)).astype("float32")
    radius = np.linalg.norm(x, axis=1)
    label = ((radius >= 2.0) & (radius < 3.0)).astype("int64")
    return x, np.eye(2, dtype="float32")[label]
