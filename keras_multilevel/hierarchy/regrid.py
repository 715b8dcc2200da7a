"""Moving a trained network to another grid, up or down the levels of a hierarchy (Haber et al., 2018, §4.1).

A network trained on ``N x N`` images runs on ``M = N 2^k`` without
retraining when a hierarchy relates its weights at the two grids: each
halving is a coarsening (``coarsen`` and the transfer's ``restrict``, the
``Pi`` of a V-cycle), each doubling its inverse (``refine`` and the
transfer's ``prolong_iterate``, the growth of coarse-to-fine training,
Haber et al., 2018, Algorithm 1 line 5). Two hierarchies do this:

* ``"resolution"`` (:class:`~keras_multilevel.hierarchy.ResolutionCoarsening`):
  the *same* layers on the other grid, every stencil transferred, so
  no input is interpolated (Haber et al., 2018, §3.2);
* ``"pyramid"`` (:class:`~keras_multilevel.hierarchy.PyramidCoarsening`,
  for :func:`kml.models.unet(..., pyramid=True) <keras_multilevel.models.unet>`):
  at ``N/2`` the network without its finest grid (its coarser grids,
  reading the averaged input without the finest grid's pooled features), at ``2N`` the network with a finer grid added
  whose correction starts at zero, so it predicts the ``N`` network's
  output on the 2x2-averaged input, prolongated bilinearly: every stencil
  keeps the physical scale it was trained at.

The zoo's measurements of both, at ``N/2`` and ``2N`` on fresh data, are in
the repository's ``benchmarks/results/resolution_transfer.md``.
"""

import math

from keras_multilevel.hierarchy.pyramid import PyramidCoarsening
from keras_multilevel.hierarchy.resolution import ResolutionCoarsening, _grid, _layers, with_resolution

COARSENINGS = ("resolution", "pyramid")


def at_resolution(model, resolution, interpolation="constant", stencil_prolongation="identity", coarsening="resolution"):
    """``model`` moved to ``resolution x resolution`` inputs with its weights transferred (Haber et al., 2018, §4.1).

    Args:
        model: a built Sequential or functional model on square ``N x N``
            images (for ``coarsening="pyramid"``, a pyramid U-Net).
        resolution: ``N 2^k`` for an integer ``k`` (``k < 0`` coarser).
        interpolation, stencil_prolongation: the settings of coarsening in
            resolution (:class:`~keras_multilevel.hierarchy.ResolutionCoarsening`;
            the second only matters for ``k > 0``).
        coarsening: the hierarchy that moves the network (module docstring):
            ``"resolution"`` (the same layers on the other grid; Haber et
            al.'s (2018, §3.2) stencil transfer) or ``"pyramid"`` (a pyramid
            U-Net's grids removed or added). Measured on the zoo's six
            pyramid U-Nets (benchmarks/results/resolution_transfer*.md): at
            2N the pyramid gave 0.9-1.9x their error at N on five, 7x on
            Poisson N = 16, where prolongating the exact solution's
            average from 16 to 32 alone loses 5.5x; the stencils gave
            6-55x. At N/2 the pyramid gave 0.15-0.54x the error of the
            weights unchanged on all six.

    Returns:
        A new, uncompiled model; ``model`` is unchanged.

    Raises:
        ValueError: a resolution that is not ``N 2^k``, a model the
            hierarchy cannot move (the message says why), or resolution
            settings given with ``coarsening="pyramid"``.
    """
    if coarsening == "resolution":
        strategy = ResolutionCoarsening(interpolation, stencil_prolongation)
        _layers(model)
    elif coarsening == "pyramid":
        if (interpolation, stencil_prolongation) != ("constant", "identity"):
            raise ValueError(
                "`interpolation` and `stencil_prolongation` set coarsening in resolution; the pyramid adds or "
                "removes grids and has neither: leave them out with coarsening='pyramid'."
            )
        strategy = PyramidCoarsening()
    else:
        raise ValueError(f"`coarsening` must be one of {COARSENINGS}, got {coarsening!r}.")
    height, width = _grid(model)
    valid = isinstance(resolution, int) and not isinstance(resolution, bool) and resolution > 0
    ratio = resolution / height if valid else 0
    if height != width or not valid or not math.log2(ratio).is_integer():
        raise ValueError(
            f"`resolution` must be N * 2**k for the model's N = {height} (square inputs) and an "
            f"integer k, got {resolution!r}."
        )
    strategy.check(model, 1 + max(0, round(math.log2(1 / ratio))))
    current = model
    while _grid(current)[0] > resolution:
        coarse, transfer = strategy.coarsen(current)
        _assign(coarse, transfer.restrict(current.trainable_variables))
        current = coarse
    while _grid(current)[0] < resolution:
        fine, transfer = strategy.refine(current)
        _assign(fine, transfer.prolong_iterate(current.trainable_variables, fine.trainable_variables))
        current = fine
    if current is model:
        current = with_resolution(model, resolution)
        _assign(current, model.trainable_variables)
    for variable, value in zip(current.non_trainable_variables, model.non_trainable_variables, strict=True):
        variable.assign(value)  # normalization statistics: per channel, the same on every grid
    return current


def _assign(model, values):
    for variable, value in zip(model.trainable_variables, values, strict=True):
        variable.assign(value)
