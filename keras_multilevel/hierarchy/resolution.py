"""Coarsening in resolution: the same network on a grid of half the pixels.

Haber et al. (2018, §3.1-3.2) and Jacob (2024, §4.3). The coarse network has the fine one's
layers; its input is the fine input restricted to ``N/2 x N/2`` by 2x2
averaging (Haber et al., 2018, eq 8; Jacob, 2024, §4.3). Its weights follow from the fine ones
variable by variable (:mod:`keras_multilevel.hierarchy.stencil`):

* a stride-1 'same' ``Conv2D`` kernel is a stencil: ``Pi`` is the Galerkin
  restriction ``s_H = G s_h`` of ``K_H = R K_h P`` (Haber et al., 2018, eqs 9-10), ``P`` the
  identity (the coarse stencil's values kept, Haber et al.'s (2018, §4.1) "original
  convolution kernels"; the default) or Haber et al.'s (2018, §3.2) least-squares inverse
  ``G^+`` (``Pi P = G G^+ = I`` for 3x3 stencils; see
  :class:`ResolutionCoarsening` for why it is not the default),
  ``R = P^T`` (the chain rule of ``s_h = P s_H``);
* a ``Dense`` kernel on a flattened feature map is an image per unit (Jacob, 2024,
  §4.3): ``Pi W = 4 R W``, ``P W = P_image W / 4``, ``R = P^T``;
* everything else (biases, pointwise ``Dense``, normalization) is the same
  on both grids.

The coarse level trains on the restricted batch (:meth:`ResolutionTransfer.restrict_data`).
:func:`~keras_multilevel.hierarchy.at_resolution` moves a trained network to any ``N 2^k`` (Haber et al., 2018, §4.1).
"""

import functools
import math

import keras
import numpy as np
import tensorflow as tf

from keras_multilevel.hierarchy import stencil as stencils
from keras_multilevel.hierarchy.coarsening import Coarsening
from keras_multilevel.hierarchy.depth import _is_functional
from keras_multilevel.hierarchy.transfer import Identity, Transfer, check_correspondence
from keras_multilevel.hierarchy.width import multiply_adds
from keras_multilevel.layers.transforms import LogCoefficient

_POOLING = (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D)
# Layers whose weights, if any, are per channel and so the same on every grid.
_GRID_FREE = (
    keras.layers.InputLayer, keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU,
    keras.layers.Dropout, keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
    keras.layers.Average, keras.layers.Maximum, keras.layers.Concatenate, keras.layers.UpSampling2D,
    keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D, keras.layers.Flatten,
    keras.layers.BatchNormalization, keras.layers.LayerNormalization, LogCoefficient, *_POOLING,
)


STENCIL_PROLONGATIONS = ("inverse", "identity")


def _check_stencil_prolongation(stencil_prolongation):
    if stencil_prolongation not in STENCIL_PROLONGATIONS:
        raise ValueError(
            f"`stencil_prolongation` must be one of {STENCIL_PROLONGATIONS}, got {stencil_prolongation!r}."
        )
    return stencil_prolongation


class Stencil:
    """One ``Conv2D`` kernel ``(k, k, in, out)``: ``Pi = G``, ``P = G^+`` or ``I``, ``R = P^T`` (Haber et al., 2018, eqs 9-10, §3.2).

    Args:
        size: ``k``.
        interpolation: the image prolongation of the Galerkin product.
        prolongation: ``"identity"`` or ``"inverse"`` (``G^+``), see :class:`ResolutionCoarsening`.
    """

    def __init__(self, size, interpolation, prolongation="identity"):
        self.size, self.interpolation = size, interpolation
        self.prolongation = _check_stencil_prolongation(prolongation)
        self.matrices = {
            "restrict": stencils.restriction_matrix(size, interpolation),
            "prolong": (
                stencils.prolongation_matrix(size, interpolation) if prolongation == "inverse" else np.eye(size * size)
            ),
        }
        self.matrices["restrict_gradient"] = self.matrices["prolong"].T

    def _map(self, direction, kernel):
        return stencils.apply_stencil_matrix(self.matrices[direction], kernel)

    def restrict(self, fine):
        return self._map("restrict", fine)

    def prolong(self, coarse):
        return self._map("prolong", coarse)

    def restrict_gradient(self, fine):
        return self._map("restrict_gradient", fine)

    def __repr__(self):
        return f"Stencil({self.size}x{self.size}, {self.interpolation}, {self.prolongation} prolongation)"


