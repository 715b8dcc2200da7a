"""Coarsening in depth: halve the residual blocks, double the time step.

Gaedke-Merzhäuser et al. (2021, §2.2.1) ("multilevel discretization"): the coarser network
discretizes the same ODE on ``[0, T]`` with ``K/2`` blocks and time step
``2h``. Every :class:`~keras_multilevel.layers.ResidualStack` of the model is
coarsened this way; every other parameter (the opening map ``Q``, the head)
is shared unchanged between levels (an :class:`Identity` transfer).
"""

import keras

from keras_multilevel.hierarchy.coarsening import Coarsening
from keras_multilevel.hierarchy.interpolation import PiecewiseConstant, get_interpolation
from keras_multilevel.hierarchy.transfer import Identity, Transfer, check_correspondence
from keras_multilevel.layers.residual import ResidualStack


def walk_layers(model):
    """Yields every layer of a model, descending into nested models."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer)


def residual_stacks(model):
    """The model's residual stacks, the layers depth coarsening halves."""
    return [layer for layer in walk_layers(model) if isinstance(layer, ResidualStack)]


def _wrapping_layers(model):
    """The model's layers (not models, not stacks) that hold a residual stack among their own sublayers."""
    return [
        layer for layer in walk_layers(model)
        if not isinstance(layer, (keras.Model, ResidualStack))
        and any(isinstance(inner, ResidualStack) for inner in layer._flatten_layers(include_self=False))
    ]


def _two_adic(n):
    """How many times ``n`` can be halved: the exponent of 2 in ``n``."""
    count = 0
    while n % 2 == 0:
        n //= 2
        count += 1
    return count


class DepthCoarsening(Coarsening):
    """Builds coarser networks with half the residual blocks (Gaedke-Merzhäuser et al., 2021, §2.2.1).

    Args:
        interpolation: ``"constant"`` (piecewise constant in time, Gaedke-Merzhäuser et al., 2021)
            or ``"linear"`` (Jacob, 2024, §4.2).
    """

    name = "depth"

    def __init__(self, interpolation="constant"):
        self.interpolation = get_interpolation(interpolation)

    def check(self, model, levels):
        """Raises ``ValueError`` unless ``model`` can be coarsened ``levels - 1`` times."""
        if not isinstance(model, keras.Model):
            raise ValueError(f"Expected a keras.Model to coarsen, got {type(model).__name__}.")
        if not (isinstance(model, keras.Sequential) or _is_functional(model)):
            raise ValueError(
                f"Depth coarsening clones the model, which needs a Sequential or functional "
                f"model; {type(model).__name__} is a subclassed model. Build it with "
                "keras.Sequential or the functional API."
            )
        stacks = residual_stacks(model)
        hidden = _wrapping_layers(model)
        if hidden:
            wrapper = hidden[0]
            raise ValueError(
                f"Layer {wrapper.name!r} ({type(wrapper).__name__}) of model {model.name!r} holds a residual stack "
                "inside it, where depth coarsening cannot reach: it rebuilds the model from its config with fewer "
                "blocks per stack, so each stack must be a layer of the model itself. Call the DenseResidualStack "
                "or ConvResidualStack in the functional model (or Sequential) directly, next to your layer, instead "
                "of inside it."
            )
        if not stacks:
            raise ValueError(
                f"Model {model.name!r} has no coarsenable layer: depth coarsening needs at least "
                "one DenseResidualStack or ConvResidualStack (see kml.layers)."
            )
        most = 1 + min(_two_adic(stack.blocks) for stack in stacks)
        if levels > most:
            shallowest = min(stacks, key=lambda s: _two_adic(s.blocks))
            raise ValueError(
                f"levels={levels} needs every residual stack's block count to be divisible by "
                f"2**{levels - 1} = {2 ** (levels - 1)}, but layer {shallowest.name!r} has "
                f"{shallowest.blocks} blocks: use levels <= {most}, or a block count divisible "
                f"by {2 ** (levels - 1)}."
            )

    def coarsen(self, model):
        """Returns ``(coarse_model, transfer)`` for the next coarser level.

        The coarse model is a clone of ``model`` in which each residual stack
        has half the blocks (and so twice the time step); its weights are
        fresh and are set by the transfer's ``restrict``.
        """

        def clone(layer):
            config = layer.get_config()
            if isinstance(layer, ResidualStack):
                config["blocks"] = layer.blocks // 2
            return layer.__class__.from_config(config)

        coarse = keras.models.clone_model(model, clone_function=clone, recursive=True)
        stack_variables = {id(variable) for stack in residual_stacks(model) for variable in stack.trainable_variables}
        check_correspondence(model, coarse)
        operators = [
            self.interpolation if id(variable) in stack_variables else Identity()
            for variable in model.trainable_variables
        ]
        return coarse, Transfer(operators)

    def trace_key(self, model):
        """Levels with equal keys evaluate their losses with one traced function (:mod:`~keras_multilevel.optimizers.traces`).

        The levels are the same network but for the stacks' number of blocks,
        which the traced function leaves open; what it fixes is how many
        blocks each iteration of every stack's loop takes.
        """
        return tuple(stack.unroll for stack in residual_stacks(model))

    def shared_transfer(self, hierarchy):
        """The finest level's transfer, which serves every level when the interpolation in time needs no
        number of blocks (constant: block pairs), else ``None`` (linear restriction solves with ``P^T P`` of
        the coarse level's size)."""
        if len(hierarchy) < 2 or not isinstance(self.interpolation, PiecewiseConstant):
            return None
        return hierarchy[0].transfer

    def relative_cost(self, model, finest):
        """Cost of a gradient of ``model`` per gradient of ``finest``: the ratio of
        their residual blocks, ``2^-i`` on level ``i`` (Gaedke-Merzhäuser et al., 2021, eq 10)."""
        return self.size(model) / self.size(finest)

    def describe(self):
        """One line for the hierarchy's table."""
        return f"depth ({self.interpolation.name} interpolation in time)"

    def get_config(self):
        return {"interpolation": self.interpolation.name}

    size_label = "blocks"

    def size(self, model):
        """What a level's row of the hierarchy table shows: residual blocks in total."""
        return sum(stack.blocks for stack in residual_stacks(model))


def _is_functional(model):
    from keras.src.models.functional import Functional

    return isinstance(model, Functional)
