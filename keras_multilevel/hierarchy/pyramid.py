"""Coarsening a pyramid U-Net by its finest grid: the coarse network is the same network without it.

Coarsening in resolution (:mod:`~keras_multilevel.hierarchy.resolution`)
runs the *same* network at ``N/2``, so every stencil spans twice the
physical distance there and a stencil trained at ``N/2`` means something
else at ``N`` (Haber et al., 2018, §3.2).
A pyramid U-Net (:func:`keras_multilevel.models.unet` with ``pyramid=True``)
already holds its coarser networks: its grids ``1, 2, ...`` read ``R^i x``
and predict ``y_i = output_i(d_i) + P y_{i+1}``, so what runs on grids
``1, 2, ...`` is itself a pyramid U-Net on the ``N/2`` input,
``kml.models.unet(N/2, filters=filters[1:], pyramid=True)``, each stencil at
the physical scale it has in the fine network. This coarsening takes that
network as the coarse level, as a multigrid hierarchy takes the coarser
grids of Haber et al.'s (2018, §3.1) image pyramid; coarse to fine (Haber et al., 2018, Algorithm 1) then
trains the coarse network and *grows* it a grid.

Between the fine network and the coarse one (the coarse layer
``down_d_*``, ``up_d_*``, ``output_d`` is the fine layer one grid deeper,
``d + 1``):

* a variable of a layer both have is the same on both levels
  (``Pi = P = R = I``);
* the second grid's first stencil (``down_1_conv_0``) reads
  ``[R x, pooled d_0]`` in the fine network and ``R x`` alone in the coarse
  one: ``Pi`` and ``R = P^T`` keep its rows for ``R x``, ``P`` pads the rows
  for the pooled fine features with zeros (``Pi P = I``);
* a variable of the finest grid alone (``down_0_*``, ``up_0_*``,
  ``output``) has no coarse counterpart: ``P`` gives it a zero correction.

A V-cycle's coarse correction therefore never moves the finest grid, and
the tau-corrected coarse gradient at ``Pi x`` is ``R`` of the fine one
(first-order coherence, Gaedke-Merzhäuser et al., 2021, eq 9, as for every coarsening). Coarse to fine
grows the grid (:meth:`PyramidTransfer.prolong_iterate`): the fine network
takes the trained coarse weights, its finest grid keeps the weights it
has, and its finest output layer and the pooled rows start at zero, so the
grown network's first prediction is exactly the coarse network's,
prolongated bilinearly.
"""

import keras
import tensorflow as tf

from keras_multilevel.hierarchy.coarsening import Coarsening
from keras_multilevel.hierarchy.depth import _is_functional
from keras_multilevel.hierarchy.resolution import ImageBatches, forward_cost
from keras_multilevel.hierarchy.transfer import TransferMaps
from keras_multilevel.models import unet


def unet_arguments(model):
    """The :func:`keras_multilevel.models.unet` arguments that rebuild ``model``, a pyramid U-Net.

    Raises ``ValueError`` unless ``model`` is, layer for layer and setting
    for setting, what ``kml.models.unet(..., pyramid=True)`` builds.
    """
    refusal = (
        "coarsening='pyramid' removes the finest grid of a pyramid U-Net as kml.models.unet(..., pyramid=True) "
        f"builds it; model {getattr(model, 'name', model)!r} "
    )
    if not isinstance(model, keras.Model) or not _is_functional(model) or len(model.inputs) != 1:
        raise ValueError(refusal + "is not a functional keras.Model with one input.")
    names = {layer.name for layer in model.layers}
    if not {"down_0_conv_0", "output"} <= names:
        raise ValueError(refusal + "has no layers 'down_0_conv_0' and 'output'. Build it with kml.models.unet.")
    grids = _count(names, "down_{}_conv_0")
    first = model.get_layer("down_0_conv_0")
    arguments = {
        "resolution": model.inputs[0].shape[1],
        "channels": model.inputs[0].shape[-1],
        "outputs": model.get_layer("output").filters,
        "filters": tuple(model.get_layer(f"down_{depth}_conv_0").filters for depth in range(grids)),
        "convolutions": _count(names, "down_0_conv_{}"),
        "kernel_size": first.kernel_size[0],
        "activation": first.get_config()["activation"],
        "pyramid": True,
        "log_input": "down_0_log" in names,
        "name": model.name,
    }
    try:
        reference = unet(**arguments)
    except ValueError as error:
        raise ValueError(refusal + f"cannot be rebuilt by kml.models.unet: {error}") from None
    ours = [_settings(layer.get_config()) for layer in reference.layers]
    theirs = [_settings(layer.get_config()) for layer in model.layers]
    if ours != theirs:
        differing = next(
            (b.get("name") for a, b in zip(ours, theirs) if a != b), f"{len(theirs)} layers against {len(ours)}"
        )
        raise ValueError(refusal + f"differs from kml.models.unet(**{arguments}) at layer {differing!r}.")
    return arguments