class FeatureMapWeights:
    """A ``Dense`` kernel on a flattened ``(h, w, c)`` map (Jacob, 2024, §4.3): ``Pi = 4 R``, ``P = P_image / 4``, ``R = P^T``.

    Args:
        shape: the fine feature map's ``(h, w, c)``.
        interpolation: the image prolongation.
    """

    def __init__(self, shape, interpolation):
        self.shape, self.interpolation = tuple(shape), interpolation
        self.coarse_shape = (shape[0] // 2, shape[1] // 2, shape[2])

    def restrict(self, fine):
        return stencils.restrict_weight_image(fine, self.shape)

    def prolong(self, coarse):
        return stencils.prolong_weight_image(coarse, self.coarse_shape, self.interpolation)

    def restrict_gradient(self, fine):
        """``P^T``, the adjoint of :meth:`prolong` (exact for the linear map, by autodiff)."""
        coarse = tf.zeros((math.prod(self.coarse_shape), fine.shape[-1]), dtype=fine.dtype)
        with tf.GradientTape() as tape:
            tape.watch(coarse)
            image = self.prolong(coarse)
        return tape.gradient(image, coarse, output_gradients=fine)

    def __repr__(self):
        return f"FeatureMapWeights({self.shape}, {self.interpolation})"


class ImageBatches:
    """The data half of a transfer to a coarse level on the ``N/2`` grid: it sees ``R x``, ``R y``.

    Args:
        grid: the fine input's ``(height, width)``.
        interpolation: the image prolongation, for :meth:`prolong_data`.
    """

    def __init__(self, grid, interpolation):
        self.grid, self.interpolation = tuple(grid), interpolation

    def _images(self, tensor, operation, grid):
        """Applies ``operation`` to ``tensor`` if it is an image batch on ``grid``: ``(b, h, w[, c])``."""
        if tensor is None or tensor.shape.rank not in (3, 4) or tuple(tensor.shape[1:3]) != grid:
            return tensor
        if tensor.shape.rank == 3:
            return operation(tensor[..., None])[..., 0]
        return operation(tensor)

    def restrict_data(self, data):
        """``(x, y, sample_weight)`` on the coarse grid: every image on the fine grid averaged over 2x2 cells."""
        return tf.nest.map_structure(lambda t: self._images(t, stencils.restrict_image, self.grid), data)

    def prolong_data(self, data):
        """Coarse-grid images back on the fine grid (the image prolongation ``P``), e.g. a coarse prediction."""
        coarse = (self.grid[0] // 2, self.grid[1] // 2)
        prolong = functools.partial(stencils.prolong_image, interpolation=self.interpolation)
        return tf.nest.map_structure(lambda t: self._images(t, prolong, coarse), data)


class ResolutionTransfer(ImageBatches, Transfer):
    """The variable-wise maps of :class:`Transfer` plus the data of :class:`ImageBatches`.

    Args:
        operators: one operator per trainable variable.
        grid: the fine input's ``(height, width)``.
        interpolation: the image prolongation, for :meth:`prolong_data`.
    """

    def __init__(self, operators, grid, interpolation):
        Transfer.__init__(self, operators)
        ImageBatches.__init__(self, grid, interpolation)

    def __repr__(self):
        return f"ResolutionTransfer({self.grid[0]}x{self.grid[1]} -> {self.grid[0] // 2}x{self.grid[1] // 2}, {self.operators!r})"


def _grid(model):
    """The ``(height, width)`` of the model's one image input."""
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        raise ValueError(
            f"Coarsening in resolution needs a model with one image input (batch, height, width, "
            f"channels); model {model.name!r} has inputs {[tuple(t.shape) for t in model.inputs]}."
        )
    height, width = model.inputs[0].shape[1:3]
    if height is None or width is None:
        raise ValueError(
            f"Model {model.name!r} takes images of any size ({tuple(model.inputs[0].shape)}): give "
            "keras.Input its height and width, the resolution the hierarchy coarsens."
        )
    return int(height), int(width)


def _layers(model):
    """The model's layers, checked one by one: ``ValueError`` naming the first that cannot follow the grid."""
    if not isinstance(model, keras.Model) or not (isinstance(model, keras.Sequential) or _is_functional(model)):
        raise ValueError(
            "Coarsening in resolution rebuilds the model from its config at another input size, which "
            f"needs a Sequential or functional keras.Model, got {type(model).__name__}."
        )
    for layer in model.layers:
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            raise ValueError(f"Layer {layer.name!r} uses data_format={layer.data_format!r}: use 'channels_last'.")
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.Conv2DTranspose):
            size = layer.kernel_size
            same = layer.padding == "same" or size == (1, 1)
            if tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1) or not same \
                    or size[0] != size[1] or size[0] % 2 == 0 or getattr(layer, "groups", 1) != 1:
                raise ValueError(
                    f"Layer {layer.name!r}: coarsening in resolution transfers stride-1, undilated, "
                    f"ungrouped 'same' convolutions with odd square kernels (Haber et al., 2018, eqs 9-10); it has "
                    f"kernel {size}, strides {layer.strides}, dilation {layer.dilation_rate}, padding "
                    f"{layer.padding!r}. Downsample with AveragePooling2D instead of strides."
                )
        elif isinstance(layer, _POOLING):
            if tuple(layer.pool_size) != tuple(layer.strides) or layer.padding != "valid":
                raise ValueError(
                    f"Pooling layer {layer.name!r} must pool non-overlapping cells (pool_size == strides, "
                    "padding='valid') to commute with the 2x2 restriction."
                )
        elif not isinstance(layer, (keras.layers.Dense, *_GRID_FREE)):
            raise ValueError(
                f"Coarsening in resolution cannot transfer layer {layer.name!r} ({type(layer).__name__}): "
                "it supports Conv2D, Dense (pointwise or after Flatten), pooling, UpSampling2D, "
                "Flatten, normalization and parameter-free layers. Reshape and Lambda fix or hide the "
                "grid and are refused."
            )
    return list(model.layers)