def is_pyramid_unet(model):
    """Whether ``model`` is what ``kml.models.unet(..., pyramid=True)`` builds (:func:`unet_arguments` accepts it)."""
    try:
        unet_arguments(model)
    except ValueError:
        return False
    return True


def _settings(config):
    """A layer config without the ``shared_object_id`` entries Keras adds while it loads a model."""
    if isinstance(config, dict):
        return {key: _settings(value) for key, value in config.items() if key != "shared_object_id"}
    if isinstance(config, (list, tuple)):
        return [_settings(value) for value in config]
    return config


def _count(names, pattern):
    """How many of ``pattern.format(0), pattern.format(1), ...`` are in ``names``, in a row."""
    count = 0
    while pattern.format(count) in names:
        count += 1
    return count


def _deeper(name):
    """The fine network's name of the coarse network's layer ``name``: the same layer one grid deeper."""
    if name == "output":
        return "output_1"
    kind, depth, *rest = name.split("_")
    return "_".join([kind, str(int(depth) + 1), *rest])


class PyramidTransfer(ImageBatches, TransferMaps):
    """Between a pyramid U-Net and itself without its finest grid (see the module docstring).

    Args:
        sources: per fine trainable variable, the index of the coarse
            variable it holds (a leading block of it, where it is larger),
            or ``None`` for a variable of the finest grid alone.
        fine_shapes, coarse_shapes: the variables' shapes on either level.
        new_output: the indices of the finest output layer's variables,
            which a grown network starts at zero.
        grid: the fine input's ``(height, width)``.
    """

    def __init__(self, sources, fine_shapes, coarse_shapes, new_output, grid):
        ImageBatches.__init__(self, grid, "linear")  # the network's own prolongation of a prediction
        self.sources, self.new_output = list(sources), frozenset(new_output)
        self.fine_shapes, self.coarse_shapes = [tuple(s) for s in fine_shapes], [tuple(s) for s in coarse_shapes]
        self.count = len(self.sources)

    @property
    def coarse_count(self):
        return len(self.coarse_shapes)

    def _map(self, direction, tensors):
        if direction == "prolong":  # zero rows and zero variables where the coarse network has none
            return [
                tf.zeros(shape, tensors[0].dtype) if source is None
                else tf.pad(tensors[source], [[0, f - c] for f, c in zip(shape, self.coarse_shapes[source])])
                for source, shape in zip(self.sources, self.fine_shapes)
            ]
        coarse = [None] * self.coarse_count  # Pi and R = P^T: the leading block
        for tensor, source in zip(tensors, self.sources):
            if source is not None:
                coarse[source] = tensor[tuple(slice(0, size) for size in self.coarse_shapes[source])]
        return coarse

    def prolong_iterate(self, coarse, fine):
        """The grown network (Haber et al., 2018, Algorithm 1 line 5): ``P coarse`` on the coarse network's variables,
        the finest grid's own from ``fine``, its output layer at zero."""
        values = self.prolong(coarse)
        return [
            fine[index] if source is None and index not in self.new_output else value
            for index, (source, value) in enumerate(zip(self.sources, values))
        ]

    def __repr__(self):
        own = sum(source is None for source in self.sources)
        return (
            f"PyramidTransfer({self.grid[0]}x{self.grid[1]} -> {self.grid[0] // 2}x{self.grid[1] // 2}, "
            f"{self.count - own} shared variables, {own} of the finest grid alone)"
        )