def _weighted(model):
    """The model's Dense and Conv2D layers, whose multiply-adds make a level's cost."""
    return [layer for layer in model.layers if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))]


def forward_cost(model, finest):
    """The cost of a gradient of ``model`` per gradient of ``finest``: the ratio of their forward
    multiply-adds in Dense and Conv2D layers."""
    return multiply_adds(_weighted(model)) / multiply_adds(_weighted(finest))


def _smallest_grid(model):
    """The smallest spatial extent of any layer output: the grid the deepest pooling leaves."""
    sizes = [
        min(tensor.shape[1:3])
        for layer in model.layers
        for tensor in tf.nest.flatten(layer.output)
        if len(tensor.shape) == 4
    ]
    return min(sizes)


def with_resolution(model, height, width=None):
    """A fresh, uncompiled copy of ``model`` (same layers, names, config) taking ``height x width`` images."""
    width = height if width is None else width
    config = model.get_config()
    channels = model.inputs[0].shape[-1]
    shape = [None, height, width, channels]
    for layer in config["layers"]:
        layer.pop("build_config", None)  # built again from the new input shape
        if layer["class_name"] == "InputLayer":
            layer["config"]["batch_shape"] = shape
    if "build_input_shape" in config:
        config["build_input_shape"] = shape
    return type(model).from_config(config)


def _operators(fine_model, coarse_model, interpolation, stencil_prolongation):
    """One operator per trainable variable of the two models (which correspond in order)."""
    check_correspondence(fine_model, coarse_model)
    kind = {}
    for layer in fine_model.layers:
        if not layer.trainable_variables:
            continue
        if isinstance(layer, keras.layers.Conv2D):
            kind[id(layer.kernel)] = Stencil(layer.kernel_size[0], interpolation, stencil_prolongation)
        elif isinstance(layer, keras.layers.Dense) and len(layer.input.shape) == 2:
            producer = layer.input._keras_history.operation
            if not isinstance(producer, keras.layers.Flatten) or len(producer.input.shape) != 4:
                raise ValueError(
                    f"Dense layer {layer.name!r} acts on a flat vector that is not a flattened feature "
                    "map: its weights have no grid to coarsen. Put it after Flatten of an image, or after "
                    "GlobalAveragePooling2D (resolution independent)."
                )
            kind[id(layer.kernel)] = FeatureMapWeights(producer.input.shape[1:], interpolation)
    return [kind.get(id(variable), Identity()) for variable in fine_model.trainable_variables]