class PyramidCoarsening(Coarsening):
    """Builds the pyramid U-Net without its finest grid, on inputs of half the resolution (module docstring).

    The model must be what :func:`keras_multilevel.models.unet` builds with
    ``pyramid=True``; ``levels`` is at most its number of grids. The coarse
    level trains on the 2x2-averaged batch, as in resolution coarsening.
    """

    name = "pyramid"
    size_label = "input, grids"

    def check(self, model, levels):
        """Raises ``ValueError`` unless ``model`` is a pyramid U-Net with at least ``levels`` grids."""
        filters = unet_arguments(model)["filters"]
        if levels > len(filters):
            raise ValueError(
                f"levels={levels} removes {levels - 1} grid(s) of model {model.name!r}, which has {len(filters)} "
                f"(filters {filters}): use levels <= {len(filters)}, or a U-Net with more grids."
            )

    def coarsen(self, model):
        """Returns ``(coarse_model, transfer)``: the network without its finest grid at ``N/2``, fresh weights."""
        arguments = unet_arguments(model)
        coarse = unet(**dict(arguments, resolution=arguments["resolution"] // 2, filters=arguments["filters"][1:]))
        return coarse, self.transfer(model, coarse)

    def refine(self, model):
        """Returns ``(fine_model, transfer)``: ``model`` with a finer grid added, on ``2N x 2N`` inputs, fresh weights.

        The new finest grid has as many channels as ``model``'s finest
        (``filters = (filters[0], *filters)``). Its weights set by
        :meth:`PyramidTransfer.prolong_iterate`, the fine network predicts
        exactly ``model``'s prediction on the 2x2-averaged input,
        bilinearly prolongated (the module docstring).
        """
        arguments = unet_arguments(model)
        filters = arguments["filters"]
        fine = unet(**dict(arguments, resolution=2 * arguments["resolution"], filters=(filters[0], *filters)))
        return fine, self.transfer(fine, model)

    def transfer(self, fine_model, coarse_model):
        """The :class:`PyramidTransfer` from ``fine_model`` to ``coarse_model`` (it without its finest grid)."""
        index = {id(variable): i for i, variable in enumerate(coarse_model.trainable_variables)}
        sources = {}
        for layer in coarse_model.layers:
            counterpart = fine_model.get_layer(_deeper(layer.name)) if layer.trainable_variables else None
            for coarse, fine in zip(layer.trainable_variables, getattr(counterpart, "trainable_variables", []),
                                    strict=True):
                sources[id(fine)] = index[id(coarse)]
        new_output = {id(variable) for variable in fine_model.get_layer("output").trainable_variables}
        fine_variables = fine_model.trainable_variables
        return PyramidTransfer(
            [sources.get(id(variable)) for variable in fine_variables],
            [variable.shape for variable in fine_variables],
            [variable.shape for variable in coarse_model.trainable_variables],
            [i for i, variable in enumerate(fine_variables) if id(variable) in new_output],
            fine_model.inputs[0].shape[1:3],
        )

    def relative_cost(self, model, finest):
        """Cost of a gradient of ``model`` per gradient of ``finest``: the ratio of forward multiply-adds."""
        return forward_cost(model, finest)

    def describe(self):
        """One line for the hierarchy's table."""
        return "pyramid (the finest grid of the U-Net removed per level; 2x2-averaged data, bilinear prolongation)"

    def get_config(self):
        return {}

    def size(self, model):
        """What a level's row of the hierarchy table shows: the input grid and the number of grids."""
        height, width = model.inputs[0].shape[1:3]
        grids = _count({layer.name for layer in model.layers}, "down_{}_conv_0")
        return f"{height}x{width}, {grids}"