class ResolutionCoarsening(Coarsening):
    """Builds the same network on inputs of half the resolution (Haber et al., 2018, §3.1-3.2; Jacob, 2024, §4.3).

    Args:
        interpolation: the image prolongation ``P``: ``"constant"`` (Jacob, 2024, §4.3;
            ``R P = I``, so pointwise layers and 3x3 stencils transfer
            exactly) or ``"linear"`` (cell-centred bilinear; the Galerkin
            stencil of a ``k x k`` one is cut to ``k x k``, exact for
            ``k = 3``, not for 1x1 kernels).
        stencil_prolongation: how a coarse stencil goes to the fine grid
            (the restriction is always the Galerkin product ``G``):
            ``"identity"`` (the default), the coarse stencil's values
            unchanged (Haber et al.'s (2018, §4.1) "original convolution kernels";
            ``R = P^T = I``), or ``"inverse"``, the least-squares inverse
            ``G^+`` of Haber et al. (2018, §3.2) (``Pi P = I``). ``G^+`` amplifies what the
            Galerkin product damps: the 3x3 average becomes the checkerboard
            ``[[4, -2, 4], [-2, 1, -2], [4, -2, 4]] / 9`` (the 5-point
            Laplacian only doubles), and through a trained U-Net's layers
            that makes a network trained at N/2 worse than random weights
            as a start at N (and the previous release's presets, trained
            through it, 10^3 to 10^5 in relative error at 2N), while the
            unchanged stencils keep its grid-scale behaviour (about an
            epoch ahead of random weights): measured in
            benchmarks/results/stencil_prolongations_*.md,
            resolution_transfer.md and zoo/.
    """

    name = "resolution"
    size_label = "resolution"

    def __init__(self, interpolation="constant", stencil_prolongation="identity"):
        self.interpolation = stencils._check_interpolation(interpolation)
        self.stencil_prolongation = _check_stencil_prolongation(stencil_prolongation)

    def check(self, model, levels):
        """Raises ``ValueError`` unless ``model`` can be coarsened ``levels - 1`` times."""
        _layers(model)
        height, width = _grid(model)
        pooled = min(height, width) // _smallest_grid(model)
        factor = pooled * 2 ** (levels - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"levels={levels} halves the {height}x{width} input {levels - 1} time(s), and model "
                f"{model.name!r} pools it by {pooled}: height and width must be divisible by "
                f"{factor}. Use fewer levels or a resolution divisible by {factor}."
            )

    def transfer(self, fine_model, coarse_model):
        """The :class:`ResolutionTransfer` from ``fine_model`` to ``coarse_model`` (its half-resolution copy)."""
        return ResolutionTransfer(
            _operators(fine_model, coarse_model, self.interpolation, self.stencil_prolongation),
            _grid(fine_model),
            self.interpolation,
        )

    def coarsen(self, model):
        """Returns ``(coarse_model, transfer)``: ``model`` rebuilt for ``N/2 x N/2`` inputs, fresh weights."""
        _layers(model)
        height, width = _grid(model)
        coarse = with_resolution(model, height // 2, width // 2)
        return coarse, self.transfer(model, coarse)

    def refine(self, model):
        """Returns ``(fine_model, transfer)``: ``model`` rebuilt for ``2N x 2N`` inputs, fresh weights."""
        _layers(model)
        height, width = _grid(model)
        fine = with_resolution(model, 2 * height, 2 * width)
        return fine, self.transfer(fine, model)

    def relative_cost(self, model, finest):
        """Cost of a gradient of ``model`` per gradient of ``finest`` (:func:`forward_cost`): ``1/4``
        per level for convolutions and feature-map Dense layers."""
        return forward_cost(model, finest)

    def describe(self):
        """One line for the hierarchy's table."""
        stencil = "G^+" if self.stencil_prolongation == "inverse" else "unchanged"
        return f"resolution (2x2 average, {self.interpolation} prolongation, stencils prolongated {stencil})"

    def get_config(self):
        return {"interpolation": self.interpolation, "stencil_prolongation": self.stencil_prolongation}

    def size(self, model):
        """What a level's row of the hierarchy table shows: the input grid."""
        height, width = _grid(model)
        return f"{height}x{width}"
